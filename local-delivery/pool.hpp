// The long-lived delivery workers of local-delivery (local-delivery(8),
// PROCESS MODEL). A worker is a child of the parent that has dropped, once,
// to one recipient's uid and gid (never 0, no capabilities, NO_NEW_PRIVS)
// and then stores mailbox deliveries for that uid: the parent hands it jobs
// (the envelope fields of one Job and the message fd, passed with
// SCM_RIGHTS) and the worker answers each with run_job's report. The parent
// may send several jobs without waiting (at most kWorkerMaxBatch); the
// worker takes every job that is waiting when it is ready as one batch
// (run_jobs: a group commit, one fsync of new/ per Maildir for the batch),
// waiting a few milliseconds for more while jobs keep coming (BatchPacer),
// and answers them in the order they came. The parent keeps a bounded pool
// of workers per (uid, gid, supplementary group) and closes idle ones.
//
// The channel is a socketpair speaking common/ipc frames (protocol
// "local-worker"): the worker side is a plain blocking loop (serve_worker),
// the parent side an ipc::Connection in its event loop.
//
//   job{message(fd), sender, rcpt, mailbox, maildir, host, counter,
//       dotforward, user, home}        parent → worker, several in flight
//   → report{report}                   run_job's bytes (parse_report), one
//                                      per job, in the jobs' order
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

#include "common/ipc/frame.hpp"
#include "local-delivery/worker.hpp"

namespace pbx::local {

inline constexpr ipc::FieldSpec kWorkerJobFields[] = {
    {"message", ipc::Kind::Fd, ipc::kRequired},  {"sender", ipc::Kind::Str, ipc::kRequired},
    {"rcpt", ipc::Kind::Str, ipc::kRequired},    {"mailbox", ipc::Kind::Str, ipc::kRequired},
    {"maildir", ipc::Kind::U64, ipc::kRequired}, {"host", ipc::Kind::Str, ipc::kRequired},
    {"counter", ipc::Kind::U64, ipc::kRequired}, {"dotforward", ipc::Kind::U64, ipc::kRequired},
    {"user", ipc::Kind::Str, ipc::kRequired},    {"home", ipc::Kind::Str, ipc::kRequired},
};
inline constexpr ipc::FieldSpec kWorkerReportFields[] = {
    {"report", ipc::Kind::Bytes, ipc::kRequired},
};
inline constexpr ipc::MessageSpec kWorkerMessages[] = {
    {1, "job", kWorkerJobFields},
    {2, "report", kWorkerReportFields},
};
// A report is at most WorkerLimits::max_report() bytes (~73 KB).
inline constexpr ipc::Protocol kWorkerProtocol{"local-worker", 2, kWorkerMessages, 256 * 1024};
// Jobs a worker takes as one batch, and so jobs the parent has in flight on
// one worker at most.
inline constexpr size_t kWorkerMaxBatch = 32;
static_assert(ipc::well_formed(kWorkerProtocol));

// Only mailbox jobs go to workers; pipes, files and forwards keep their
// one-shot child (they may run for minutes, or as root without capabilities).
// The job's message fd is duplicated into the frame.
Result<ipc::Message> job_message(const Job& job);
// The Job of a received frame; its message_fd is taken into `fd`.
std::optional<Job> job_from_message(ipc::Message& m, UniqueFd& fd);

// When a worker stores the Maildir jobs it has taken: the rate-adaptive
// part of the group commit (maildir_batch_delay, pillarbox.conf(5)). A batch
// costs two fsync waves (the files, then new/), and so at least two journal
// commits, however many messages it holds. Jobs that come one at a time
// (one SMTP session: one every few milliseconds) would each be a batch of
// their own; so when jobs keep coming, a batch waits a little for more:
//   - a first job taken less than `delay` after the previous batch was
//     answered (jobs keep coming: at that rate, waiting `delay` meets
//     another) lets the batch take jobs until `delay` after that first job,
//     or until it holds `max_batch`;
//   - any other first job (an isolated message, the first of a burst) is
//     stored at once, with whatever is waiting already;
//   - delay 0 never waits (each batch is what was waiting, as before).
// Pure logic: the caller passes the times (the worker its steady clock).
class BatchPacer {
  public:
    using Clock = std::chrono::steady_clock;
    BatchPacer(std::chrono::microseconds delay, size_t max_batch)
        : delay_(delay), max_batch_(max_batch < 1 ? 1 : max_batch) {}
    // Until when the batch whose first job was taken at `first` may wait for
    // more jobs; `first` itself: not at all.
    Clock::time_point gather_until(Clock::time_point first) const {
        if (delay_.count() <= 0 || !last_done_ || first - *last_done_ >= delay_) return first;
        return first + delay_;
    }
    // Whether a batch of `jobs` taken so far waits for more at `now`.
    bool keep_gathering(size_t jobs, Clock::time_point now, Clock::time_point until) const {
        return jobs < max_batch_ && now < until;
    }
    // The batch was answered at `now`.
    void batch_done(Clock::time_point now) { last_done_ = now; }
    size_t max_batch() const { return max_batch_; }

  private:
    std::chrono::microseconds delay_;
    size_t max_batch_;
    std::optional<Clock::time_point> last_done_;
};

struct WorkerOptions {
    WorkerLimits limits;
    // maildir_batch_delay; 0: a batch is what is waiting when the worker is
    // ready, never more.
    std::chrono::microseconds batch_delay{0};
    // Jobs in one batch at most: kWorkerMaxBatch, or fewer when the parent
    // never has more in flight (local_delivery_concurrency), so that a full
    // batch stops waiting.
    size_t max_batch = kWorkerMaxBatch;
};

// The worker's loop on its end of the socketpair, as the recipient: hello,
// then batches of jobs → their reports until the parent closes the channel
// (returns true) or the channel fails (returns false). A batch is the first
// job (waited for), whatever else is waiting, and, when its first job is a
// Maildir delivery, what comes until BatchPacer's deadline. Never throws.
bool serve_worker(int fd, const WorkerOptions& options = {});

}  // namespace pbx::local
