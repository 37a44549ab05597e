#include "queue-manager/commit.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
//   1. write the envelope's temp file queue/ID.env.tmp.PID.N; start the
//      writeback of both files (incoming/ID and the temp) and wait for it
//      (sync_file_range); then fsync both files, side by side;
//   2. once its two files are on disk: rename incoming/ID to queue/ID.msg,
//      then the temp to queue/ID.env (in this order, so that an envelope never
//      exists without its message);
//   3. one fsync of queue/ for a whole wave of messages past step 2.
// The on-disk result is DESIGN §4's protocol exactly: every fsync it names is
// made, and no rename comes before the fsyncs of its files. The writeback of
// step 1 only makes those fsyncs cheaper on a journaling file system: ext4
// allocates a file's blocks (delayed allocation) and records its written
// extents in the journal's running transaction when the file's writeback
// runs, so two files whose fsyncs each start their own writeback often end in
// two journal commits (the second file's extents land in the transaction after
// the one the first fsync commits). With both files written back first, their
// metadata sits in one transaction: the first fsync commits it and the second
// finds it committed (bench/RESULTS.md, 2026-11-26 08:08: 2.1–2.4 → 2.00
// journal commits per message at 1 session; steps 2 and 3 are the second
// commit, which no order that keeps renames after the file fsyncs can share).
namespace {

std::atomic<uint64_t> g_envelope_temp_counter{0};

struct Placement {
    std::optional<spool::DurableFile> envelope;  // the written temp, until synced
    std::string envelope_temp;                   // the synced temp file; empty until it is
    Status envelope_status;
    bool message_synced = false;
};

// Step 1 fails before the fsyncs: the message fails with `st`, the temp goes.
bool fail_before_sync(CommitJob& job, Placement& p, Status st) {
    job.result = std::move(st);
    p.envelope.reset();  // unlinks the temp
    return false;
}

Status writeback(sys::Sys& s, int fd, unsigned flags, const std::string& path) {
    auto r = sys::retry_eintr([&] { return s.sync_file_range(fd, flags); });
    if (!r.ok()) return fail_errno("sync_file_range " + path, r.error());
    return {};
}

// Step 1, first half: writes the envelope's temp and starts the writeback of
// both files. False (job.result set) when the message fails here.
bool write_envelope_and_start_writeback(CommitJob& job, Placement& p,
                                        const spool::SpoolPaths& paths, sys::Sys& s) {
    std::string temp = paths.envelope_file(job.id) + std::string(spool::kTempMarker) +
                       std::to_string(s.getpid()) + "." +
                       std::to_string(g_envelope_temp_counter.fetch_add(1));
    auto f = spool::DurableFile::create(temp, spool::kEnvelopeFileMode, s);
    if (!f) return fail_before_sync(job, p, Err{f.error()});
    p.envelope.emplace(std::move(f).value());
    if (auto a = p.envelope->append(job.envelope_text); !a) return fail_before_sync(job, p, a);
    for (const spool::DurableFile* file : {&*job.file, &*p.envelope})
        if (auto w = writeback(s, file->fd(), SYNC_FILE_RANGE_WRITE, file->path()); !w)
            return fail_before_sync(job, p, w);
    return true;
}

// Step 1, second half of the writeback: waits until both files' pages are on
// the disk (and, on ext4, their extents recorded in the running transaction).
bool wait_writeback(CommitJob& job, Placement& p, sys::Sys& s) {
    constexpr unsigned kAll =
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    for (const spool::DurableFile* file : {&*job.file, &*p.envelope})
        if (auto w = writeback(s, file->fd(), kAll, file->path()); !w)
            return fail_before_sync(job, p, w);
    return true;
}

// Step 1's fsyncs (independent: they may run side by side).
void sync_message(CommitJob& job, Placement& p) {
    if (auto c = job.file->commit(); !c) {
        job.result = c;
        return;
    }
    p.message_synced = true;
}

void sync_envelope(Placement& p) {
    std::string temp = p.envelope->path();
    if (auto c = p.envelope->commit(); !c) {
        p.envelope_status = c;
        p.envelope.reset();  // the DurableFile removes the temp
        return;
    }
    p.envelope.reset();
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
    if (!p.message_synced) {  // job.result holds the error (step 1 or its fsync)
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
    // Step 1 for the whole wave: every file's writeback before any fsync, so
    // that one journal commit can cover them all.
    std::vector<char> ready(jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i)
        ready[i] = write_envelope_and_start_writeback(jobs[i], placements[i], paths, s);
    for (size_t i = 0; i < jobs.size(); ++i)
        if (ready[i]) ready[i] = wait_writeback(jobs[i], placements[i], s);
    for (size_t i = 0; i < jobs.size(); ++i) {
        if (!ready[i]) continue;
        sync_message(jobs[i], placements[i]);
        sync_envelope(placements[i]);
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
    // Task 0 (the envelope's temp, both writebacks, the message's fsync) and
    // task 1 (the envelope's fsync: queued by task 0 when a thread is idle,
    // else done by task 0's thread); whoever ends the last places the message.
    std::atomic<int> tasks_left{2};
};

namespace {

// Threads made at the start (the two fsyncs of one message never wait for a
// thread to be made) and at most (the disk's headroom for concurrent fsyncs,
// bench/RESULTS.md).
constexpr size_t kInitialThreads = 2;
constexpr size_t kMaxThreads = 32;

}  // namespace

GroupCommitter::GroupCommitter(spool::SpoolPaths paths, DoneFn done, sys::Sys& s)
    : paths_(std::move(paths)), done_(std::move(done)), sys_(s), pool_(kMaxThreads) {}

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
    if (auto st = gc->pool_.start(kInitialThreads); !st)
        return fail("cannot start a commit thread: " + st.error().message);
    return gc;
}

GroupCommitter::~GroupCommitter() {
    // pool_ goes first (the last member): it runs every task left (a
    // message's last task also places it and runs, or hands it to, a
    // directory wave), then joins its threads, so that every submitted job
    // sits in finished_. finished_ dies then, reported to nobody: its
    // messages are committed (durable) or undone, as after a crash at the
    // same point.
}

void GroupCommitter::submit(CommitJob job) {
    auto* in = new InFlight{std::move(job)};  // tasks_left = 2
    {
        std::lock_guard lock(mu_);
        in->seq = next_seq_++;
        in_files_.insert(in->seq);
    }
    pool_.post([this, in] { file_task(in); });  // it hands over the envelope's fsync (task 1)
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

void GroupCommitter::file_task(InFlight* in) {
    Placement& p = in->placement;
    if (write_envelope_and_start_writeback(in->job, p, paths_, sys_) &&
        wait_writeback(in->job, p, sys_)) {
        // Both files' metadata is in the running journal transaction: their
        // fsyncs, side by side if a thread is idle, share its commit (the
        // second one to reach it issues no flush of its own while the
        // commit runs).
        bool handed_over = pool_.post_if_idle([this, in] { envelope_task(in); });
        sync_message(in->job, p);
        if (!handed_over) {
            sync_envelope(p);
            in->tasks_left.fetch_sub(1, std::memory_order_acq_rel);
        }
    } else {
        in->tasks_left.fetch_sub(1, std::memory_order_acq_rel);  // no envelope fsync
    }
    end_task(in);
}

void GroupCommitter::envelope_task(InFlight* in) {
    sync_envelope(in->placement);
    end_task(in);
}

void GroupCommitter::end_task(InFlight* in) {
    if (in->tasks_left.fetch_sub(1, std::memory_order_acq_rel) != 1)
        return;  // the other task of the message is still running
    bool placed = rename_into_queue(in->job, in->placement, paths_, sys_);
    std::unique_lock lock(mu_);
    in_files_.erase(in->seq);
    if (dir_syncing_) files_done_cv_.notify_one();
    if (!placed) {
        finish_locked(std::move(in->job));
        delete in;
        return;
    }
    placed_.push_back(in);
    if (dir_syncing_) return;  // the syncing thread takes it in its next wave
    dir_syncing_ = true;
    run_directory_waves(lock);
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
