#include "authd/server.hpp"

#include "common/ipc/auth_msgs.hpp"
#include "common/log.hpp"

namespace pbx::authd {

Server::Server(event_base* base, Handler& handler, Limits limits)
    : base_(base), handler_(handler), limits_(limits) {}

Server::~Server() = default;

Status Server::listen(const std::string& path, ipc::PeerTable peers) {
    auto fd = ipc::listen_unix(path, 0666);
    if (!fd) return Err{fd.error()};
    listener_ = std::make_unique<ipc::Server>(
        base_, std::move(fd).value(), ipc::Channel::Auth, std::move(peers),
        [this](UniqueFd client, const ipc::PeerInfo& who) { accept(std::move(client), who); });
    log::info("listening on ", path);
    return {};
}

void Server::accept(UniqueFd fd, const ipc::PeerInfo& peer) {
    if (clients_.size() >= limits_.max_clients) {
        log::warn("refusing a connection from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  "): ", limits_.max_clients, " clients already");
        return;  // fd closes here
    }
    clients_.emplace_back();
    auto it = std::prev(clients_.end());
    Client& c = *it;
    c.self = it;
    c.peer = peer;
    ipc::Connection::Limits cl;
    cl.max_output = limits_.max_output;
    c.conn = std::make_unique<ipc::Connection>(
        base_, std::move(fd), ipc::auth::kProtocol,
        [this, &c](ipc::Message&& m) { on_message(c, std::move(m)); },
        [this, &c](const ipc::IpcError& e) {
            if (e.code != ipc::IpcErrc::Eof && e.code != ipc::IpcErrc::Done)
                log::warn("client ", ipc::to_string(c.peer.program), " (uid ", c.peer.uid, ", pid ",
                          c.peer.pid, "): ", e.text);
            clients_.erase(c.self);
        },
        cl);
    log::debug("client ", ipc::to_string(peer.program), " (uid ", peer.uid, ", pid ", peer.pid,
               ") connected");
}

void Server::on_message(Client& c, ipc::Message&& m) {
    auto reply = handler_.handle(m, c.peer, auth::Clock::now());
    if (!reply) {
        log::warn("client ", ipc::to_string(c.peer.program), " (uid ", c.peer.uid, ") sent a '",
                  m.name(), "', which is not a request; closing");
        clients_.erase(c.self);  // destroys the Connection: allowed from its callback
        return;
    }
    if (reply->delay.count() <= 0) return send(c, std::move(reply->message));
    if (c.pending.size() >= limits_.max_pending) {
        // Never answer early: a failure must not arrive sooner because the
        // caller has many requests in flight.
        log::warn("client ", ipc::to_string(c.peer.program), " (uid ", c.peer.uid,
                  "): too many delayed answers; answering tempfail");
        if (auto t = Handler::tempfail_for(m)) send(c, std::move(*t));
        return;
    }
    c.pending.push_back(Delayed{this, &c, {}, std::move(reply->message), nullptr});
    auto it = std::prev(c.pending.end());
    it->self = it;
    it->timer.reset(evtimer_new(base_, on_timer, &*it));
    auto ms = reply->delay.count();
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    if (!it->timer || evtimer_add(it->timer.get(), &tv) != 0) {
        log::error("cannot arm a reply timer; answering tempfail");
        c.pending.erase(it);
        if (auto t = Handler::tempfail_for(m)) send(c, std::move(*t));
    }
}

void Server::on_timer(evutil_socket_t, short, void* arg) noexcept {
    auto* d = static_cast<Delayed*>(arg);
    Server* server = d->server;
    Client& c = *d->client;
    ipc::Message reply = std::move(d->reply);
    c.pending.erase(d->self);  // frees this timer: allowed for a fired one-shot event
    server->send(c, std::move(reply));
}

void Server::send(Client& c, ipc::Message&& reply) {
    if (auto s = c.conn->send(std::move(reply)); !s)
        log::error("cannot encode a reply: ", s.error().message);
}

}  // namespace pbx::authd
