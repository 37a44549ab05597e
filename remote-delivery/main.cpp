// remote-delivery: the outbound MTA (DESIGN.md §2, §5; remote-delivery(8)).
//
// TRUST: runs as pbx-remote, chrooted into the runtime directory (nothing
// but sockets there), no capabilities, NO_NEW_PRIVS. Before the drop it
// reads, as root, the CA bundle, /etc/resolv.conf, the TLS policy table and
// the smart host's credentials (a root-only file); after it, nothing on disk.
// Input: deliver requests from the queue-manager (peer table: nobody else
// but root may connect), DNS answers, and whatever remote SMTP servers send:
// the least trusted input of all, parsed only by the client state machine
// (common/smtp/client.hpp) with limits on every reply.
#include "common/privsep/service.hpp"
#include "remote-delivery/remote_delivery.hpp"

int main(int argc, char** argv) {
    pbx::remote::RemoteDelivery app;
    pbx::ServiceSpec spec{
        .name = "remote-delivery",
        .user = "pbx-remote",
        .chroot = pbx::Chroot::RuntimeDir,
        .pre_drop = [&](pbx::ServiceContext& ctx) { return app.pre_drop(ctx); },
        .post_drop = [&](pbx::ServiceContext& ctx) { return app.post_drop(ctx); },
        .on_stop = [&](pbx::ServiceContext& ctx) { app.on_stop(ctx); },
    };
    return pbx::run_service(spec, argc, argv);
}
