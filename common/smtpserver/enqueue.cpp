#include "common/smtpserver/enqueue.hpp"

#include "common/ipc/queue_msgs.hpp"
#include "common/log.hpp"

namespace pbx::smtpserver {

namespace qm = ipc::queue;

ipc::Message begin_frame(const smtp::Envelope& env, std::string_view origin) {
    auto m = ipc::Message::named(qm::kProtocol, "begin");
    m.set_str("origin", origin);
    m.set_str("sender", env.mail_from);
    m.set_str("protocol", env.protocol);
    if (!env.client_ip.empty()) m.set_str("client_address", env.client_ip);
    if (!env.client_host.empty()) m.set_str("client_hostname", env.client_host);
    if (!env.helo.empty()) m.set_str("helo", env.helo);
    if (env.tls && !env.tls_details.empty()) m.set_str("tls", env.tls_details);
    if (!env.auth_user.empty()) m.set_str("auth_user", env.auth_user);
    m.set_str("body", env.body == smtp::BodyType::EightBitMime ? "8BITMIME" : "7BIT");
    if (env.smtputf8) m.set_u64("smtputf8", 1);
    if (env.size_declared) m.set_u64("size_declared", *env.size_declared);
    if (env.ret == smtp::DsnRet::Full) m.set_str("ret", "FULL");
    if (env.ret == smtp::DsnRet::Hdrs) m.set_str("ret", "HDRS");
    // ENVID is xtext-decoded and may hold any byte; a Str cannot carry NUL.
    if (!env.envid.empty() && env.envid.find('\0') == std::string::npos)
        m.set_str("envid", env.envid);
    return m;
}

ipc::Message rcpt_frame(const smtp::EnvelopeRecipient& r) {
    auto m = ipc::Message::named(qm::kProtocol, "rcpt");
    m.set_str("address", r.address);
    if (!r.orcpt_type.empty() && r.orcpt.find('\0') == std::string::npos)
        m.set_str("orcpt", r.orcpt_type + ";" + r.orcpt);
    if (r.notify != 0) m.set_u64("notify", r.notify);
    return m;
}

EnqueueClient::EnqueueClient(event_base* base, std::string socket_path,
                             std::chrono::milliseconds timeout)
    : base_(base), path_(std::move(socket_path)), timeout_(timeout) {
    timer_.reset(evtimer_new(base_, timer_cb, this));
}

EnqueueClient::~EnqueueClient() = default;

bool EnqueueClient::ensure_connected() {
    if (conn_ && conn_->is_open()) return true;
    conn_.reset();
    auto fd = ipc::connect_unix(path_);
    if (!fd) {
        failure_ = "queue-manager is not reachable: " + fd.error().message;
        return false;
    }
    conn_ = std::make_unique<ipc::Connection>(
        base_, std::move(fd).value(), qm::kProtocol,
        [this](ipc::Message&& m) { on_message(std::move(m)); },
        [this](const ipc::IpcError& e) { on_close(e); });
    return true;
}

void EnqueueClient::fail(std::string why) {
    if (state_ == State::Sending) {
        state_ = State::Failed;
        failure_ = std::move(why);
    }
}

void EnqueueClient::begin(const smtp::Envelope& env, std::string_view origin) {
    state_ = State::Sending;
    failure_.clear();
    if (!ensure_connected()) {
        state_ = State::Failed;
        log::warn(failure_);
        return;
    }
    if (!send(begin_frame(env, origin))) return;
    for (const auto& r : env.recipients)
        if (!send(rcpt_frame(r))) return;
}

bool EnqueueClient::send(ipc::Message&& m) {
    if (state_ != State::Sending) return false;
    if (!conn_ || !conn_->is_open()) {
        fail("queue-manager connection lost");
        return false;
    }
    if (auto s = conn_->send(std::move(m)); !s) {
        fail(s.error().message);
        return false;
    }
    return true;
}

void EnqueueClient::chunk(std::string_view bytes) {
    if (state_ != State::Sending) return;
    while (!bytes.empty()) {
        std::string_view piece = bytes.substr(0, qm::kMaxChunk);
        bytes.remove_prefix(piece.size());
        auto m = ipc::Message::named(qm::kProtocol, "data");
        m.set_bytes("bytes", piece);
        if (!send(std::move(m))) return;
    }
}

void EnqueueClient::end(DoneFn done) {
    done_ = std::move(done);
    (void)send(ipc::Message::named(qm::kProtocol, "commit"));
    if (state_ != State::Sending) {
        // Failed before the commit: answer from the loop, never from here.
        state_ = State::Committing;
        timeval now{0, 0};
        event_add(timer_.get(), &now);
        return;
    }
    state_ = State::Committing;
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
    event_add(timer_.get(), &tv);
}

void EnqueueClient::abort() {
    if (state_ == State::Sending && conn_ && conn_->is_open())
        (void)conn_->send(ipc::Message::named(qm::kProtocol, "abort"));
    state_ = State::Idle;
    failure_.clear();
    done_ = nullptr;
    event_del(timer_.get());
}

void EnqueueClient::finish(const EnqueueResult& r) {
    event_del(timer_.get());
    state_ = State::Idle;
    failure_.clear();
    DoneFn done = std::move(done_);
    done_ = nullptr;
    if (done) done(r);
}

void EnqueueClient::timer_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<EnqueueClient*>(self);
    if (c->state_ != State::Committing) return;
    if (c->failure_.empty()) {
        // No answer in time: the state of the transaction is unknown, so the
        // connection cannot be reused.
        log::warn("queue-manager did not answer a commit within ", c->timeout_.count() / 1000,
                  " s");
        c->conn_.reset();
        c->finish({EnqueueResult::Kind::TempFail, {}});
        return;
    }
    c->finish({EnqueueResult::Kind::TempFail, {}});
}

void EnqueueClient::on_message(ipc::Message&& m) {
    if (state_ != State::Committing || !failure_.empty()) {
        log::warn("queue-manager: unexpected ", m.name(), " message; connection dropped");
        conn_.reset();  // allowed from inside its own callback (channel.hpp)
        fail("queue-manager protocol error");
        return;
    }
    if (m.name() == "queued") {
        finish({EnqueueResult::Kind::Queued, std::string(m.get_str("queue_id").value_or(""))});
    } else if (m.name() == "failed") {
        const bool temporary = m.get_u64("temporary").value_or(1) != 0;
        std::string text(m.get_str("text").value_or(""));
        finish({temporary ? EnqueueResult::Kind::TempFail : EnqueueResult::Kind::PermFail,
                std::move(text)});
    } else {
        log::warn("queue-manager: unexpected ", m.name(), " message; ignored");
    }
}

void EnqueueClient::on_close(const ipc::IpcError& e) {
    const std::string why = e.text.empty() ? "connection closed" : e.text;
    conn_.reset();  // allowed from inside its own on_close (channel.hpp)
    if (state_ == State::Sending) {
        log::warn("queue-manager connection lost during a transaction: ", why);
        fail(why);
    } else if (state_ == State::Committing && failure_.empty()) {
        log::warn("queue-manager connection lost before it answered a commit: ", why);
        finish({EnqueueResult::Kind::TempFail, {}});
    }
}

}  // namespace pbx::smtpserver
