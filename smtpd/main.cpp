// smtpd: the inbound MTA on port 25 (DESIGN §1, §2).
//
// SECURITY
//   Runs as pbx-smtpd, chrooted into the runtime directory (only sockets
//   there), no capabilities, no new privileges; started as root by
//   pillarbox-master only to read the TLS key before the drop.
//   Parses untrusted input: SMTP commands and message text from any host on
//   the Internet (through smtp::Engine, with named limits), TLS handshakes.
//   Talks to: authd (recipient lookups) and the queue-manager (enqueue), both
//   by Unix socket paths relative to the chroot. Writes no file anywhere;
//   message bytes go to the queue-manager, which alone writes the spool.
//   Relays only for clients in trusted_networks; never offers AUTH.
#include <memory>

#include "common/privsep/service.hpp"
#include "common/smtpserver/server.hpp"

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer's exit-time check needs /proc, which does not exist inside
// the runtime-directory chroot; it would fail with a fatal error and turn a
// clean stop into exit status 1. The session code is leak-checked in-process
// by tests/unit/test_event_smtpd.cpp instead.
extern "C" int __lsan_is_turned_off() {
    return 1;
}
#endif

int main(int argc, char** argv) {
    std::unique_ptr<pbx::smtpserver::Server> server;
    pbx::ServiceSpec spec{
        .name = "smtpd",
        .user = "pbx-smtpd",
        .chroot = pbx::Chroot::RuntimeDir,
        .pre_drop = [&](pbx::ServiceContext& ctx) -> pbx::Status {
            auto s = pbx::smtpserver::Server::prepare(ctx);
            if (!s) return pbx::Err{s.error()};
            server = std::move(s).value();
            return {};
        },
        .post_drop = [&](pbx::ServiceContext& ctx) { return server->start(ctx); },
        .on_stop = [&](pbx::ServiceContext&) { server->stop(); },
    };
    return pbx::run_service(spec, argc, argv);
}
