// authd: users, aliases and credentials (DESIGN.md §2).
//
// TRUST: runs as pbx-auth with the supplementary group shadow, no chroot, no
// capabilities, NO_NEW_PRIVS. Reads the users file, the aliases file and (with
// system_users = yes) the passwd and shadow databases; writes nothing. Serves
// auth/auth.sock to smtpd, submitd, the login processes, queue-manager,
// local-delivery and the master (peer table, SO_PEERCRED). Its untrusted input
// is what those programs relay from network clients: addresses, user names
// and passwords, inside strictly decoded IPC frames. A compromise exposes the
// password hashes it can read; it cannot write mail or reach the network.
#include "authd/authd.hpp"
#include "common/privsep/service.hpp"

int main(int argc, char** argv) {
    pbx::authd::Authd app;
    pbx::ServiceSpec spec{
        .name = "authd",
        .user = "pbx-auth",
        .chroot = pbx::Chroot::None,  // it reads the users and aliases files
        .supplementary_groups = {"shadow"},
        .pre_drop = [&](pbx::ServiceContext& ctx) { return app.pre_drop(ctx); },
        .post_drop = [&](pbx::ServiceContext& ctx) { return app.post_drop(ctx); },
    };
    return pbx::run_service(spec, argc, argv);
}
