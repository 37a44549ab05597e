// pillarbox queue: a thin client of the queue-manager's admin messages.
//
// SECURITY: runs as the invoking user with no privileges; the queue-manager
// checks the caller's uid (SO_PEERCRED) for every request.
#include "tools/queue_cmd.hpp"

#include <chrono>
#include <cstdio>
#include <optional>

#include "common/config/config.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/queue_msgs.hpp"

namespace pbx::tools {
namespace {

namespace qp = ipc::queue;
using namespace std::chrono_literals;

constexpr const char* kQueueUsage =
    "usage: pillarbox queue list [--json]        the queue, mailq style (anyone)\n"
    "       pillarbox queue show ID... [--json]  envelope and recipient states (root)\n"
    "       pillarbox queue hold ID...           keep from delivery (root)\n"
    "       pillarbox queue release ID...        undo hold, deliver now (root)\n"
    "       pillarbox queue delete ID...         remove from the queue (root)\n"
    "       pillarbox queue flush [ID...]        retry deferred mail now (root)\n";

int usage() {
    std::fputs(kQueueUsage, stderr);
    return 2;
}

class AdminClient {
  public:
    static std::optional<AdminClient> connect(const std::string& config_path) {
        auto cfg = config::Config::load(config_path);
        if (!cfg) {
            std::fprintf(stderr, "pillarbox: %s\n", cfg.error().to_string().c_str());
            return std::nullopt;
        }
        std::string path = ipc::socket_path(cfg->str("runtime_dir"), ipc::Channel::Enqueue);
        auto fd = ipc::connect_unix(path);
        if (!fd) {
            std::fprintf(stderr, "pillarbox: cannot reach the queue-manager at %s: %s\n",
                         path.c_str(), fd.error().message.c_str());
            return std::nullopt;
        }
        if (auto h = ipc::handshake(fd->get(), qp::kProtocol, 10s); !h) {
            std::fprintf(stderr, "pillarbox: %s\n", h.error().text.c_str());
            return std::nullopt;
        }
        return AdminClient(std::move(fd).value());
    }

    // Sends one request and prints its reply; true when it succeeded.
    bool request(std::string_view op, std::optional<std::string_view> id, bool json) {
        ipc::Message m = ipc::Message::named(qp::kProtocol, "admin");
        m.set_str("op", op);
        if (id) m.set_str("id", *id);
        if (json) m.set_u64("json", 1);
        if (auto s = ipc::send_frame(fd_.get(), m, 10s); !s) {
            std::fprintf(stderr, "pillarbox: %s\n", s.error().text.c_str());
            return false;
        }
        auto reply = ipc::recv_frame(fd_.get(), qp::kProtocol, 60s);
        if (!reply) {
            std::fprintf(stderr, "pillarbox: no reply from the queue-manager: %s\n",
                         reply.error().text.c_str());
            return false;
        }
        if (reply->name() != "admin_reply") {
            std::fprintf(stderr, "pillarbox: unexpected reply '%.*s'\n",
                         static_cast<int>(reply->name().size()), reply->name().data());
            return false;
        }
        bool ok = reply->get_u64("ok").value_or(0) == 1;
        std::string text(reply->get_str("text").value_or(""));
        if (!ok) {
            if (!text.empty() && text.back() != '\n') text += '\n';
            std::fprintf(stderr, "pillarbox: %s", text.c_str());
            return false;
        }
        std::fputs(text.c_str(), stdout);
        return true;
    }

  private:
    explicit AdminClient(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace

int queue_command(const std::string& config_path, const std::vector<std::string_view>& args) {
    if (args.empty()) return usage();
    std::string_view op = args[0];
    bool json = false;
    std::vector<std::string_view> ids;
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--json")
            json = true;
        else if (!args[i].empty() && args[i][0] == '-')
            return usage();
        else
            ids.push_back(args[i]);
    }
    bool takes_ids = op == "show" || op == "hold" || op == "release" || op == "delete";
    if (op == "list") {
        if (!ids.empty()) return usage();
    } else if (takes_ids) {
        if (ids.empty()) return usage();
    } else if (op != "flush") {
        return usage();
    }
    if (json && op != "list" && op != "show") return usage();

    auto client = AdminClient::connect(config_path);
    if (!client) return 1;
    if (ids.empty()) return client->request(op, std::nullopt, json) ? 0 : 1;
    bool all_ok = true;
    for (std::string_view id : ids) all_ok = client->request(op, id, json) && all_ok;
    return all_ok ? 0 : 1;
}

}  // namespace pbx::tools
