// The commit protocol of DESIGN §4 with group commit.
//
// One message's commit:
//   write the envelope's temp file → write back incoming/ID and the temp
//   (sync_file_range, so that one journal commit covers both) → fsync both,
//   side by side → rename incoming/ID to queue/ID.msg → rename the temp to
//   queue/ID.env (no directory fsync yet)
// and once per wave, after the renames of every message of the wave:
//   fsync queue/
// Only then is a message durable and may its client hear `queued`. A wave is
// every message whose renames were done while the previous directory fsync
// ran, so 20 clients committing together share a few directory fsyncs
// instead of 20; the file fsyncs of the next messages run meanwhile.
//
// Any failure undoes what the message had made so far (incoming/ID, or
// queue/ID.msg and queue/ID.env) and reports the error; a failed directory
// fsync fails, and undoes, every message of its wave. A failed message is
// never reported as committed.
#pragma once

#include <event2/event.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/result.hpp"
#include "common/spool/atomic_write.hpp"
#include "common/spool/layout.hpp"
#include "common/spool/queue_id.hpp"
#include "common/spool/thread_pool.hpp"
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

// Runs one wave on `jobs` (each job's result is set), one step after the
// other on the calling thread: the same steps, in the same order per
// message, as the GroupCommitter's threads. For tests with a FakeSys.
WaveStats run_wave(std::vector<CommitJob>& jobs, const spool::SpoolPaths& paths, sys::Sys& s);

// Commits on a pool of worker threads and hands the finished jobs back to the
// event loop (an eventfd wakes it). The loop stays single-threaded: `done`
// is always called from the loop, and nothing but the queues is shared.
//
// The path of one message (bench/RESULTS.md): submit() posts its file task
// to the committer's thread pool (spool::ThreadPool, the one pool mechanism
// of common/), whose thread writes the envelope temp, writes both files
// back, hands the envelope's fsync to another idle thread (or, with none
// idle, makes it itself afterwards) and fsyncs incoming/ID; whichever fsync
// finishes second renames both files and
// then either runs the directory fsync itself or, if another thread runs
// directory waves already, leaves the message for that thread's next wave.
// A wave waits for the file tasks of every message submitted before it
// began (as many messages as possible share its directory fsync), never for
// later ones; those start their file fsyncs meanwhile and go in the next.
// The thread that ends a wave wakes the loop. No thread is made per wave:
// the pool makes threads when more tasks wait than threads idle, up to a
// limit, and they live as long as the committer.
class GroupCommitter {
  public:
    using DoneFn = std::function<void(CommitJob&&)>;

    // Fails when the eventfd or its event cannot be made.
    static Result<std::unique_ptr<GroupCommitter>> create(event_base* base, spool::SpoolPaths paths,
                                                          DoneFn done, sys::Sys& s = sys::real());
    // Finishes every submitted job (each ends committed or undone, as in a
    // wave), then stops the threads; `done` is not called for them: a client
    // not told is in the same place as after a crash at that point.
    ~GroupCommitter();
    GroupCommitter(const GroupCommitter&) = delete;
    GroupCommitter& operator=(const GroupCommitter&) = delete;

    void submit(CommitJob job);

    // For logs and tests.
    uint64_t waves() const { return waves_; }
    size_t largest_wave() const { return largest_wave_; }
    // Messages renamed into queue/ and waiting for a directory fsync (tests).
    size_t waiting_for_directory() {
        std::lock_guard lock(mu_);
        return placed_.size();
    }

  private:
    struct InFlight;  // a job and its two file tasks (commit.cpp)

    GroupCommitter(spool::SpoolPaths paths, DoneFn done, sys::Sys& s);
    static void on_wakeup_cb(evutil_socket_t, short, void* self) noexcept;
    void handle_wakeup();
    // The pool's tasks: a message's files (task 0), its envelope's fsync
    // when handed to another thread (task 1); the one that ends last places
    // the message (end_task).
    void file_task(InFlight* in);
    void envelope_task(InFlight* in);
    void end_task(InFlight* in);
    // With mu_ held: `job` goes back to the loop (the eventfd is written when
    // finished_ was empty: otherwise a wake-up is pending already).
    void finish_locked(CommitJob&& job);
    // With `lock` held and dir_syncing_ just set: directory fsyncs until no
    // placed message waits for one.
    void run_directory_waves(std::unique_lock<std::mutex>& lock);

    spool::SpoolPaths paths_;
    DoneFn done_;
    sys::Sys& sys_;
    UniqueFd event_fd_;
    EventPtr wakeup_ev_;

    std::mutex mu_;
    // Guarded by mu_:
    std::vector<InFlight*> placed_;  // renamed, waiting for a directory fsync
    std::set<uint64_t> in_files_;    // sequence numbers of messages still in their file tasks
    uint64_t next_seq_ = 0;
    bool dir_syncing_ = false;               // a thread runs directory waves
    std::condition_variable files_done_cv_;  // a message left in_files_
    std::vector<CommitJob> finished_;
    std::vector<size_t> wave_sizes_;  // sizes of finished waves

    // Loop thread only.
    uint64_t waves_ = 0;
    size_t largest_wave_ = 0;

    // The threads, started in create(). Last: destroyed first, it runs every
    // task left while the members above, which the tasks use, still live.
    spool::ThreadPool pool_;
};

}  // namespace pbx::qm
