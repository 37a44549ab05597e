#include "queue-manager/commit.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "common/log.hpp"

namespace pbx::qm {
namespace {

void remove_quietly(sys::Sys& s, const std::string& path) {
    (void)s.unlink(path);
}

}  // namespace

WaveStats run_wave(std::vector<CommitJob>& jobs, const spool::SpoolPaths& paths, sys::Sys& s) {
    WaveStats stats;
    std::vector<CommitJob*> placed;  // messages whose files are in queue/
    for (CommitJob& job : jobs) {
        std::string incoming = paths.incoming_file(job.id);
        std::string msg = paths.message_file(job.id);
        std::string env = paths.envelope_file(job.id);
        if (auto c = job.file->commit(); !c) {
            job.result = c;  // the DurableFile still owns incoming/ID and removes it
            job.file->abandon();
            continue;
        }
        if (auto r = s.rename(incoming, msg); !r.ok()) {
            job.result = fail_errno("rename " + incoming + " to " + msg, r.error());
            remove_quietly(s, incoming);
            continue;
        }
        spool::AtomicWriteOptions opts;
        opts.mode = spool::kEnvelopeFileMode;
        opts.sync_dir = false;  // one directory fsync for the whole wave, below
        if (auto w = spool::atomic_write(env, job.envelope_text, opts, s); !w) {
            job.result = w;
            remove_quietly(s, msg);
            continue;
        }
        job.result = {};
        placed.push_back(&job);
    }
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
        run_wave(wave, paths_, sys_);
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
