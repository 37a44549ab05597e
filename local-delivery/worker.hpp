// One delivery, as it runs in the child: already the recipient (uid, gid,
// no capabilities, NO_NEW_PRIVS). Reads the message from the shared fd with
// pread (the queue-manager's fd is shared by every child: never the offset),
// checks for a loop, prepends Return-Path and Delivered-To, and stores it in
// a Maildir or mbox. The outcome goes to the parent as one line on a pipe
// (encode_outcome / decode_outcome).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/mailbox/headers.hpp"
#include "common/spool/thread_pool.hpp"

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
    size_t max_dotforward = 64 * 1024;         // bytes of a ~/.forward
    // The parent reads this much from a child's result pipe at most.
    size_t max_report() const { return max_outcome * 8 + max_dotforward + 64; }
};

enum class JobKind {
    Mailbox,  // store in `mailbox` (after ~/.forward when `dotforward`)
    Pipe,     // run `command` (pipe.hpp)
    File,     // append to `path` (mbox; a trailing '/' means a Maildir)
    Forward,  // re-submit to `forward_to` on the enqueue socket
};

struct Job {
    JobKind kind = JobKind::Mailbox;
    int message_fd = -1;
    std::string sender;
    std::string rcpt;     // the address as given (Delivered-To)
    std::string mailbox;  // path; Maildir when format_maildir
    bool format_maildir = true;
    std::string host;      // for Maildir names
    uint64_t counter = 0;  // for Maildir names
    // Mailbox: look at HOME/.forward first (system users).
    bool dotforward = false;
    std::string user;  // the account the child runs as (pipes: USER, LOGNAME)
    std::string home;
    // Pipe.
    std::string command;
    std::string recipient_delimiter = "+";  // for EXTENSION
    std::chrono::milliseconds time_limit{1000 * 1000};
    size_t output_limit = 4096;
    // File.
    std::string path;
    // Forward.
    std::vector<std::string> forward_to;
    std::string enqueue_socket;
    std::string body;  // 7BIT | 8BITMIME | ""
    bool smtputf8 = false;
};

// Runs one delivery in the current process (the caller has dropped) and
// returns what the child writes on its result pipe: zero or more
// "note TEXT\n" lines (logged by the parent), then either one outcome line
// (encode_outcome) or "dotforward LENGTH\n" followed by the bytes of a
// usable ~/.forward, which the parent expands into new jobs.
std::string run_job(const Job& job, const WorkerLimits& limits = {});

// Runs several jobs as one group commit (a pooled worker's batch, pool.hpp)
// and returns one run_job report per job, in order. Maildir mailbox writes
// are stored together (mailbox::maildir_deliver_batch: the files' fsyncs at
// once, then one fsync of each new/ for all of its messages), in groups of
// at most `batch_bytes` of message data; every other job runs as run_job
// would, in turn. A job is reported sent only when its own file and new/
// entry are durable: one failed write, fsync or link fails that job alone,
// a failed fsync of new/ the jobs linked into that new/. The fsyncs run side
// by side on `pool`'s threads (none: one after another).
inline constexpr size_t kBatchBytes = size_t{16} << 20;
std::vector<std::string> run_jobs(const std::vector<Job>& jobs, const WorkerLimits& limits = {},
                                  size_t batch_bytes = kBatchBytes,
                                  spool::ThreadPool* pool = nullptr);

// Runs one delivery in the current process (the caller has dropped).
Outcome deliver(const Job& job, const WorkerLimits& limits = {});

// "sent 2.0.0 delivered to maildir\n"; text has no newline.
std::string encode_outcome(const Outcome& o);
std::optional<Outcome> decode_outcome(std::string_view line);

// The parent's view of a child's result pipe (run_job's format).
struct ChildReport {
    std::vector<std::string> notes;
    std::optional<Outcome> outcome;
    std::optional<std::string> dotforward;
};
// nullopt: incomplete or malformed (the child died, or lies).
std::optional<ChildReport> parse_report(std::string_view bytes, const WorkerLimits& limits = {});

// ~/.forward as the child sees it (running as the user). None: no file (or
// none we may use, with a note saying why: not the user's, writable by group
// or others, a symlink, too large); Text: its content. An error that may go
// away (EIO, ...) is a Deferred outcome.
struct DotForward {
    enum class State { None, Text, Error } state = State::None;
    std::string text;  // Text
    std::string note;  // None: why it was ignored ("" when there is no file)
    Outcome error;     // Error
};
DotForward read_dotforward(const std::string& home, uid_t uid, size_t max_size);

// Maps a failed syscall's errno to a verdict: full disk, quota and lock
// timeouts and missing or unreadable paths are temporary (an administrator
// can fix them), everything else too unless it is certainly permanent.
Outcome outcome_for_errno(int err, std::string_view what);

}  // namespace pbx::local
