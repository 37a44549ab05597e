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

// Messages of one wave committed side by side.
constexpr size_t kWaveParallelism = 16;

}  // namespace

// One message's part of a wave: fsync, rename, envelope. Independent of every
// other message, so a wave runs these side by side (see run_wave).
static bool place_one(CommitJob& job, const spool::SpoolPaths& paths, sys::Sys& s) {
    std::string incoming = paths.incoming_file(job.id);
    std::string msg = paths.message_file(job.id);
    std::string env = paths.envelope_file(job.id);
    if (auto c = job.file->commit(); !c) {
        job.result = c;  // the DurableFile still owns incoming/ID and removes it
        job.file->abandon();
        return false;
    }
    if (auto r = s.rename(incoming, msg); !r.ok()) {
        job.result = fail_errno("rename " + incoming + " to " + msg, r.error());
        remove_quietly(s, incoming);
        return false;
    }
    spool::AtomicWriteOptions opts;
    opts.mode = spool::kEnvelopeFileMode;
    opts.sync_dir = false;  // one directory fsync for the whole wave
    if (auto w = spool::atomic_write(env, job.envelope_text, opts, s); !w) {
        job.result = w;
        remove_quietly(s, msg);
        return false;
    }
    job.result = {};
    return true;
}

WaveStats run_wave(std::vector<CommitJob>& jobs, const spool::SpoolPaths& paths, sys::Sys& s,
                   size_t parallel) {
    WaveStats stats;
    std::vector<char> ok(jobs.size(), 0);
    // The disk completes independent fsyncs far faster together than one
    // after another (bench/RESULTS.md): each message's fsyncs run on their
    // own thread; only the directory fsync below is shared by the wave.
    size_t threads = std::min(parallel, jobs.size());
    if (threads <= 1) {
        for (size_t i = 0; i < jobs.size(); ++i) ok[i] = place_one(jobs[i], paths, s);
    } else {
        std::atomic<size_t> next{0};
        auto work = [&] {
            for (size_t i = next++; i < jobs.size(); i = next++)
                ok[i] = place_one(jobs[i], paths, s);
        };
        std::vector<std::thread> pool;
        for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
        work();
        for (auto& t : pool) t.join();
    }
    std::vector<CommitJob*> placed;  // messages whose files are in queue/
    for (size_t i = 0; i < jobs.size(); ++i)
        if (ok[i]) placed.push_back(&jobs[i]);
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
