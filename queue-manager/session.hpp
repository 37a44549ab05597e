// One client connection of the enqueue channel: the transaction state
// machine of queue_msgs.hpp on top of an ipc::Connection.
//
//   Idle        begin → InTxn; admin → admin_reply, stays Idle
//   InTxn       rcpt, data; commit → Committing (or failed → Idle);
//               abort → Idle (no reply)
//   Committing  nothing: the client waits for queued/failed → Idle
//
// Anything else is a protocol error: logged, and the connection is closed
// (an internal peer that breaks the protocol is dropped, STYLE §3). Closing
// the connection, for any reason, in the middle of a transaction removes
// incoming/ID; a commit already handed to the committer still completes
// (the client just never hears about it, as when it crashes after DATA).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/ipc/channel.hpp"
#include "queue-manager/commit.hpp"
#include "queue-manager/transaction.hpp"

namespace pbx::qm {

struct AdminReply {
    bool ok = false;
    std::string text;
};

// What a session needs from the queue-manager.
class SessionHost {
  public:
    virtual ~SessionHost() = default;
    virtual const SubmitPolicy& policy() const = 0;
    virtual const TransactionLimits& limits() const = 0;
    virtual const spool::SpoolPaths& paths() const = 0;
    virtual ReceivedContext received_context() const = 0;
    // Takes a finished transaction's job; later calls Session::commit_done
    // for `session` if it still exists.
    virtual void commit(CommitJob job, const spool::Envelope& env, uint64_t session) = 0;
    virtual AdminReply admin(const ipc::Message& request, const ipc::PeerInfo& peer) = 0;
    // Destroys the session (from inside its own callbacks: the caller returns
    // at once).
    virtual void close_session(uint64_t session) = 0;
};

class Session {
  public:
    Session(SessionHost& host, uint64_t token, const ipc::PeerInfo& peer);
    // Starts the connection (sends our hello).
    void start(event_base* base, UniqueFd fd);

    // The committer's answer for this session's transaction.
    void commit_done(const spool::QueueId& id, const Status& result, const Refusal& refusal);

    uint64_t token() const { return token_; }
    const ipc::PeerInfo& peer() const { return peer_; }

  private:
    enum class State { Idle, InTxn, Committing };

    void on_message(ipc::Message&& m);
    void on_close(const ipc::IpcError& e);
    void begin(const ipc::Message& m);
    void commit();
    void reply_failed(const Refusal& r);
    void reply(ipc::Message&& m);
    void protocol_error(std::string_view what);

    SessionHost& host_;
    uint64_t token_;
    ipc::PeerInfo peer_;
    std::unique_ptr<ipc::Connection> conn_;
    State state_ = State::Idle;
    std::optional<Transaction> txn_;
    std::optional<Refusal> refusal_;  // the transaction failed before it had a file
};

}  // namespace pbx::qm
