// One delivery, as it runs in the child: already the recipient (uid, gid,
// no capabilities, NO_NEW_PRIVS). Reads the message from the shared fd with
// pread (the queue-manager's fd is shared by every child: never the offset),
// checks for a loop, prepends Return-Path and Delivered-To, and stores it in
// a Maildir or mbox. The outcome goes to the parent as one line on a pipe
// (encode_outcome / decode_outcome).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/mailbox/headers.hpp"

namespace pbx::local {

enum class Verdict { Sent, Deferred, Failed };
std::string_view to_string(Verdict v);

struct Outcome {
    Verdict verdict = Verdict::Deferred;
    std::string dsn;   // "2.0.0", "4.2.2", "5.4.6"
    std::string text;  // "delivered to maildir", "mail loop", ...
    // "250 2.0.0 delivered to maildir"
    std::string reply() const;
};

struct WorkerLimits {
    uint64_t max_message = uint64_t{1} << 30;  // bytes read from the fd
    size_t max_outcome = 1024;                 // bytes of the pipe line
};

struct Job {
    int message_fd = -1;
    std::string sender;
    std::string rcpt;     // the address as given (Delivered-To)
    std::string mailbox;  // path; Maildir when format_maildir
    bool format_maildir = true;
    std::string host;      // for Maildir names
    uint64_t counter = 0;  // for Maildir names
};

// Runs one delivery in the current process (the caller has dropped).
Outcome deliver(const Job& job, const WorkerLimits& limits = {});

// "sent 2.0.0 delivered to maildir\n"; text has no newline.
std::string encode_outcome(const Outcome& o);
std::optional<Outcome> decode_outcome(std::string_view line);

// Maps a failed syscall's errno to a verdict: full disk, quota and lock
// timeouts and missing or unreadable paths are temporary (an administrator
// can fix them), everything else too unless it is certainly permanent.
Outcome outcome_for_errno(int err, std::string_view what);

}  // namespace pbx::local
