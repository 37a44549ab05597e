// run_login_service(): the main() of every login process (pop3-login,
// imap-login). It fills the service skeleton (common/privsep/service.hpp)
// the way DESIGN §2 wants login processes: user pbx-login, chroot into the
// runtime directory (sockets only), RLIMIT_NPROC 0 (cannot fork), not
// dumpable, no capabilities; the TLS key is read before the drop. See
// engine.hpp for how a protocol plugs in.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/login/server.hpp"

namespace pbx::login {

struct LoginSpec {
    const char* name;                    // "pop3-login" (syslog ident; a string literal)
    std::string_view service;            // "pop3": authd's `login` service, the master's `start`
    std::string_view prefix;             // config keys <prefix>_max_connections, ...
    std::vector<std::string> listeners;  // inherited listener names: {"pop3", "pop3s"}
    // Said before closing a plaintext connection over the limits.
    std::string refusal;  // "-ERR [SYS/TEMP] too many connections\r\n"
    EngineFactory make_engine;
    // The session talks the proxy protocol and the login process answers
    // the lines it offers (reply_ahead.hpp; PBX_PROXY=frames): pop3 only,
    // unless <prefix>_reply_ahead (a key that must then exist) is off.
    bool reply_ahead = false;
};

int run_login_service(const LoginSpec& spec, int argc, char** argv);

}  // namespace pbx::login
