// pillarbox(8): the administration tool.
//
// SECURITY: runs as the invoking user with no privileges of its own. It talks
// to the master over control/control.sock, where SO_PEERCRED decides what the
// caller may do (status: anyone; stop/reload: root). `config check/show`
// only read the configuration file the caller names.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/control_msgs.hpp"
#include "tools/commands.hpp"

namespace {

constexpr const char* kUsage =
    "usage: pillarbox [-c CONFIG] COMMAND ...\n"
    "  status [--json]          programs, pids, uids, uptime, restarts\n"
    "  reload                   re-read the configuration (as SIGHUP does)\n"
    "  stop                     stop the master and every program\n"
    "  config check             check the configuration file, naming file:line\n"
    "  config show [--all]      print the settings the file sets (--all: every key)\n"
    "  queue list [--json]      the queue, as mailq(1) prints it\n"
    "  queue show|hold|release|delete ID [--json]\n"
    "  queue flush              retry every deferred message now\n"
    "  user add NAME [...]      add a virtual user (password from the terminal or --stdin)\n"
    "  user passwd NAME         change a virtual user's password\n"
    "  user del NAME            remove a virtual user (the mailbox is kept)\n"
    "  user list [--json]       the virtual users (never their hashes)\n";

int usage() {
    std::fputs(kUsage, stderr);
    return 2;
}

int control(const std::string& config_path, std::string_view command, bool json) {
    auto cfg = pbx::config::Config::load(config_path);
    if (!cfg) {
        std::fprintf(stderr, "pillarbox: %s\n", cfg.error().to_string().c_str());
        return 1;
    }
    namespace ipc = pbx::ipc;
    auto path = ipc::socket_path(cfg->str("runtime_dir"), ipc::Channel::Control);
    auto fd = ipc::connect_unix(path);
    if (!fd) {
        std::fprintf(stderr, "pillarbox: cannot reach the master at %s: %s\n", path.c_str(),
                     fd.error().message.c_str());
        return 1;
    }
    using namespace std::chrono_literals;
    if (auto h = ipc::handshake(fd->get(), ipc::control::kProtocol, 10s); !h) {
        std::fprintf(stderr, "pillarbox: %s\n", h.error().text.c_str());
        return 1;
    }
    ipc::Message req(ipc::control::kProtocol, 1);
    req.set_str("command", command);
    if (json) req.set_u64("json", 1);
    if (auto s = ipc::send_frame(fd->get(), req, 10s); !s) {
        std::fprintf(stderr, "pillarbox: %s\n", s.error().text.c_str());
        return 1;
    }
    auto reply = ipc::recv_frame(fd->get(), ipc::control::kProtocol, 30s);
    if (!reply) {
        std::fprintf(stderr, "pillarbox: no reply from the master: %s\n",
                     reply.error().text.c_str());
        return 1;
    }
    bool ok = reply->get_u64("ok").value_or(0) == 1;
    std::string text(reply->get_str("text").value_or(""));
    if (!text.empty() && text.back() != '\n') text += '\n';
    std::fputs(text.c_str(), ok ? stdout : stderr);
    return ok ? 0 : 1;
}

int config_command(const std::string& config_path, const std::vector<std::string_view>& args) {
    if (args.empty()) return usage();
    auto cfg = pbx::config::Config::load(config_path);
    if (args[0] == "check") {
        if (args.size() != 1) return usage();
        if (!cfg) {
            std::fprintf(stderr, "%s\n", cfg.error().to_string().c_str());
            return 1;
        }
        std::printf("%s: ok\n", config_path.c_str());
        return 0;
    }
    if (args[0] == "show") {
        bool all = args.size() == 2 && args[1] == "--all";
        if (args.size() > 2 || (args.size() == 2 && !all)) return usage();
        if (!cfg) {
            std::fprintf(stderr, "%s\n", cfg.error().to_string().c_str());
            return 1;
        }
        std::fputs(cfg->show(all).c_str(), stdout);
        return 0;
    }
    return usage();
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path(pbx::config::kDefaultPath);
    if (const char* env = std::getenv("PBX_CONFIG"); env && *env) config_path = env;
    std::vector<std::string_view> args;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-c" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        } else {
            args.push_back(a);
        }
    }
    if (args.empty()) return usage();
    std::string_view cmd = args[0];
    std::vector<std::string_view> rest(args.begin() + 1, args.end());
    if (cmd == "status") {
        bool json = rest.size() == 1 && rest[0] == "--json";
        if (!rest.empty() && !json) return usage();
        return control(config_path, "status", json);
    }
    if (cmd == "reload" || cmd == "stop") {
        if (!rest.empty()) return usage();
        return control(config_path, cmd, false);
    }
    if (cmd == "config") return config_command(config_path, rest);
    return pbx::tools::dispatch(config_path, cmd, rest);
}
