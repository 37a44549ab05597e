// The contract between pillarbox-master and a mail session program (pop3d,
// imapd), the second half of the login/session split (DESIGN.md §2,
// Dovecot's model):
//
//   client ⇄ TLS ⇄ pop3-login / imap-login (pbx-login, chroot, event loop)
//                          │  one end of a socketpair per logged-in client,
//                          │  plaintext, the login process proxies bytes
//                          ▼
//              pop3d / imapd session (the mail user, no capabilities)
//
// After authd accepted the credentials and issued a one-time ticket, the
// login process passes the ticket and the other end of a socketpair to the
// master; the master redeems the ticket with authd (which answers with the
// user's uid, gid, home and mailbox), forks, drops to that uid/gid through
// privsep::drop (no capabilities, NoNewPrivs, never uid 0) and execs the
// session program with exactly this:
//
// File descriptors:
//   0  kClientFd   the session's end of the socketpair: plaintext protocol
//                  bytes to and from the client, already past login. The
//                  session never sees TLS or the network.
//   1  kClientFd dup'ed, so a session may use stdout for client output.
//   2  the master's log stream (as other children's stderr).
//   kConfigFd (3)  the sealed config memfd, as master_interface.hpp says.
//
// Environment (nothing else crosses exec):
//   PBX_CONFIG_FD          "3"
//   PBX_SERVICE            "pop3d" | "imapd"
//   PBX_USER               the canonical user name (as authd answered)
//   HOME                   the user's home directory
//   PBX_MAILBOX            absolute path of the INBOX: a Maildir directory
//                          (the Maildir++ root for IMAP) or an mbox file
//   PBX_MAILBOX_FORMAT     "maildir" | "mbox"
//   PBX_CLIENT_ADDRESS     the client's IP address, for logs
//   PBX_TLS                "" without TLS, else "TLSv1.3 <cipher>", for logs
//                          and for what the session may advertise
//   PBX_LOGIN_TAG          IMAP only: the tag of the LOGIN/AUTHENTICATE
//                          command; the session writes the tagged OK itself
//                          (so the OK carries its CAPABILITY list). pop3d
//                          writes "+OK" after PASS/AUTH itself likewise.
//   PBX_SESSION_ID         a short id the login process, master and session
//                          all log, to follow one connection
//   PBX_PROXY              "" (or unset): the socketpair carries raw bytes
//                          both ways. "frames" (asked for by the login
//                          process in `start`, pop3-login only): the
//                          session's output goes as common/ipc frames of the
//                          proxy protocol (common/ipc/proxy_msgs.hpp: a
//                          hello, then data{bytes} and idle{consumed,
//                          line?, answer?}, with which the login process
//                          answers a predicted command itself); the
//                          client's bytes still come raw. A session program
//                          that does not know the value refuses to start.
//   PBX_FOREGROUND, PBX_DEBUG as master_interface.hpp says
// The session's cwd is "/"; it runs until the client quits or the socket
// closes (the login process closes it when the client goes), and on SIGTERM
// it ends the session (IMAP: "* BYE", POP3: no UPDATE state) and exits 0.
//
// A session program can be run without the master for tests: give it a
// socket on fd 0 and fd 1 and this environment (it must not need any other
// input). It refuses to run as uid 0.
#pragma once

#include <string_view>

namespace pbx::session_interface {

inline constexpr int kClientFd = 0;
inline constexpr int kConfigFd = 3;

inline constexpr std::string_view kEnvConfigFd = "PBX_CONFIG_FD";
inline constexpr std::string_view kEnvService = "PBX_SERVICE";
inline constexpr std::string_view kEnvUser = "PBX_USER";
inline constexpr std::string_view kEnvHome = "HOME";
inline constexpr std::string_view kEnvMailbox = "PBX_MAILBOX";
inline constexpr std::string_view kEnvMailboxFormat = "PBX_MAILBOX_FORMAT";
inline constexpr std::string_view kEnvClientAddress = "PBX_CLIENT_ADDRESS";
inline constexpr std::string_view kEnvTls = "PBX_TLS";
inline constexpr std::string_view kEnvLoginTag = "PBX_LOGIN_TAG";
inline constexpr std::string_view kEnvSessionId = "PBX_SESSION_ID";
inline constexpr std::string_view kEnvProxy = "PBX_PROXY";
inline constexpr std::string_view kProxyFrames = "frames";

}  // namespace pbx::session_interface
