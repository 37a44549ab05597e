#include "queue-manager/session.hpp"

#include "common/ipc/queue_msgs.hpp"
#include "common/log.hpp"

namespace pbx::qm {

namespace qp = ipc::queue;

Session::Session(SessionHost& host, uint64_t token, const ipc::PeerInfo& peer)
    : host_(host), token_(token), peer_(peer) {}

void Session::start(event_base* base, UniqueFd fd) {
    conn_ = std::make_unique<ipc::Connection>(
        base, std::move(fd), qp::kProtocol, [this](ipc::Message&& m) { on_message(std::move(m)); },
        [this](const ipc::IpcError& e) { on_close(e); });
}

void Session::on_close(const ipc::IpcError& e) {
    if (e.code != ipc::IpcErrc::Eof && e.code != ipc::IpcErrc::Done)
        log::warn("enqueue: connection from uid ", peer_.uid, " closed: ", e.text);
    if (txn_) log::info(txn_->id().str(), ": client went away; transaction dropped");
    host_.close_session(token_);  // destroys *this, and the transaction's file with it
}

void Session::protocol_error(std::string_view what) {
    log::warn("enqueue: protocol error from uid ", peer_.uid, " (", ipc::to_string(peer_.program),
              "): ", what, "; closing");
    if (txn_) log::info(txn_->id().str(), ": transaction dropped");
    host_.close_session(token_);
}

void Session::reply(ipc::Message&& m) {
    if (auto s = conn_->send(std::move(m)); !s)
        log::error("enqueue: cannot send a reply: ", s.error().message);
}

void Session::reply_failed(const Refusal& r) {
    ipc::Message m(qp::kProtocol, 7);
    m.set_u64("temporary", r.temporary ? 1 : 0);
    m.set_str("text", r.text);
    reply(std::move(m));
}

void Session::begin(const ipc::Message& m) {
    state_ = State::InTxn;
    txn_.reset();
    refusal_.reset();
    Submitter who{peer_.uid, peer_.program};
    auto env = envelope_from_begin(m, who, host_.policy());
    if (!env) {
        log::info("enqueue: refused a transaction from uid ", peer_.uid, ": ", env.error().text);
        refusal_ = env.error();
        return;
    }
    auto t = Transaction::begin(host_.paths(), std::move(env).value(), host_.limits());
    if (!t) {
        log::error("enqueue: cannot create a queue file: ", t.error().text);
        refusal_ = t.error();
        return;
    }
    txn_.emplace(std::move(t).value());
}

void Session::commit() {
    if (refusal_ || !txn_) {
        Refusal r = refusal_.value_or(Refusal{true, "4.3.0 no transaction"});
        state_ = State::Idle;
        refusal_.reset();
        reply_failed(r);
        return;
    }
    auto job = txn_->finish(host_.received_context(), token_);
    if (!job) {
        log::info(txn_->id().str(), ": refused: ", job.error().text);
        state_ = State::Idle;
        txn_.reset();
        reply_failed(job.error());
        return;
    }
    state_ = State::Committing;
    spool::Envelope env = txn_->envelope();
    txn_.reset();
    host_.commit(std::move(job).value(), env, token_);
}

void Session::commit_done(const spool::QueueId& id, const Status& result, const Refusal& refusal) {
    if (state_ != State::Committing) return;
    state_ = State::Idle;
    if (!result) {
        reply_failed(refusal);
        return;
    }
    ipc::Message m(qp::kProtocol, 6);
    m.set_str("queue_id", id.str());
    reply(std::move(m));
}

void Session::on_message(ipc::Message&& m) {
    std::string_view name = m.name();
    switch (state_) {
        case State::Idle:
            if (name == "begin") return begin(m);
            if (name == "admin") {
                AdminReply r = host_.admin(m, peer_);
                ipc::Message out(qp::kProtocol, 9);
                out.set_u64("ok", r.ok ? 1 : 0);
                out.set_str("text", r.text);
                return reply(std::move(out));
            }
            break;
        case State::InTxn:
            if (name == "rcpt") {
                if (!txn_) return;  // already refused: swallow
                auto r = recipient_from_rcpt(m, host_.policy());
                if (r)
                    txn_->add_recipient(std::move(r).value());
                else
                    txn_->fail(r.error());
                return;
            }
            if (name == "data") {
                if (txn_) txn_->add_data(*m.get_bytes("bytes"), host_.received_context());
                return;
            }
            if (name == "commit") return commit();
            if (name == "abort") {
                if (txn_) log::info(txn_->id().str(), ": aborted by the client");
                txn_.reset();
                refusal_.reset();
                state_ = State::Idle;
                return;
            }
            break;
        case State::Committing:
            break;
    }
    protocol_error("unexpected '" + std::string(name) + "'");
}

}  // namespace pbx::qm
