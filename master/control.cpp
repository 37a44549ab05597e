#include "master/control.hpp"

#include <list>

#include "common/ipc/channel.hpp"
#include "common/ipc/control_msgs.hpp"
#include "common/log.hpp"

namespace pbx::master {
namespace ctl = ipc::control;

class ControlServer {
  public:
    ControlServer(event_base* base, Supervisor& sup) : base_(base), sup_(sup) {}

    Status listen(const std::string& runtime_dir, ipc::PeerTable peers) {
        auto path = ipc::socket_path(runtime_dir, ipc::Channel::Control);
        auto fd = ipc::listen_unix(path, 0666);
        if (!fd) return Err{fd.error()};
        server_ = std::make_unique<ipc::Server>(
            base_, std::move(fd).value(), ipc::Channel::Control, std::move(peers),
            [this](UniqueFd client, const ipc::PeerInfo& who) { accept(std::move(client), who); });
        return {};
    }

  private:
    struct Client {
        std::unique_ptr<ipc::Connection> conn;
        ipc::Access access;
        uid_t uid;
    };

    void accept(UniqueFd fd, const ipc::PeerInfo& who) {
        clients_.push_back(Client{nullptr, who.access, who.uid});
        auto it = std::prev(clients_.end());
        it->conn = std::make_unique<ipc::Connection>(
            base_, std::move(fd), ctl::kProtocol, [this, it](ipc::Message&& m) { handle(*it, m); },
            [this, it](const ipc::IpcError&) { clients_.erase(it); });
    }

    void reply(Client& c, bool ok, const std::string& text) {
        ipc::Message r(ctl::kProtocol, 2);
        r.set_u64("ok", ok ? 1 : 0).set_str("text", text);
        if (!c.conn->send(std::move(r))) log::warn("control: cannot encode reply");
        c.conn->close_when_flushed();
    }

    void handle(Client& c, const ipc::Message& m) {
        if (m.name() != "request") return reply(c, false, "expected a request");
        std::string_view cmd = *m.get_str("command");
        bool json = m.get_u64("json").value_or(0) == 1;
        if (cmd == "status") return reply(c, true, json ? sup_.status_json() : sup_.status_text());
        if (cmd != "stop" && cmd != "reload")
            return reply(c, false, "unknown command '" + std::string(cmd) + "'");
        if (c.access != ipc::Access::Full) {
            log::warn("control: uid ", c.uid, " may not ", cmd);
            return reply(c, false, std::string(cmd) + ": permission denied (root only)");
        }
        log::info("control: ", cmd, " requested by uid ", c.uid);
        if (cmd == "reload") {
            std::string err = sup_.reload();
            return reply(c, err.empty(), err.empty() ? "reloaded" : "reload refused: " + err);
        }
        reply(c, true, "stopping");
        sup_.stop();
    }

    event_base* base_;
    Supervisor& sup_;
    std::unique_ptr<ipc::Server> server_;
    std::list<Client> clients_;
};

Result<std::shared_ptr<ControlServer>> start_control(event_base* base, Supervisor& sup,
                                                     const std::string& runtime_dir) {
    auto peers = ipc::PeerTable::from_system();
    if (!peers) return Err{peers.error()};
    auto server = std::make_shared<ControlServer>(base, sup);
    if (auto s = server->listen(runtime_dir, std::move(peers).value()); !s) return Err{s.error()};
    return server;
}

}  // namespace pbx::master
