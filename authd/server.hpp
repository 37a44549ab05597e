// authd's side of auth/auth.sock: accepts the clients the peer table allows,
// reads requests, and sends each reply when the Handler says (failure delays
// run on libevent timers, so one client's penalty never holds up another's
// answers).
#pragma once

#include <event2/event.h>

#include <list>
#include <memory>
#include <string>

#include "authd/handler.hpp"
#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"
#include "common/result.hpp"

namespace pbx::authd {

class Server {
  public:
    struct Limits {
        size_t max_clients = 512;         // connections at once
        size_t max_pending = 1024;        // delayed replies held per connection
        size_t max_output = 1024 * 1024;  // unsent reply bytes per connection
    };

    Server(event_base* base, Handler& handler, Limits limits);
    Server(event_base* base, Handler& handler) : Server(base, handler, Limits{}) {}
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Listens on `path` (mode 0666: who may talk is the peer table's call).
    Status listen(const std::string& path, ipc::PeerTable peers);

    size_t clients() const { return clients_.size(); }

  private:
    struct Client;
    struct Delayed {
        Server* server;
        Client* client;
        std::list<Delayed>::iterator self;
        ipc::Message reply;
        EventPtr timer;
    };
    struct Client {
        std::unique_ptr<ipc::Connection> conn;
        ipc::PeerInfo peer;
        std::list<Delayed> pending;  // destroyed (timers freed) with the client
        std::list<Client>::iterator self;
    };

    void accept(UniqueFd fd, const ipc::PeerInfo& peer);
    void on_message(Client& c, ipc::Message&& m);
    void send(Client& c, ipc::Message&& reply);
    static void on_timer(evutil_socket_t, short, void* arg) noexcept;

    event_base* base_;
    Handler& handler_;
    Limits limits_;
    std::unique_ptr<ipc::Server> listener_;
    std::list<Client> clients_;
};

}  // namespace pbx::authd
