// remote-delivery's service: serves remote/remote.sock (the queue-manager,
// delivery_msgs.hpp), maps each message read-only, splits its recipients by
// domain into jobs for the Engine, and answers one rcpt_result per
// recipient (and a log line per attempt) as the engine reports them.
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>

#include "common/event/tls.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/client_set.hpp"
#include "common/privsep/service.hpp"
#include "remote-delivery/engine.hpp"
#include "remote-delivery/resolver.hpp"

namespace pbx::remote {

// The engine's settings from pillarbox.conf (and the files it names, read
// now: call before the privilege drop).
Result<EngineConfig> engine_config(const config::Config& cfg);

class RemoteDelivery {
  public:
    RemoteDelivery();
    ~RemoteDelivery();
    RemoteDelivery(const RemoteDelivery&) = delete;
    RemoteDelivery& operator=(const RemoteDelivery&) = delete;

    Status pre_drop(ServiceContext& ctx);
    Status post_drop(ServiceContext& ctx);
    void on_stop(ServiceContext& ctx);

  private:
    using Client = ipc::ClientSet::Client;
    struct Request;

    void on_deliver(const std::shared_ptr<Client>& c, ipc::Message&& m);
    void answer(const std::shared_ptr<Request>& r, size_t index, const Outcome& o);
    void shutdown_soon();
    static void on_grace(evutil_socket_t, short, void* self) noexcept;

    event_base* base_ = nullptr;
    std::optional<ipc::PeerTable> peers_;
    UniqueFd listen_fd_;
    std::unique_ptr<ipc::Server> server_;
    std::optional<ipc::ClientSet> clients_;  // made in start(), with base_
    std::optional<event::TlsContext> tls_;
    std::optional<EngineConfig> config_;
    // Declared before the engine: destroyed after it.
    std::unique_ptr<UnboundResolver> resolver_;
    std::unique_ptr<Engine> engine_;
    EventPtr grace_;
    size_t max_recipients_ = 1000;
    bool shutting_down_ = false;
};

}  // namespace pbx::remote
