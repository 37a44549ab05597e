#include "smtpd/auth_client.hpp"

#include "common/ipc/auth_msgs.hpp"
#include "common/log.hpp"

namespace pbx::smtpd {

namespace am = ipc::auth;

AuthClient::AuthClient(event_base* base, std::string socket_path, std::chrono::milliseconds timeout)
    : base_(base), path_(std::move(socket_path)), timeout_(timeout) {}

AuthClient::~AuthClient() = default;

bool AuthClient::ensure_connected() {
    if (conn_ && conn_->is_open()) return true;
    conn_.reset();
    auto fd = ipc::connect_unix(path_);
    if (!fd) {
        if (!warned_) log::warn("authd is not reachable: ", fd.error().message);
        warned_ = true;
        return false;
    }
    conn_ = std::make_unique<ipc::Connection>(
        base_, std::move(fd).value(), am::kProtocol,
        [this](ipc::Message&& m) { on_message(std::move(m)); },
        [this](const ipc::IpcError& e) { on_close(e); });
    if (warned_) log::info("authd is reachable again");
    warned_ = false;
    return true;
}

uint64_t AuthClient::lookup_rcpt(const std::string& address, Callback done) {
    auto p = std::make_unique<Pending>();
    p->done = std::move(done);
    auto m = ipc::Message::named(am::kProtocol, "rcpt");
    m.set_str("address", address);
    return send(std::move(m), std::move(p));
}

uint64_t AuthClient::check_relay(const std::string& ip, RelayCallback done) {
    auto p = std::make_unique<Pending>();
    p->relay_done = std::move(done);
    auto m = ipc::Message::named(am::kProtocol, "relay_check");
    m.set_str("client_address", ip);
    return send(std::move(m), std::move(p));
}

uint64_t AuthClient::send(ipc::Message&& m, std::unique_ptr<Pending> p) {
    const uint64_t id = next_id_++;
    p->owner = this;
    p->id = id;
    p->timer.reset(evtimer_new(base_, timer_cb, p.get()));
    std::chrono::milliseconds wait = timeout_;
    bool sent = false;
    if (ensure_connected()) {
        m.set_u64("id", id);
        if (auto s = conn_->send(std::move(m)); s)
            sent = true;
        else
            log::warn("authd: cannot send a request: ", s.error().message);
    }
    p->sent = sent;
    if (!sent) wait = std::chrono::milliseconds(0);  // answer TempFail from the loop
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(wait.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((wait.count() % 1000) * 1000);
    event_add(p->timer.get(), &tv);
    pending_.emplace(id, std::move(p));
    return id;
}

void AuthClient::cancel(uint64_t id) {
    pending_.erase(id);
}

void AuthClient::answer(uint64_t id, const RcptAnswer& a) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // cancelled, or answered late after a timeout
    if (it->second->relay_done) return answer_relay(id, false, 0);
    Callback done = std::move(it->second->done);
    pending_.erase(it);
    done(a);
}

void AuthClient::answer_relay(uint64_t id, bool allowed, uint64_t minutes) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    RelayCallback done = std::move(it->second->relay_done);
    pending_.erase(it);
    if (done) done(allowed, minutes);
}

void AuthClient::timer_cb(evutil_socket_t, short, void* arg) noexcept {
    auto* p = static_cast<Pending*>(arg);
    AuthClient* self = p->owner;
    const uint64_t id = p->id;
    if (p->sent)
        log::warn("authd: no answer to lookup ", id, " within ", self->timeout_.count(), " ms");
    self->answer(id, RcptAnswer{RcptAnswer::Kind::TempFail, {}});
}

void AuthClient::on_message(ipc::Message&& m) {
    if (m.name() == "relay_check_result") {
        answer_relay(m.get_u64("id").value_or(0), m.get_u64("allowed").value_or(0) == 1,
                     m.get_u64("minutes_left").value_or(0));
        return;
    }
    if (m.name() != "rcpt_result") {
        log::warn("authd: unexpected ", m.name(), " message; ignored");
        return;
    }
    const uint64_t id = m.get_u64("id").value_or(0);
    const std::string_view status = m.get_str("status").value_or("");
    RcptAnswer a;
    if (status == "found") {
        a.kind = RcptAnswer::Kind::Found;
        a.canonical = std::string(m.get_str("canonical").value_or(""));
    } else if (status == "unknown") {
        a.kind = RcptAnswer::Kind::Unknown;
    } else if (status == "remote") {
        a.kind = RcptAnswer::Kind::Remote;
    } else {
        if (status != "tempfail") log::warn("authd: unknown rcpt status '", status, "'");
        a.kind = RcptAnswer::Kind::TempFail;
    }
    answer(id, a);
}

void AuthClient::on_close(const ipc::IpcError& e) {
    log::warn("authd connection lost: ", e.text.empty() ? "closed" : e.text);
    // Destroying the Connection from its own on_close is allowed (channel.hpp).
    conn_.reset();
    // Everything in flight is lost: answer it now (we are in the loop).
    auto lost = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : lost) {
        Callback done = std::move(p->done);
        RelayCallback relay = std::move(p->relay_done);
        p.reset();
        if (relay)
            relay(false, 0);
        else
            done(RcptAnswer{RcptAnswer::Kind::TempFail, {}});
    }
}

}  // namespace pbx::smtpd
