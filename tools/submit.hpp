// How sendmail(1) hands a message over: to the queue-manager on the enqueue
// channel (common/ipc/queue_msgs.hpp) when it answers, else through the
// setgid postdrop(8) helper into maildrop/. Also the admin requests of
// mailq(1) and `sendmail -q`.
//
// The caller's identity never travels in a field: the queue-manager reads it
// from SO_PEERCRED, and postdrop from getuid().
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc/frame.hpp"
#include "common/result.hpp"

namespace pbx::mail {

struct Recipient {
    std::string address;
    uint8_t notify = 0;  // spool::NotifyFlags; 0: not given
    std::string orcpt;   // "rfc822;user@host" (decoded), or ""
};

struct Submission {
    std::string sender;  // "" = the null sender
    std::vector<Recipient> recipients;
    std::string ret;    // "FULL", "HDRS" or ""
    std::string envid;  // "" = none
    std::string body;   // "7BIT" or "8BITMIME"
    bool smtputf8 = false;
    std::string message;  // CRLF line ends
};

// Makes sure fds 0, 1 and 2 are open (on /dev/null if they were closed), so
// that no file or pipe we open later becomes the caller's stdout or stderr.
void ensure_std_fds();

// The frames of one transaction (without data and commit).
ipc::Message make_begin(const Submission& s);
ipc::Message make_rcpt(const Recipient& r);

struct Timeouts {
    std::chrono::milliseconds handshake{10'000};  // connect + hello
    std::chrono::milliseconds send{60'000};       // each frame
    std::chrono::milliseconds reply{300'000};     // queued/failed after commit (fsync)
};

enum class Outcome {
    Queued,       // text: the queue ID
    Unreachable,  // no socket, refused, no hello or no reply: use postdrop
    TempFail,     // failed{temporary=1}; text: the reason
    PermFail,     // failed{temporary=0}; text: the reason ("5.7.1 ...")
};

struct SubmitResult {
    Outcome outcome;
    std::string text;
};

SubmitResult submit_to_queue(const std::string& socket_path, const Submission& s,
                             const Timeouts& timeouts = {});

struct AdminResult {
    bool reachable = false;  // false: the queue-manager is not running
    bool ok = false;
    std::string text;  // the listing, or why it failed
};

// admin{op} → admin_reply. `op` is list or flush.
AdminResult admin_request(const std::string& socket_path, std::string_view op,
                          const Timeouts& timeouts = {});

// The sysexits code for a refusal from the queue-manager, by its enhanced
// status code: temporary → 75; 5.1.x (addresses) → 67; 5.3.4 and 5.2.3
// (size) → 65; 5.7.x (policy: a sender the user may not use) → 77; any other
// permanent refusal → 69.
int exit_code_for_refusal(bool temporary, std::string_view text);

// The maildrop record postdrop(8) reads on its stdin: the format of
// common/spool/maildrop.hpp. The uid and time are informative only: postdrop
// replaces them with getuid() and its own clock.
Result<std::string> make_maildrop_input(const Submission& s, uint32_t uid, std::time_t now,
                                        uint64_t max_message_size);

// postdrop's side of that record: parses it strictly (it comes from an
// unprivileged caller), replaces uid and time with `uid` and `now` (never
// trusting the caller's), and writes it again. The error names what was wrong.
Result<std::string> rewrite_maildrop_input(std::string_view input, uint32_t uid, std::time_t now,
                                           uint64_t max_message_size);

// message_size_limit as a bound: 0 in the configuration means no limit, which
// still gets a hard ceiling here (every buffer is bounded).
inline constexpr uint64_t kHardMessageCeiling = 1ull << 30;
inline uint64_t effective_size_limit(uint64_t configured) {
    return configured == 0 || configured > kHardMessageCeiling ? kHardMessageCeiling : configured;
}

struct DropResult {
    int exit_status = kExitNotRun;  // postdrop's exit status
    std::string error;              // why it could not be run at all
    static constexpr int kExitNotRun = -1;
};

// Runs `program -c config_path` with an empty environment, writes `input` to
// its stdin and waits for it. Its stderr is ours, so its messages reach the
// user directly.
DropResult run_postdrop(const std::string& program, const std::string& config_path,
                        std::string_view input);

}  // namespace pbx::mail
