// The session channel (session/session.sock, server: pillarbox-master,
// clients: the login processes). The second step of the login/session split
// (common/session_interface.hpp has the whole picture):
//
//   start{id, ticket, service, client_address, tls, login_tag?, session_id, proxy?, client}
//                               → start_result{id, status, reason?, user?, pid?}
//
// A login process sends the ticket authd issued and `client`, its end of a
// fresh socketpair (SCM_RIGHTS); it keeps the other end and proxies the
// client's bytes through it. The master redeems the ticket with authd (which
// says whose it is), checks that the ticket was issued for this service, forks,
// drops to the user (privsep::drop: no capabilities, NoNewPrivs, never uid 0)
// and execs the session program with the socketpair end on fds 0 and 1. It
// answers ok once the session process exists (the session itself writes the
// protocol's success reply), fail when the ticket is not valid (the login
// process answers its client like a wrong password), tempfail when authd or
// fork failed. `service` is the login service: "pop3" (session program
// pop3d) or "imap" (imapd). `tls` is "" or "TLSv1.3 <cipher>"; login_tag is
// IMAP's tag of the LOGIN/AUTHENTICATE command. `proxy` is "" (raw bytes
// both ways) or "frames" (pop3: the session talks the proxy protocol,
// common/ipc/proxy_msgs.hpp); it reaches the session as PBX_PROXY, and any
// other value is refused (fail). Sessions are not restarted:
// the master reaps and logs them.
#pragma once

#include "common/ipc/frame.hpp"

namespace pbx::ipc::session {

inline constexpr FieldSpec kStartFields[] = {
    {"id", Kind::U64, kRequired},
    {"ticket", Kind::Str, kRequired},
    {"service", Kind::Str, kRequired},  // pop3 | imap
    {"client_address", Kind::Str, kOptional},
    {"tls", Kind::Str, kOptional},
    {"login_tag", Kind::Str, kOptional},
    {"session_id", Kind::Str, kOptional},
    {"client", Kind::Fd, kRequired},
    {"proxy", Kind::Str, kOptional},
};
inline constexpr FieldSpec kStartResultFields[] = {
    {"id", Kind::U64, kRequired},     {"status", Kind::Str, kRequired},  // ok | fail | tempfail
    {"reason", Kind::Str, kOptional},                                 // for the login process's log
    {"user", Kind::Str, kOptional},   {"pid", Kind::U64, kOptional},  // ok: the session process
};
inline constexpr MessageSpec kMessages[] = {
    {1, "start", kStartFields},
    {2, "start_result", kStartResultFields},
};
inline constexpr Protocol kProtocol{"session", 1, kMessages, 64 * 1024};
static_assert(well_formed(kProtocol));

// Session program of a login service; empty for an unknown service.
constexpr std::string_view session_program(std::string_view service) {
    if (service == "pop3") return "pop3d";
    if (service == "imap") return "imapd";
    return {};
}

}  // namespace pbx::ipc::session
