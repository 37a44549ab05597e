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
#include "smtpd/server.hpp"

int main(int argc, char** argv) {
    std::unique_ptr<pbx::smtpd::Server> server;
    pbx::ServiceSpec spec{
        .name = "smtpd",
        .user = "pbx-smtpd",
        .chroot = pbx::Chroot::RuntimeDir,
        .pre_drop = [&](pbx::ServiceContext& ctx) -> pbx::Status {
            auto s = pbx::smtpd::Server::prepare(ctx);
            if (!s) return pbx::Err{s.error()};
            server = std::move(s).value();
            return {};
        },
        .post_drop = [&](pbx::ServiceContext& ctx) { return server->start(ctx); },
        .on_stop = [&](pbx::ServiceContext&) { server->stop(); },
    };
    return pbx::run_service(spec, argc, argv);
}
