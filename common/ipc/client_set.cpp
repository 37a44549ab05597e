#include "common/ipc/client_set.hpp"

#include "common/log.hpp"

namespace pbx::ipc {

void ClientSet::accept(UniqueFd fd, const PeerInfo& peer) {
    if (clients_.size() >= max_) {
        log::warn("refusing a connection from ", to_string(peer.program), " (uid ", peer.uid,
                  "): too many clients");
        return;
    }
    auto c = std::make_shared<Client>();
    c->peer = peer;
    clients_.push_front(c);
    c->self = clients_.begin();
    Client* raw = c.get();
    c->conn = std::make_unique<Connection>(
        base_, std::move(fd), protocol_,
        [this, raw](Message&& m) { on_message_(*raw->self, std::move(m)); },
        [this, raw](const IpcError& e) {
            if (e.code != IpcErrc::Eof && e.code != IpcErrc::Done)
                log::warn("client ", to_string(raw->peer.program), " (uid ", raw->peer.uid,
                          "): ", e.text);
            clients_.erase(raw->self);  // destroys the Connection: allowed here
        });
}

}  // namespace pbx::ipc
