// maildrop/ pickup (DESIGN §4): a file the setgid drop helper of sendmail(1)
// wrote while the queue-manager was down. UNTRUSTED input: any local user
// can put arbitrary bytes through the helper, so the file is read with the
// strict spool reader under the size limits, the uid it claims must be the
// file's owner, and the sender passes the same check as an online local
// submission. What passes is committed like any enqueued message (Received:
// line, incoming/ → queue/, group commit); the maildrop file is removed only
// after that commit. What fails goes to corrupt/.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/maildrop.hpp"
#include "queue-manager/submission.hpp"

namespace pbx::qm {

struct PickedUp {
    spool::Envelope env;  // id and arrival are set by the transaction
    std::string message;  // CRLF line ends
};

// `file_uid`: the owner of the maildrop file (the helper is setgid only, so
// the file belongs to the submitting user). Root's files (uid 0) keep their
// sender as written.
Result<PickedUp, Refusal> convert_maildrop(const spool::Maildrop& drop, uid_t file_uid,
                                           const SubmitPolicy& policy);

// Message text as sendmail got it (LF line ends, usually) → CRLF, the form
// every message in queue/ has (the enqueue channel's `data` is CRLF too). A
// CRLF already there is kept; a bare CR is left alone.
std::string to_crlf(std::string_view text);

}  // namespace pbx::qm
