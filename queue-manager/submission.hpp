// Who may submit what (DESIGN §2, queue_msgs.hpp): turns the fields of a
// `begin` and its `rcpt`s into envelope values, applying the trust level the
// client's SO_PEERCRED uid gives. Pure: the user database is a function.
//
//   smtpd, submitd, root   every field is taken as given (their own checks
//                          ran before: SMTP policy, AUTH; root could write the
//                          spool directly anyway)
//   any other uid          a local submission (sendmail): origin=sendmail,
//                          origin_uid=uid, protocol "local", no client, TLS or
//                          AUTH fields; the sender must be the uid's own
//                          address (below) unless the user is in
//                          trusted_users.
//
// A local user's own addresses are "user", "user@myhostname" and
// "user@<first entry of domains>" (domain case-insensitive; the bare name is
// qualified with myhostname). Anything else, the null sender included, is
// REFUSED (5.7.1), as Postfix does with a restrictive local_login_sender_maps;
// silently replacing the sender would deliver mail the user did not mean to
// send, and bounces would go to an address the user never gave.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc/frame.hpp"
#include "common/ipc/peers.hpp"
#include "common/result.hpp"
#include "common/spool/envelope.hpp"

namespace pbx::qm {

// Why a transaction cannot be queued; becomes failed{temporary, text}.
struct Refusal {
    bool temporary = false;
    std::string text;  // "5.7.1 ..." with the enhanced status code first
};

inline Err<Refusal> refuse(bool temporary, std::string text) {
    return Err<Refusal>{Refusal{temporary, std::move(text)}};
}

struct Submitter {
    uid_t uid = 0;
    ipc::Program program = ipc::Program::AnyUser;

    // smtpd, submitd and root: the fields are trusted.
    bool trusted_fields() const;
};

struct SubmitPolicy {
    std::string myhostname;
    std::vector<std::string> domains;        // `domains`: the first names local users
    std::vector<std::string> trusted_users;  // `trusted_users`: may set any sender
    // The login name of a uid; nullopt when the uid has no passwd entry.
    std::function<std::optional<std::string>(uid_t)> user_name;
    spool::EnvelopeLimits limits;
};

// The envelope of a new transaction from a `begin` message (id, arrival and
// recipients are left for the caller). Refusals are permanent: a bad field
// will be as bad on the next try.
Result<spool::Envelope, Refusal> envelope_from_begin(const ipc::Message& begin,
                                                     const Submitter& who,
                                                     const SubmitPolicy& policy);

// One recipient from a `rcpt` message. An address without "@" is qualified
// with myhostname (Postfix's append_at_myorigin).
Result<spool::Recipient, Refusal> recipient_from_rcpt(const ipc::Message& rcpt,
                                                      const SubmitPolicy& policy);

// The same from its parts (maildrop files).
Result<spool::Recipient, Refusal> make_recipient(std::string_view address, std::string_view orcpt,
                                                 uint64_t notify, const SubmitPolicy& policy);

// The sender check of local submissions (also applied to maildrop files):
// returns the sender to store (qualified), or a refusal.
Result<std::string, Refusal> check_local_sender(std::string_view sender, uid_t uid,
                                                const SubmitPolicy& policy);

// Qualifies a bare local part with myhostname.
std::string qualify(std::string_view address, std::string_view myhostname);

// "alice@Example.ORG" → "example.org"; "" when there is no "@".
std::string domain_of(std::string_view address);

}  // namespace pbx::qm
