// local-delivery: the MDA (DESIGN.md §2, §5; local-delivery(8)).
//
// TRUST: the parent stays uid 0 but holds only CAP_SETUID and CAP_SETGID
// (no CAP_DAC_OVERRIDE, no CAP_CHOWN, NO_NEW_PRIVS): it can become a user,
// not read or write their files. Each mailbox write runs in a child that
// drops to the recipient's uid/gid with no capabilities at all; uid 0 is
// never a target. Input: deliver requests from the queue-manager (peer
// table: nobody else but root may connect) and resolve answers from authd;
// the message bytes themselves are only ever handled by the child.
#include "common/privsep/service.hpp"
#include "local-delivery/local_delivery.hpp"

int main(int argc, char** argv) {
    pbx::local::LocalDelivery app;
    pbx::ServiceSpec spec{
        .name = "local-delivery",
        .user = "",
        .chroot = pbx::Chroot::None,  // children write anywhere a mailbox may be
        .keep_caps = pbx::privsep::KeepCaps::SetuidSetgid,
        .allow_root = true,
        .pre_drop = [&](pbx::ServiceContext& ctx) { return app.pre_drop(ctx); },
        .post_drop = [&](pbx::ServiceContext& ctx) { return app.post_drop(ctx); },
        .on_stop = [&](pbx::ServiceContext& ctx) { app.on_stop(ctx); },
    };
    return pbx::run_service(spec, argc, argv);
}
