// pillarbox-master: the supervisor (DESIGN §1, §2).
//
// SECURITY: the only long-lived process with full root privileges. It parses
// nothing from the network: its inputs are the configuration file (root's),
// signals, and requests on the control socket (root for changes; any local
// user for status, identified by SO_PEERCRED) and on the session socket
// (login processes only: an authd ticket and a socketpair end; the ticket is
// redeemed with authd, which alone says whose session it is). It binds the listeners, creates
// the runtime directory and starts each program, which drops its own
// privileges; it never runs protocol code itself. For each redeemed ticket it
// forks a session (pop3d, imapd) that drops to the mail user before exec.
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "common/c_ptr.hpp"
#include "common/config/config.hpp"
#include "common/log.hpp"
#include "master/control.hpp"
#include "master/runtime.hpp"
#include "master/sessions.hpp"
#include "master/supervisor.hpp"

namespace {

void on_signal(evutil_socket_t sig, short, void* arg) noexcept {
    auto* sup = static_cast<pbx::master::Supervisor*>(arg);
    if (sig == SIGCHLD)
        sup->reap();
    else if (sig == SIGHUP)
        sup->reload();
    else
        sup->stop();
}

}  // namespace

int main(int argc, char** argv) {
    pbx::master::Options opts;
    opts.config_path = std::string(pbx::config::kDefaultPath);
    int opt;
    while ((opt = getopt(argc, argv, "c:fd")) != -1) {
        switch (opt) {
            case 'c':
                opts.config_path = optarg;
                break;
            case 'f':
                opts.foreground = true;
                break;
            case 'd':
                opts.debug = true;
                break;
            default:
                std::fprintf(stderr, "usage: pillarbox-master [-c CONFIG] [-f] [-d]\n");
                return 2;
        }
    }
    pbx::log::init("pillarbox-master", opts.foreground);
    pbx::log::set_debug(opts.debug);
    if (geteuid() != 0) {
        pbx::log::error(
            "pillarbox-master must run as root: it binds ports and starts each "
            "program under its own user");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    pbx::EventBasePtr base(event_base_new());
    if (!base) return 1;
    pbx::master::Supervisor sup(base.get(), opts);
    pbx::EventPtr signals[] = {
        pbx::EventPtr(evsignal_new(base.get(), SIGCHLD, on_signal, &sup)),
        pbx::EventPtr(evsignal_new(base.get(), SIGHUP, on_signal, &sup)),
        pbx::EventPtr(evsignal_new(base.get(), SIGTERM, on_signal, &sup)),
        pbx::EventPtr(evsignal_new(base.get(), SIGINT, on_signal, &sup)),
    };
    for (auto& ev : signals) event_add(ev.get(), nullptr);

    if (auto s = sup.start(); !s) {
        pbx::log::error(s.error().message);
        return 1;
    }
    auto control = pbx::master::start_control(base.get(), sup, sup.runtime_dir());
    if (!control) {
        pbx::log::error("control socket: ", control.error().message);
        sup.stop();
    }
    // The login/session split: login processes hand logged-in clients over here.
    auto sessions = pbx::master::start_sessions(base.get(), sup, sup.runtime_dir());
    if (!sessions) {
        pbx::log::error("session socket: ", sessions.error().message);
        sup.stop();
    }
    pbx::master::sd_notify("READY=1");
    pbx::log::info("started");
    event_base_dispatch(base.get());
    return 0;
}
