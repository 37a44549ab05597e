// The clients of an internal server (a delivery agent's queue-manager
// connections): each accepted socket becomes an ipc::Connection held with
// its peer until it closes, at most `max_clients` at once. Requests keep a
// std::weak_ptr<Client> so that an answer to a client that went away is
// dropped, not sent to a dead connection.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>

#include "common/ipc/channel.hpp"

namespace pbx::ipc {

class ClientSet {
  public:
    struct Client {
        PeerInfo peer;
        std::unique_ptr<Connection> conn;
        std::list<std::shared_ptr<Client>>::iterator self;
    };
    using OnMessage = std::function<void(const std::shared_ptr<Client>&, Message&&)>;

    ClientSet(event_base* base, const Protocol& protocol, size_t max_clients, OnMessage on_message)
        : base_(base), protocol_(protocol), max_(max_clients), on_message_(std::move(on_message)) {}

    // Takes the connection, or refuses it (closed, logged) above the limit.
    void accept(UniqueFd fd, const PeerInfo& peer);
    // Closes one client (a protocol error on its side).
    void drop(const std::shared_ptr<Client>& c) { clients_.erase(c->self); }
    void clear() { clients_.clear(); }
    size_t size() const { return clients_.size(); }

  private:
    event_base* base_;
    const Protocol& protocol_;
    size_t max_;
    OnMessage on_message_;
    std::list<std::shared_ptr<Client>> clients_;
};

}  // namespace pbx::ipc
