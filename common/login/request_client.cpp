#include "common/login/request_client.hpp"

#include "common/log.hpp"

namespace pbx::login {

RequestClient::RequestClient(event_base* base, std::string socket_path,
                             const ipc::Protocol& protocol, std::string_view answer_name,
                             std::chrono::milliseconds timeout)
    : base_(base),
      path_(std::move(socket_path)),
      protocol_(&protocol),
      answer_name_(answer_name),
      timeout_(timeout) {}

RequestClient::~RequestClient() = default;

bool RequestClient::ensure_connected() {
    if (conn_ && conn_->is_open()) return true;
    conn_.reset();
    auto fd = ipc::connect_unix(path_);
    if (!fd) {
        if (!warned_) log::warn(protocol_->name, " channel not reachable: ", fd.error().message);
        warned_ = true;
        return false;
    }
    conn_ = std::make_unique<ipc::Connection>(
        base_, std::move(fd).value(), *protocol_,
        [this](ipc::Message&& m) { on_message(std::move(m)); },
        [this](const ipc::IpcError& e) { on_close(e); });
    if (warned_) log::info(protocol_->name, " channel reachable again");
    warned_ = false;
    return true;
}

uint64_t RequestClient::request(ipc::Message&& m, Callback done) {
    const uint64_t id = next_id_++;
    auto p = std::make_unique<Pending>();
    p->owner = this;
    p->id = id;
    p->done = std::move(done);
    p->timer.reset(evtimer_new(base_, timer_cb, p.get()));
    m.set_u64("id", id);
    if (ensure_connected()) {
        if (auto s = conn_->send(std::move(m)); s)
            p->sent = true;
        else
            log::warn(protocol_->name, " channel: cannot send: ", s.error().message);
    }
    const auto wait = p->sent ? timeout_ : std::chrono::milliseconds(0);
    timeval tv{static_cast<time_t>(wait.count() / 1000),
               static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
    event_add(p->timer.get(), &tv);
    pending_.emplace(id, std::move(p));
    return id;
}

void RequestClient::cancel(uint64_t id) {
    pending_.erase(id);
}

void RequestClient::answer(uint64_t id, std::optional<ipc::Message> m) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Callback done = std::move(it->second->done);
    pending_.erase(it);
    done(std::move(m));
}

void RequestClient::timer_cb(evutil_socket_t, short, void* arg) noexcept {
    auto* p = static_cast<Pending*>(arg);
    RequestClient* self = p->owner;
    if (p->sent)
        log::warn(self->protocol_->name, " channel: no answer to request ", p->id, " within ",
                  self->timeout_.count(), " ms");
    self->answer(p->id, std::nullopt);
}

void RequestClient::on_message(ipc::Message&& m) {
    if (m.name() != answer_name_) {
        log::warn(protocol_->name, " channel: unexpected ", m.name(), " message; ignored");
        return;
    }
    const uint64_t id = m.get_u64("id").value_or(0);
    answer(id, std::move(m));
}

void RequestClient::on_close(const ipc::IpcError& e) {
    log::warn(protocol_->name, " channel lost: ", e.text.empty() ? "closed" : e.text);
    conn_.reset();
    auto lost = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : lost) {
        Callback done = std::move(p->done);
        p.reset();
        done(std::nullopt);
    }
}

}  // namespace pbx::login
