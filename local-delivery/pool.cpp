#include "local-delivery/pool.hpp"

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "common/ipc/channel.hpp"

namespace pbx::local {

Result<ipc::Message> job_message(const Job& job) {
    int dup = fcntl(job.message_fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return fail_errno("dup of the message fd", errno);
    auto m = ipc::Message::named(kWorkerProtocol, "job");
    m.add_fd("message", UniqueFd(dup));
    m.set_str("sender", job.sender)
        .set_str("rcpt", job.rcpt)
        .set_str("mailbox", job.mailbox)
        .set_u64("maildir", job.format_maildir ? 1 : 0)
        .set_str("host", job.host)
        .set_u64("counter", job.counter)
        .set_u64("dotforward", job.dotforward ? 1 : 0)
        .set_str("user", job.user)
        .set_str("home", job.home);
    return m;
}

std::optional<Job> job_from_message(ipc::Message& m, UniqueFd& fd) {
    if (m.name() != "job") return std::nullopt;
    fd = m.take_fd("message");
    if (!fd) return std::nullopt;
    Job job;
    job.kind = JobKind::Mailbox;
    job.message_fd = fd.get();
    job.sender = std::string(*m.get_str("sender"));
    job.rcpt = std::string(*m.get_str("rcpt"));
    job.mailbox = std::string(*m.get_str("mailbox"));
    job.format_maildir = *m.get_u64("maildir") != 0;
    job.host = std::string(*m.get_str("host"));
    job.counter = *m.get_u64("counter");
    job.dotforward = *m.get_u64("dotforward") != 0;
    job.user = std::string(*m.get_str("user"));
    job.home = std::string(*m.get_str("home"));
    return job;
}

namespace {

// Waits until a frame (or the end of the channel) is waiting to be read, or
// until `until` has passed (0 µs: only looks): true when one is.
bool readable_by(int fd, BatchPacer::Clock::time_point until) {
    for (;;) {
        auto left =
            std::chrono::duration_cast<std::chrono::nanoseconds>(until - BatchPacer::Clock::now());
        if (left.count() < 0) left = std::chrono::nanoseconds(0);
        timespec ts{static_cast<time_t>(left.count() / 1000000000),
                    static_cast<long>(left.count() % 1000000000)};
        pollfd p{fd, POLLIN, 0};
        int n = ::ppoll(&p, 1, &ts, nullptr);
        if (n < 0 && errno == EINTR) continue;
        return n > 0;
    }
}

}  // namespace

bool serve_worker(int fd, const WorkerOptions& options) {
    if (!ipc::handshake(fd, kWorkerProtocol).ok()) return false;
    BatchPacer pacer(options.batch_delay, std::min(options.max_batch, kWorkerMaxBatch));
    // The batches' fsyncs side by side; threads made as batches need them.
    spool::ThreadPool fsyncs(kWorkerMaxBatch);
    for (;;) {
        // A batch: the first job (waiting for it), then whatever else the
        // parent has sent meanwhile, then, while jobs keep coming and the
        // first is a Maildir delivery, what comes until the pacer's deadline.
        std::vector<Job> jobs;
        std::vector<UniqueFd> fds;
        bool eof = false;
        auto first = BatchPacer::Clock::now();
        auto until = first;
        while (jobs.size() < pacer.max_batch()) {
            if (!jobs.empty()) {
                auto now = BatchPacer::Clock::now();
                if (!readable_by(fd, pacer.keep_gathering(jobs.size(), now, until) ? until : now))
                    break;
            }
            auto m = ipc::recv_frame(fd, kWorkerProtocol);
            if (!m) {
                if (m.error().code != ipc::IpcErrc::Eof) return false;
                eof = true;  // answer what was taken, then end
                break;
            }
            UniqueFd message;
            auto job = job_from_message(*m, message);
            if (!job) return false;
            if (jobs.empty()) {
                first = BatchPacer::Clock::now();
                // mbox jobs have a worker to themselves: nothing to wait for.
                until = job->format_maildir ? pacer.gather_until(first) : first;
            }
            jobs.push_back(std::move(*job));
            fds.push_back(std::move(message));
        }
        if (jobs.empty()) return eof;
        std::vector<std::string> reports = run_jobs(jobs, options.limits, kBatchBytes, &fsyncs);
        fds.clear();
        for (const std::string& report : reports) {
            auto r = ipc::Message::named(kWorkerProtocol, "report");
            r.set_bytes("report", report);
            if (!ipc::send_frame(fd, r).ok()) return false;
        }
        pacer.batch_done(BatchPacer::Clock::now());
        if (eof) return true;
    }
}

}  // namespace pbx::local
