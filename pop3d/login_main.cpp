// pop3-login: the pre-login half of the POP3 service (DESIGN §2; pop3-login(8)).
//
// SECURITY
//   Runs as pbx-login, chrooted into the runtime directory (sockets only),
//   no capabilities, NO_NEW_PRIVS, RLIMIT_NPROC 0 (cannot fork), not
//   dumpable; started as root by pillarbox-master only to read the TLS key.
//   Parses untrusted input from any client: POP3 commands before login
//   (pop3::LoginEngine: CAPA, USER, PASS, AUTH, STLS, QUIT, with line and
//   bad-command limits) and TLS handshakes. Passwords go to authd, which
//   applies the failure delays; a ticket and one end of a socketpair go to
//   the master. After login it only copies bytes between the client and the
//   pop3d session, which runs as the mail user. It reads and writes no file.
#include "common/login/service.hpp"
#include "pop3d/login_engine.hpp"

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer needs /proc, which the runtime-directory chroot lacks (as smtpd).
extern "C" int __lsan_is_turned_off() {
    return 1;
}
#endif

int main(int argc, char** argv) {
    pbx::login::LoginSpec spec{
        .name = "pop3-login",
        .service = "pop3",
        .prefix = "pop3",
        .listeners = {"pop3", "pop3s"},
        .refusal = "-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
        .make_engine =
            [](const pbx::config::Config& cfg, const pbx::login::ClientFacts& facts) {
                pbx::pop3::LoginLimits limits;
                limits.max_bad_commands = static_cast<int>(cfg.integer("pop3_max_bad_commands"));
                return pbx::pop3::make_login_engine(facts, limits);
            },
        .reply_ahead = true,
    };
    return pbx::login::run_login_service(spec, argc, argv);
}
