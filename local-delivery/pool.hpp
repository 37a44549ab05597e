// The long-lived delivery workers of local-delivery (local-delivery(8),
// PROCESS MODEL). A worker is a child of the parent that has dropped, once,
// to one recipient's uid and gid (never 0, no capabilities, NO_NEW_PRIVS)
// and then stores mailbox deliveries for that uid: the parent hands it jobs
// (the envelope fields of one Job and the message fd, passed with
// SCM_RIGHTS) and the worker answers each with run_job's report. The parent
// may send several jobs without waiting (at most kWorkerMaxBatch); the
// worker takes every job that is waiting when it is ready as one batch
// (run_jobs: a group commit, one fsync of new/ per Maildir for the batch)
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

// The worker's loop on its end of the socketpair, as the recipient: hello,
// then batches of jobs → their reports until the parent closes the channel
// (returns true) or the channel fails (returns false). Never throws.
bool serve_worker(int fd, const WorkerLimits& limits = {});

}  // namespace pbx::local
