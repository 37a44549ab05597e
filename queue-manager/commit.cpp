#include "queue-manager/commit.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <utility>

#include "common/log.hpp"

namespace pbx::qm {
namespace {

void remove_quietly(sys::Sys& s, const std::string& path) {
    (void)s.unlink(path);
}

// Files of one wave synced side by side (two per message).
constexpr size_t kWaveParallelism = 32;

}  // namespace

// A message's commit in three steps, so that it waits for two fsyncs in a
// row (its files, then the directory), not three:
//   1. side by side: fsync incoming/ID, and write + fsync the envelope's temp
//      file queue/ID.env.tmp.PID.N (independent files);
//   2. once its two files are on disk: rename incoming/ID to queue/ID.msg,
//      then the temp to queue/ID.env (in this order, so that an envelope never
//      exists without its message);
//   3. one fsync of queue/ for a whole wave of messages past step 2.
// The on-disk result is DESIGN §4's protocol exactly; only independent fsyncs
// overlap (bench/RESULTS.md: the disk completes them far faster together).
namespace {

std::atomic<uint64_t> g_envelope_temp_counter{0};

struct Placement {
    std::string envelope_temp;  // the synced temp file; empty until it is
    Status envelope_status;
    bool message_synced = false;
};

void sync_message(CommitJob& job, Placement& p) {
    if (auto c = job.file->commit(); !c) {
        job.result = c;
        return;
    }
    p.message_synced = true;
}

void write_envelope_temp(CommitJob& job, Placement& p, const spool::SpoolPaths& paths,
                         sys::Sys& s) {
    std::string temp = paths.envelope_file(job.id) + std::string(spool::kTempMarker) +
                       std::to_string(s.getpid()) + "." +
                       std::to_string(g_envelope_temp_counter.fetch_add(1));
    auto f = spool::DurableFile::create(temp, spool::kEnvelopeFileMode, s);
    if (!f) {
        p.envelope_status = Err{f.error()};
        return;
    }
    if (auto a = f->append(job.envelope_text); !a) {
        p.envelope_status = a;
        return;  // the DurableFile removes the temp
    }
    if (auto c = f->commit(); !c) {
        p.envelope_status = c;
        return;  // the DurableFile removes the temp
    }
    p.envelope_temp = std::move(temp);
}

// Step 2 for one message. On failure, removes what the message made.
bool rename_into_queue(CommitJob& job, Placement& p, const spool::SpoolPaths& paths, sys::Sys& s) {
    std::string incoming = paths.incoming_file(job.id);
    std::string msg = paths.message_file(job.id);
    std::string env = paths.envelope_file(job.id);
    const std::string& temp = p.envelope_temp;
    auto drop_temp = [&] {
        if (!temp.empty()) remove_quietly(s, temp);
    };
    if (!p.message_synced) {  // job.result holds the error
        job.file->abandon();
        drop_temp();
        return false;
    }
    if (temp.empty()) {
        job.result = p.envelope_status;
        remove_quietly(s, incoming);
        return false;
    }
    if (auto r = s.rename(incoming, msg); !r.ok()) {
        job.result = fail_errno("rename " + incoming + " to " + msg, r.error());
        remove_quietly(s, incoming);
        drop_temp();
        return false;
    }
    if (auto r = s.rename(temp, env); !r.ok()) {
        job.result = fail_errno("rename " + temp + " to " + env, r.error());
        remove_quietly(s, msg);
        drop_temp();
        return false;
    }
    job.result = {};
    return true;
}

// Step 3 for a wave: one fsync of queue/; if it fails, every message of the
// wave fails and its two files are removed.
void sync_queue_directory(const std::vector<CommitJob*>& placed, const spool::SpoolPaths& paths,
                          sys::Sys& s) {
    if (placed.empty()) return;
    if (auto d = spool::fsync_dir(paths.queue, s); !d) {
        for (CommitJob* p : placed) {
            CommitJob& job = *p;
            job.result = d;
            remove_quietly(s, paths.envelope_file(job.id));
            remove_quietly(s, paths.message_file(job.id));
        }
    }
}

}  // namespace

WaveStats run_wave(std::vector<CommitJob>& jobs, const spool::SpoolPaths& paths, sys::Sys& s) {
    WaveStats stats;
    std::vector<Placement> placements(jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) {  // step 1
        sync_message(jobs[i], placements[i]);
        write_envelope_temp(jobs[i], placements[i], paths, s);
    }
    std::vector<CommitJob*> placed;  // step 2: messages whose files are in queue/
    for (size_t i = 0; i < jobs.size(); ++i)
        if (rename_into_queue(jobs[i], placements[i], paths, s)) placed.push_back(&jobs[i]);
    if (!placed.empty()) ++stats.dir_syncs;  // step 3
    sync_queue_directory(placed, paths, s);
    for (const CommitJob& job : jobs) (job.result.ok() ? stats.committed : stats.failed)++;
    return stats;
}

struct GroupCommitter::InFlight {
    CommitJob job;
    uint64_t seq = 0;  // order of submission
    Placement placement;
    std::atomic<int> tasks_left{2};
};

namespace {

// Threads made at the start (the two tasks of one message never wait for a
// thread to be made) and at most (the disk's headroom for concurrent fsyncs,
// bench/RESULTS.md).
constexpr size_t kInitialThreads = 2;
constexpr size_t kMaxThreads = 32;

}  // namespace

GroupCommitter::GroupCommitter(spool::SpoolPaths paths, DoneFn done, sys::Sys& s)
    : paths_(std::move(paths)), done_(std::move(done)), sys_(s) {}

Result<std::unique_ptr<GroupCommitter>> GroupCommitter::create(event_base* base,
                                                               spool::SpoolPaths paths, DoneFn done,
                                                               sys::Sys& s) {
    std::unique_ptr<GroupCommitter> gc(new GroupCommitter(std::move(paths), std::move(done), s));
    gc->event_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!gc->event_fd_) return fail_errno("eventfd");
    gc->wakeup_ev_.reset(event_new(base, gc->event_fd_.get(), EV_READ | EV_PERSIST,
                                   &GroupCommitter::on_wakeup_cb, gc.get()));
    if (!gc->wakeup_ev_ || event_add(gc->wakeup_ev_.get(), nullptr) != 0)
        return fail("cannot add the commit wake-up event");
    try {
        for (size_t i = 0; i < kInitialThreads; ++i)
            gc->threads_.emplace_back([p = gc.get()] { p->worker(); });
    } catch (const std::system_error& e) {
        return fail(std::string("cannot start a commit thread: ") + e.what());
    }
    return gc;
}

