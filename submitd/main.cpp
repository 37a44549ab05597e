// submitd: the mail submission agent on ports 587 (STARTTLS) and 465
// (implicit TLS), RFC 6409 and RFC 8314 (DESIGN §1, §2). The same SMTP engine
// and glue as smtpd (common/smtpserver/), with the submission policy.
//
// SECURITY
//   Runs as pbx-submit, chrooted into the runtime directory (only sockets
//   there), no capabilities, no new privileges; started as root by
//   pillarbox-master only to read the TLS key before the drop.
//   Parses untrusted input: SMTP commands, SASL responses (strict base64,
//   bounded lines) and message text from any host that reaches the port,
//   TLS handshakes. Passwords are taken only under TLS (unless the test-only
//   key submission_auth_without_tls says otherwise) and go to authd, which
//   checks them and delays failures; submitd never sees a hash.
//   Talks to: authd (passwords, sender ownership, recipient lookups) and the
//   queue-manager (enqueue), by Unix socket paths relative to the chroot.
//   Writes no file; message bytes go to the queue-manager.
//   Relays for authenticated users only; never for an address, network or
//   POP-before-SMTP.
#include <memory>

#include "common/privsep/service.hpp"
#include "common/smtpserver/server.hpp"

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer's exit-time check needs /proc, which does not exist inside
// the runtime-directory chroot (see smtpd/main.cpp); the session code is
// leak-checked in-process by tests/unit/test_event_smtpd.cpp.
extern "C" int __lsan_is_turned_off() {
    return 1;
}
#endif

int main(int argc, char** argv) {
    std::unique_ptr<pbx::smtpserver::Server> server;
    pbx::ServiceSpec spec{
        .name = "submitd",
        .user = "pbx-submit",
        .chroot = pbx::Chroot::RuntimeDir,
        .pre_drop = [&](pbx::ServiceContext& ctx) -> pbx::Status {
            auto s = pbx::smtpserver::Server::prepare(ctx, pbx::smtpserver::Role::Submission);
            if (!s) return pbx::Err{s.error()};
            server = std::move(s).value();
            return {};
        },
        .post_drop = [&](pbx::ServiceContext& ctx) { return server->start(ctx); },
        .on_stop = [&](pbx::ServiceContext&) { server->stop(); },
    };
    return pbx::run_service(spec, argc, argv);
}
