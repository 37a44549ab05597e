#include "common/smtpserver/auth_client.hpp"

#include "common/ipc/auth_msgs.hpp"
#include "common/log.hpp"

namespace pbx::smtpserver {

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

uint64_t AuthClient::request(ipc::Message m, std::string_view answer_name, Raw done) {
    const uint64_t id = next_id_++;
    auto p = std::make_unique<Pending>();
    p->done = std::move(done);
    p->answer = answer_name;
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

uint64_t AuthClient::lookup_rcpt(const std::string& address, Callback done) {
    auto m = ipc::Message::named(am::kProtocol, "rcpt");
    m.set_str("address", address);
    return request(std::move(m), "rcpt_result", [done = std::move(done)](const ipc::Message* m) {
        RcptAnswer a;
        if (!m) return done(a);
        const std::string_view status = m->get_str("status").value_or("");
        if (status == "found") {
            a.kind = RcptAnswer::Kind::Found;
            a.canonical = std::string(m->get_str("canonical").value_or(""));
        } else if (status == "unknown") {
            a.kind = RcptAnswer::Kind::Unknown;
        } else if (status == "remote") {
            a.kind = RcptAnswer::Kind::Remote;
        } else {
            if (status != "tempfail") log::warn("authd: unknown rcpt status '", status, "'");
            a.kind = RcptAnswer::Kind::TempFail;
        }
        done(a);
    });
}

uint64_t AuthClient::verify(const std::string& user, const std::string& password,
                            const std::string& client_address, VerifyCallback done) {
    auto m = ipc::Message::named(am::kProtocol, "verify");
    m.set_str("user", user).set_bytes("password", password).set_str("service", "submission");
    if (!client_address.empty()) m.set_str("client_address", client_address);
    return request(std::move(m), "verify_result", [done = std::move(done)](const ipc::Message* m) {
        VerifyAnswer a;
        if (!m) return done(a);
        const std::string_view status = m->get_str("status").value_or("");
        if (status == "ok") {
            a.kind = VerifyAnswer::Kind::Ok;
            a.user = std::string(m->get_str("user").value_or(""));
            if (a.user.empty()) a.kind = VerifyAnswer::Kind::TempFail;
        } else if (status == "fail") {
            a.kind = VerifyAnswer::Kind::Fail;
        }
        done(a);
    });
}

uint64_t AuthClient::owns(const std::string& user, const std::string& address, OwnsCallback done) {
    auto m = ipc::Message::named(am::kProtocol, "owns");
    m.set_str("user", user).set_str("address", address);
    return request(std::move(m), "owns_result", [done = std::move(done)](const ipc::Message* m) {
        OwnsAnswer a;
        if (!m) return done(a);
        const std::string_view status = m->get_str("status").value_or("");
        if (status == "yes") a.kind = OwnsAnswer::Kind::Yes;
        if (status == "no") a.kind = OwnsAnswer::Kind::No;
        done(a);
    });
}

uint64_t AuthClient::check_relay(const std::string& ip, RelayCallback done) {
    auto m = ipc::Message::named(am::kProtocol, "relay_check");
    m.set_str("client_address", ip);
    return request(
        std::move(m), "relay_check_result", [done = std::move(done)](const ipc::Message* m) {
            if (!m) return done(false, 0);
            done(m->get_u64("allowed").value_or(0) == 1, m->get_u64("minutes_left").value_or(0));
        });
}

void AuthClient::cancel(uint64_t id) {
    pending_.erase(id);
}

void AuthClient::answer(uint64_t id, const ipc::Message* m) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // cancelled, or answered late after a timeout
    if (m && m->name() != it->second->answer) {
        log::warn("authd: a ", m->name(), " answers request ", id, "; ignored");
        m = nullptr;
    }
    Raw done = std::move(it->second->done);
    pending_.erase(it);
    done(m);
}

void AuthClient::timer_cb(evutil_socket_t, short, void* arg) noexcept {
    auto* p = static_cast<Pending*>(arg);
    AuthClient* self = p->owner;
    const uint64_t id = p->id;
    if (p->sent)
        log::warn("authd: no answer to request ", id, " within ", self->timeout_.count(), " ms");
    self->answer(id, nullptr);
}

void AuthClient::on_message(ipc::Message&& m) {
    const uint64_t id = m.get_u64("id").value_or(0);
    answer(id, &m);
}

void AuthClient::on_close(const ipc::IpcError& e) {
    log::warn("authd connection lost: ", e.text.empty() ? "closed" : e.text);
    // Destroying the Connection from its own on_close is allowed (channel.hpp).
    conn_.reset();
    // Everything in flight is lost: answer it now (we are in the loop).
    auto lost = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : lost) {
        Raw done = std::move(p->done);
        p.reset();
        done(nullptr);
    }
}

}  // namespace pbx::smtpserver
