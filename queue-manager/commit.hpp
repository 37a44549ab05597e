// The commit protocol of DESIGN §4 with group commit.
//
// One message's commit, in a wave:
//   fsync incoming/ID and, side by side with it, write + fsync the envelope's
//   temp file → rename incoming/ID to queue/ID.msg → rename the temp to
//   queue/ID.env (no directory fsync yet)
// and once per wave, after every message of it:
//   fsync queue/
// Only then is a message durable and may its client hear `queued`. A wave
// takes every commit that arrived while the previous wave ran, so 20 clients
// committing together share a few directory fsyncs instead of 20, and the
// file fsyncs of a wave run side by side on worker threads.
//
// Any failure undoes what the message had made so far (incoming/ID, or
// queue/ID.msg and queue/ID.env) and reports the error; a failed directory
// fsync fails, and undoes, every message of its wave. A failed message is
// never reported as committed.
#pragma once

#include <event2/event.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/result.hpp"
#include "common/spool/atomic_write.hpp"
#include "common/spool/layout.hpp"
#include "common/spool/queue_id.hpp"
#include "common/unique_fd.hpp"

namespace pbx::qm {

struct CommitJob {
    spool::QueueId id;
    // incoming/ID, completely written, not yet synced (always set; optional
    // only because DurableFile has no empty state).
    std::optional<spool::DurableFile> file;
    std::string envelope_text;  // spool::write_envelope() of the envelope
    uint64_t token = 0;         // identifies the waiter (a session, a maildrop file)
    Status result;              // set by the wave
};

struct WaveStats {
    size_t committed = 0;
    size_t failed = 0;
    size_t dir_syncs = 0;
};

// Runs one wave on `jobs` (each job's result is set). Blocking: every fsync
// of the wave happens here. Called by the committer's worker thread, and
// directly by tests with a FakeSys.
// With parallel > 1, up to that many messages are placed at once on their own
// threads (the Sys must then be thread-safe, as the real one is); the
// directory fsync stays one per wave.
WaveStats run_wave(std::vector<CommitJob>& jobs, const spool::SpoolPaths& paths, sys::Sys& s,
                   size_t parallel = 1);

// Runs waves on a worker thread and hands the finished jobs back to the
// event loop (an eventfd wakes it). The loop stays single-threaded: `done`
// is always called from the loop, and nothing but the job queues is shared.
class GroupCommitter {
  public:
    using DoneFn = std::function<void(CommitJob&&)>;

    // Fails when the eventfd or its event cannot be made.
    static Result<std::unique_ptr<GroupCommitter>> create(event_base* base, spool::SpoolPaths paths,
                                                          DoneFn done, sys::Sys& s = sys::real());
    // Waits for the wave in progress, then stops the worker. Jobs that did not
    // start are dropped (their incoming files are removed) without `done`.
    ~GroupCommitter();
    GroupCommitter(const GroupCommitter&) = delete;
    GroupCommitter& operator=(const GroupCommitter&) = delete;

    void submit(CommitJob job);

    // For logs and tests.
    uint64_t waves() const { return waves_; }
    size_t largest_wave() const { return largest_wave_; }

  private:
    GroupCommitter(spool::SpoolPaths paths, DoneFn done, sys::Sys& s);
    static void on_wakeup_cb(evutil_socket_t, short, void* self) noexcept;
    void handle_wakeup();
    void worker();

    spool::SpoolPaths paths_;
    DoneFn done_;
    sys::Sys& sys_;
    UniqueFd event_fd_;
    EventPtr wakeup_ev_;

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<CommitJob> pending_;   // guarded by mu_
    std::vector<CommitJob> finished_;  // guarded by mu_
    bool stop_ = false;                // guarded by mu_
    std::thread thread_;

    // Loop thread only.
    uint64_t waves_ = 0;
    size_t largest_wave_ = 0;
    std::vector<size_t> wave_sizes_;  // guarded by mu_: sizes of finished waves
};

}  // namespace pbx::qm
