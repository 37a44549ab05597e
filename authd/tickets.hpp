// The login/session split on authd's side (auth_msgs.hpp, messages 13-18):
// where a user's mail is, the one-time tickets a login process gets for the
// master, and the recent POP3/IMAP logins that POP-before-SMTP asks about.
// Pure bookkeeping: the clock and the random bytes come from the caller.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "authd/database.hpp"
#include "common/auth/resolve.hpp"
#include "common/auth/system_users.hpp"
#include "common/auth/throttle.hpp"

namespace pbx::authd {

// A user's mailbox and identity: what local-delivery writes as and to, and
// what a pop3d/imapd session runs as and reads.
struct UserMailbox {
    std::string user;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
    std::string mailbox;
    auth::MailboxFormat format = auth::MailboxFormat::Maildir;
};

// A user by canonical name, without alias expansion: the users file, then
// (with system_users) a regular system account, whose mailbox is
// /var/mail/NAME (mbox) or home_mailbox below the home, as local-delivery
// has it (common/auth/expand.cpp). nullopt: no such user.
std::optional<UserMailbox> find_user_mailbox(std::string_view name,
                                             const auth::ResolverSettings& settings,
                                             const Database& db, const auth::SystemUsers& system);

struct Ticket {
    UserMailbox box;
    std::string service;  // pop3 | imap
    std::string client_address;
    auth::Clock::time_point expires;
};

// One-time tickets: 32 random bytes written as 64 hex digits, valid for
// `lifetime`, gone after their first redeem. At most max_tickets are held;
// issuing beyond that drops expired ones, then refuses (tempfail).
class TicketStore {
  public:
    explicit TicketStore(std::chrono::seconds lifetime, size_t max_tickets = 4096)
        : lifetime_(lifetime), max_(max_tickets) {}

    // The ticket text, or nullopt (store full, or no random bytes).
    std::optional<std::string> issue(UserMailbox box, std::string service,
                                     std::string client_address, auth::Clock::time_point now);
    // The ticket's content if it exists and has not expired; it is removed
    // either way.
    std::optional<Ticket> redeem(std::string_view ticket, auth::Clock::time_point now);
    size_t size() const { return tickets_.size(); }

  private:
    void expire(auth::Clock::time_point now);
    std::chrono::seconds lifetime_;
    size_t max_;
    std::map<std::string, Ticket, std::less<>> tickets_;
};

// POP-before-SMTP: client addresses that logged in recently. Bounded: when
// max_entries are held, expired ones go first, then the oldest.
class RecentLogins {
  public:
    explicit RecentLogins(size_t max_entries = 65536) : max_(max_entries) {}
    void record(std::string_view address, auth::Clock::time_point until);
    // Time left for this address, nullopt when none.
    std::optional<auth::Clock::duration> remaining(std::string_view address,
                                                   auth::Clock::time_point now) const;
    size_t size() const { return until_.size(); }

  private:
    size_t max_;
    std::map<std::string, auth::Clock::time_point, std::less<>> until_;
};

}  // namespace pbx::authd
