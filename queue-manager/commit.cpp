#include "queue-manager/commit.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "common/log.hpp"

namespace pbx::qm {
namespace {

void remove_quietly(sys::Sys& s, const std::string& path) {
    (void)s.unlink(path);
}

// Files of one wave synced side by side (two per message).
constexpr size_t kWaveParallelism = 32;

}  // namespace

// A wave in three steps, so that a message waits for two fsyncs in a row
// (its files, then the directory), not three:
//   1. side by side, for every message: fsync incoming/ID, and write + fsync
//      the envelope's temp file queue/ID.env.tmp.PID.N (independent files);
//   2. for every message whose two files are on disk: rename incoming/ID to
//      queue/ID.msg, then the temp to queue/ID.env (in this order, so that an
//      envelope never exists without its message);
//   3. one fsync of queue/ for the whole wave.
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
bool rename_into_queue(CommitJob& job, Placement& p, const spool::SpoolPaths& paths,
                       sys::Sys& s) {
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

// Runs tasks 0..count-1 on up to `threads` threads (the caller's included).
template <typename Task>
void run_side_by_side(size_t count, size_t threads, Task task) {
    threads = std::min(threads, count);
    if (threads <= 1) {
        for (size_t i = 0; i < count; ++i) task(i);
        return;
    }
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i = next++; i < count; i = next++) task(i);
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
}

}  // namespace

WaveStats run_wave(std::vector<CommitJob>& jobs, const spool::SpoolPaths& paths, sys::Sys& s,
                   size_t parallel) {
    WaveStats stats;
    std::vector<Placement> placements(jobs.size());
    // Step 1: task 2i syncs message i, task 2i+1 writes its envelope.
    run_side_by_side(jobs.size() * 2, parallel, [&](size_t task) {
        size_t i = task / 2;
        if (task % 2 == 0)
            sync_message(jobs[i], placements[i]);
        else
            write_envelope_temp(jobs[i], placements[i], paths, s);
    });
    // Step 2.
    std::vector<CommitJob*> placed;  // messages whose files are in queue/
    for (size_t i = 0; i < jobs.size(); ++i)
        if (rename_into_queue(jobs[i], placements[i], paths, s)) placed.push_back(&jobs[i]);
    // Step 3.
    if (!placed.empty()) {
        ++stats.dir_syncs;
        if (auto d = spool::fsync_dir(paths.queue, s); !d) {
            for (CommitJob* job : placed) {
                job->result = d;
                remove_quietly(s, paths.envelope_file(job->id));
                remove_quietly(s, paths.message_file(job->id));
            }
        }
    }
    for (const CommitJob& job : jobs) (job.result.ok() ? stats.committed : stats.failed)++;
    return stats;
}

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
    gc->thread_ = std::thread([p = gc.get()] { p->worker(); });
    return gc;
}

GroupCommitter::~GroupCommitter() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    // pending_ and finished_ die here: DurableFiles of unstarted jobs unlink
    // their incoming files; finished ones stay committed (durable) but nobody
    // is told, as after a crash at the same point.
}

void GroupCommitter::submit(CommitJob job) {
    {
        std::lock_guard lock(mu_);
        pending_.push_back(std::move(job));
    }
    cv_.notify_one();
}

void GroupCommitter::worker() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
        if (stop_) return;
        std::vector<CommitJob> wave;
        wave.swap(pending_);
        lock.unlock();
        run_wave(wave, paths_, sys_, kWaveParallelism);
        lock.lock();
        wave_sizes_.push_back(wave.size());
        for (CommitJob& job : wave) finished_.push_back(std::move(job));
        uint64_t one = 1;
        // A full counter (never in practice) still leaves the fd readable.
        ssize_t n = ::write(event_fd_.get(), &one, sizeof one);
        (void)n;
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
