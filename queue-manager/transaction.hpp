// One enqueue transaction: begin → rcpt* → data* → commit | abort
// (common/ipc/queue_msgs.hpp). It owns incoming/ID from `begin` on; the
// file is removed when the transaction fails, is aborted or is dropped with
// its connection (DurableFile's destructor), and leaves incoming/ only by
// becoming a CommitJob for the group committer.
//
// The Received: line goes first into the file; it is written when the first
// data chunk (or the commit) arrives, because it names the recipient when
// there is exactly one and the recipients come after `begin`.
//
// Once a transaction has failed it swallows further rcpt and data and keeps
// the first refusal, which the client receives as the one reply to its
// commit.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/result.hpp"
#include "common/spool/atomic_write.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/layout.hpp"
#include "queue-manager/commit.hpp"
#include "queue-manager/received.hpp"
#include "queue-manager/submission.hpp"

namespace pbx::qm {

struct TransactionLimits {
    // message_size_limit: octets of message data accepted from the client.
    uint64_t max_message_size = 50 * 1024 * 1024;
    // On top of it: our Received: line, and room for a client that counts a
    // little differently (smtpd enforces the limit exactly itself).
    uint64_t size_slack = 64 * 1024;
    spool::EnvelopeLimits envelope;
};

// "4.3.1 ..." for an I/O failure: the client should try again later.
Refusal io_refusal(const Error& e);

class Transaction {
  public:
    // Creates incoming/ID for a new queue ID (another ID on EEXIST). `env`
    // comes from envelope_from_begin(); its id and arrival are set here.
    static Result<Transaction, Refusal> begin(const spool::SpoolPaths& paths, spool::Envelope env,
                                              const TransactionLimits& limits,
                                              sys::Sys& s = sys::real());

    Transaction(Transaction&&) noexcept = default;
    Transaction& operator=(Transaction&&) noexcept = default;

    void add_recipient(spool::Recipient r);
    // A recipient the client sent that we refused: the transaction fails.
    void fail(Refusal r);
    void add_data(std::string_view bytes, const ReceivedContext& rc);

    // Ends the transaction: the job for the group committer, or the refusal.
    Result<CommitJob, Refusal> finish(const ReceivedContext& rc, uint64_t token);

    bool failed() const { return refusal_.has_value(); }
    const spool::QueueId& id() const { return env_.id; }
    const spool::Envelope& envelope() const { return env_; }
    // Octets of message data received so far (without our Received: line).
    uint64_t data_size() const { return data_size_; }

  private:
    Transaction(spool::Envelope env, spool::DurableFile file, const TransactionLimits& limits)
        : env_(std::move(env)), file_(std::move(file)), limits_(limits) {}
    void write_header(const ReceivedContext& rc);
    void set_failed(Refusal r);

    spool::Envelope env_;
    spool::DurableFile file_;
    TransactionLimits limits_;
    uint64_t data_size_ = 0;
    bool header_written_ = false;
    std::optional<Refusal> refusal_;
};

}  // namespace pbx::qm
