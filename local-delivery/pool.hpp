// The long-lived delivery workers of local-delivery (local-delivery(8),
// PROCESS MODEL). A worker is a child of the parent that has dropped, once,
// to one recipient's uid and gid (never 0, no capabilities, NO_NEW_PRIVS)
// and then stores mailbox deliveries for that uid one after another: the
// parent hands it a job (the envelope fields of one Job and the message fd,
// passed with SCM_RIGHTS) and the worker answers with run_job's report. One
// job at a time per worker; the parent keeps a bounded pool of them per
// (uid, gid, supplementary group) and closes idle ones.
//
// The channel is a socketpair speaking common/ipc frames (protocol
// "local-worker"): the worker side is a plain blocking loop (serve_worker),
// the parent side an ipc::Connection in its event loop.
//
//   job{message(fd), sender, rcpt, mailbox, maildir, host, counter,
//       dotforward, user, home}        parent → worker, one at a time
//   → report{report}                   run_job's bytes (parse_report)
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
inline constexpr ipc::Protocol kWorkerProtocol{"local-worker", 1, kWorkerMessages, 256 * 1024};
static_assert(ipc::well_formed(kWorkerProtocol));

// Only mailbox jobs go to workers; pipes, files and forwards keep their
// one-shot child (they may run for minutes, or as root without capabilities).
// The job's message fd is duplicated into the frame.
Result<ipc::Message> job_message(const Job& job);
// The Job of a received frame; its message_fd is taken into `fd`.
std::optional<Job> job_from_message(ipc::Message& m, UniqueFd& fd);

// The worker's loop on its end of the socketpair, as the recipient: hello,
// then job → report until the parent closes the channel (returns true) or
// the channel fails (returns false). Never throws.
bool serve_worker(int fd, const WorkerLimits& limits = {});

}  // namespace pbx::local
