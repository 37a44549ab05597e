// The login/session split, pre-login half: the interface between the shared
// login-process framework (common/login/server.hpp) and one protocol's
// pre-login state machine (pop3d/login_engine.hpp, imapd/...).
//
// HOW A PROTOCOL PLUGS IN (imap-login does exactly what pop3-login does):
//   1. Write a pure Engine (below): bytes in, Actions out. It never touches a
//      socket, authd or the master; it is table-tested whole and byte by byte.
//   2. main.cpp of the login program fills a login::LoginSpec
//      (common/login/service.hpp): program name, the service name authd and
//      the master know ("imap"), the config key prefix ("imap": keys
//      imap_max_connections, imap_max_connections_per_ip, imap_autologout
//      must exist in the schema), the inherited listener names ({"imap",
//      "imaps"}), a factory for the Engine, and calls
//      login::run_login_service(spec, argc, argv).
//   3. The framework then does the rest: runs as pbx-login chrooted in the
//      runtime directory, cannot fork, not dumpable; accepts with the limits;
//      implicit TLS or STARTTLS; sends Authenticate to authd (`login`, which
//      applies the failure delays and issues a ticket); hands the ticket and
//      a socketpair end to the master (session/session.sock); on success it
//      proxies bytes between the client (TLS or not) and the session until
//      either side closes.
//   4. The session program (imapd) follows common/session_interface.hpp: it
//      writes the protocol's success reply to the login command itself
//      (IMAP: the tagged OK, from PBX_LOGIN_TAG). The engine writes only
//      failure replies (auth_result Fail/TempFail).
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pbx::login {

// Bytes for the client.
struct Reply {
    std::string text;
};
// Switch this connection to TLS now (STARTTLS/STLS): the framework discards
// plaintext the client pipelined after the command, then calls tls_started().
struct StartTls {};
// Check these credentials with authd and, when they are good, start the
// session. `login_tag` goes to the session (PBX_LOGIN_TAG), IMAP only. The
// engine waits (consumes no input) until auth_result().
struct Authenticate {
    std::string user;
    std::string password;
    std::string login_tag;
};
// Write what is queued, then close.
struct Close {};
using Action = std::variant<Reply, StartTls, Authenticate, Close>;

enum class AuthOutcome {
    Fail,      // wrong credentials (or no such user: the client cannot tell)
    TempFail,  // authd or the master could not do it now
};

// What the engine knows about its connection when it is made.
struct ClientFacts {
    std::string client_ip;
    bool tls = false;                // implicit TLS (the handshake is done)
    bool starttls_offered = false;   // STARTTLS/STLS possible (plaintext, TLS configured)
    bool plaintext_allowed = false;  // passwords before TLS are accepted here
    std::string hostname;
};

class Engine {
  public:
    virtual ~Engine() = default;
    // The greeting (queued as a Reply).
    virtual void start() = 0;
    // Client bytes; returns how many were consumed. Consumes nothing while
    // waiting (an Authenticate or StartTls is outstanding) or after Close.
    virtual size_t feed(std::string_view bytes) = 0;
    virtual std::vector<Action> take_actions() = 0;
    virtual bool waiting() const = 0;
    virtual bool closed() const = 0;
    // After StartTls: the handshake succeeded.
    virtual void tls_started() = 0;
    // After Authenticate, when no session was started (on success the
    // framework hands the connection over and the engine is done).
    virtual void auth_result(AuthOutcome outcome) = 0;
    // The pre-login idle time ran out / the service is stopping: say so and Close.
    virtual void timed_out() = 0;
    virtual void shutting_down() = 0;
};

}  // namespace pbx::login
