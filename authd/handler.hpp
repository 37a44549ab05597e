// The auth channel's requests (common/ipc/auth_msgs.hpp) answered from the
// database: domain, rcpt, verify, resolve and owns. No I/O here: a request goes in, a reply
// and how long to hold it come out; server.cpp sends it when the time is up.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "authd/database.hpp"
#include "authd/tickets.hpp"
#include "common/auth/password.hpp"
#include "common/auth/resolve.hpp"
#include "common/auth/senders.hpp"
#include "common/auth/system_users.hpp"
#include "common/auth/throttle.hpp"
#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/frame.hpp"

namespace pbx::authd {

struct Reply {
    ipc::Message message;
    std::chrono::milliseconds delay{0};  // hold the reply this long (failure delays)
};

class Handler {
  public:
    Handler(auth::ResolverSettings settings, Database& db, const auth::SystemUsers& system,
            auth::PasswordChecker checker, auth::DelayPolicy delays = {});

    // The reply to one request; nullopt when the message is not a request a
    // client may send (the caller logs and drops the connection).
    std::optional<Reply> handle(const ipc::Message& request, const ipc::PeerInfo& peer,
                                auth::Clock::time_point now);

    // POP-before-SMTP: how long a POP3/IMAP login lets its address relay
    // (pop_before_smtp); zero switches it off.
    void set_pop_before_smtp(std::chrono::minutes m) { pop_before_smtp_ = m; }

    // A reply that says "try again later" for `request` (overload, shutdown).
    static std::optional<ipc::Message> tempfail_for(const ipc::Message& request);

  private:
    Reply domain(const ipc::Message& m);
    Reply rcpt(const ipc::Message& m, auth::Clock::time_point now);
    Reply verify(const ipc::Message& m, const ipc::PeerInfo& peer, auth::Clock::time_point now);
    Reply resolve(const ipc::Message& m, const ipc::PeerInfo& peer, auth::Clock::time_point now);
    // The login/session split (tickets.hpp).
    Reply login(const ipc::Message& m, const ipc::PeerInfo& peer, auth::Clock::time_point now);
    Reply redeem(const ipc::Message& m, const ipc::PeerInfo& peer, auth::Clock::time_point now);
    Reply relay_check(const ipc::Message& m, const ipc::PeerInfo& peer,
                      auth::Clock::time_point now);
    Reply owns(const ipc::Message& m, const ipc::PeerInfo& peer, auth::Clock::time_point now);

    auth::ResolverSettings settings_;
    Database& db_;
    const auth::SystemUsers& system_;
    auth::PasswordChecker checker_;
    auth::Throttle throttle_;
    TicketStore tickets_{ipc::auth::kTicketLifetime};
    RecentLogins recent_logins_;
    std::chrono::minutes pop_before_smtp_{0};
    std::vector<auth::SenderMapEntry> sender_map_;  // settings_.sender_map, parsed
};

}  // namespace pbx::authd
