#include "queue-manager/transaction.hpp"

#include <fcntl.h>

#include <chrono>

namespace pbx::qm {
namespace {

// A clock stepped back onto a reused pid is the only way to meet an existing
// incoming/ID (queue_id.hpp); a few fresh IDs settle it.
constexpr int kIdAttempts = 8;

}  // namespace

Refusal io_refusal(const Error& e) {
    if (e.sys_errno == ENOSPC || e.sys_errno == EDQUOT)
        return Refusal{true, "4.3.1 Insufficient system storage"};
    return Refusal{true, "4.3.0 Queue file write error"};
}

Result<Transaction, Refusal> Transaction::begin(const spool::SpoolPaths& paths, spool::Envelope env,
                                                const TransactionLimits& limits, sys::Sys& s) {
    auto now = std::chrono::system_clock::now();
    env.arrival = std::chrono::time_point_cast<std::chrono::seconds>(now);
    for (int attempt = 0;; ++attempt) {
        env.id = spool::QueueId::generate(now);
        auto f =
            spool::DurableFile::create(paths.incoming_file(env.id), spool::kMessageFileMode, s);
        if (f) return Transaction(std::move(env), std::move(f).value(), limits);
        if (f.error().sys_errno != EEXIST || attempt + 1 >= kIdAttempts)
            return Err{io_refusal(f.error())};
    }
}

void Transaction::set_failed(Refusal r) {
    if (refusal_) return;
    refusal_ = std::move(r);
    file_.abandon();
}

void Transaction::fail(Refusal r) {
    set_failed(std::move(r));
}

void Transaction::add_recipient(spool::Recipient r) {
    if (failed()) return;
    if (env_.recipients.size() >= limits_.envelope.max_recipients) {
        set_failed(Refusal{false, "5.5.3 Too many recipients"});
        return;
    }
    if (header_written_) {
        // Recipients come before data; a client that interleaves them is broken.
        set_failed(Refusal{false, "5.5.1 recipient after message data"});
        return;
    }
    env_.recipients.push_back(std::move(r));
}

void Transaction::write_header(const ReceivedContext& rc) {
    if (header_written_ || failed()) return;
    header_written_ = true;
    if (auto a = file_.append(received_line(env_, rc)); !a) set_failed(io_refusal(a.error()));
}

void Transaction::add_data(std::string_view bytes, const ReceivedContext& rc) {
    if (failed()) return;
    write_header(rc);
    if (failed()) return;
    data_size_ += bytes.size();
    if (data_size_ > limits_.max_message_size + limits_.size_slack) {
        set_failed(Refusal{false, "5.3.4 Message size exceeds fixed maximum message size"});
        return;
    }
    if (auto a = file_.append(bytes); !a) set_failed(io_refusal(a.error()));
}

Result<CommitJob, Refusal> Transaction::finish(const ReceivedContext& rc, uint64_t token) {
    if (!failed() && env_.recipients.empty()) set_failed(Refusal{false, "5.5.1 no recipients"});
    write_header(rc);
    if (failed()) return Err{*refusal_};
    env_.size = file_.size();
    auto text = spool::write_envelope(env_, limits_.envelope);
    if (!text) {
        set_failed(Refusal{false, "5.5.4 bad envelope: " + text.error().to_string()});
        return Err{*refusal_};
    }
    CommitJob job;
    job.id = env_.id;
    job.file = std::move(file_);
    job.envelope_text = std::move(text).value();
    job.token = token;
    return job;
}

}  // namespace pbx::qm