GroupCommitter::~GroupCommitter() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    // A thread leaves only when no task is left, and the thread that ends a
    // message's tasks also places it and runs (or hands it to) a directory
    // wave: after the joins, every submitted job sits in finished_.
    for (std::thread& t : threads_) t.join();
    // finished_ dies here, reported to nobody: its messages are committed
    // (durable) or undone, as after a crash at the same point.
}

void GroupCommitter::submit(CommitJob job) {
    auto* in = new InFlight{std::move(job)};  // tasks_left = 2
    {
        std::lock_guard lock(mu_);
        in->seq = next_seq_++;
        in_files_.insert(in->seq);
        tasks_.emplace_back(in, 0);
        tasks_.emplace_back(in, 1);
        if (tasks_.size() > idle_ && threads_.size() < kMaxThreads) {
            try {
                threads_.emplace_back([this] { worker(); });
            } catch (const std::system_error& e) {
                // The threads there are will do (there are always some).
                log::warn("cannot start another commit thread: ", e.what());
            }
        }
    }
    // Both tasks at once: the message's two fsyncs run side by side.
    cv_.notify_one();
    cv_.notify_one();
}

void GroupCommitter::finish_locked(CommitJob&& job) {
    bool wake = finished_.empty();
    finished_.push_back(std::move(job));
    if (!wake) return;
    uint64_t one = 1;
    // A full counter (never in practice) still leaves the fd readable.
    ssize_t n = ::write(event_fd_.get(), &one, sizeof one);
    (void)n;
}

void GroupCommitter::run_directory_waves(std::unique_lock<std::mutex>& lock) {
    while (!placed_.empty()) {
        // The wave takes every message submitted so far, once its files are done.
        const uint64_t limit = next_seq_;
        files_done_cv_.wait(lock, [&] { return in_files_.empty() || *in_files_.begin() >= limit; });
        std::vector<InFlight*> wave;
        wave.swap(placed_);
        lock.unlock();
        std::vector<CommitJob*> jobs;
        jobs.reserve(wave.size());
        for (InFlight* in : wave) jobs.push_back(&in->job);
        sync_queue_directory(jobs, paths_, sys_);
        lock.lock();
        wave_sizes_.push_back(wave.size());
        for (InFlight* in : wave) {
            finish_locked(std::move(in->job));
            delete in;
        }
    }
    dir_syncing_ = false;
}

void GroupCommitter::worker() {
    std::unique_lock lock(mu_);
    for (;;) {
        ++idle_;
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        --idle_;
        if (tasks_.empty()) return;  // stopping, and nothing left to do
        auto [in, task] = tasks_.front();
        tasks_.pop_front();
        lock.unlock();
        if (task == 0)
            sync_message(in->job, in->placement);
        else
            write_envelope_temp(in->job, in->placement, paths_, sys_);
        if (in->tasks_left.fetch_sub(1, std::memory_order_acq_rel) != 1) {
            lock.lock();  // the other task of the message is still running
            continue;
        }
        bool placed = rename_into_queue(in->job, in->placement, paths_, sys_);
        lock.lock();
        in_files_.erase(in->seq);
        if (dir_syncing_) files_done_cv_.notify_one();
        if (!placed) {
            finish_locked(std::move(in->job));
            delete in;
            continue;
        }
        placed_.push_back(in);
        if (dir_syncing_) continue;  // the syncing thread takes it in its next wave
        dir_syncing_ = true;
        run_directory_waves(lock);
    }
}

void GroupCommitter::on_wakeup_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<GroupCommitter*>(self)->handle_wakeup();
}

void GroupCommitter::handle_wakeup() {
    uint64_t count = 0;
    ssize_t n = ::read(event_fd_.get(), &count, sizeof count);
    (void)n;
    std::vector<CommitJob> done;
    std::vector<size_t> sizes;
    {
        std::lock_guard lock(mu_);
        done.swap(finished_);
        sizes.swap(wave_sizes_);
    }
    for (size_t size : sizes) {
        ++waves_;
        largest_wave_ = std::max(largest_wave_, size);
        log::debug("commit wave of ", size, " message(s)");
    }
    // done_ may destroy sessions but never this committer.
    DoneFn fn = done_;
    for (CommitJob& job : done) fn(std::move(job));
}

}  // namespace pbx::qm
