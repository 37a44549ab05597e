// The auth channel (auth/auth.sock, server: authd). Every request carries an
// `id` the reply repeats, so a client may pipeline requests on one connection.
//
//   domain{id, domain}          → domain_result{id, local}
//   rcpt{id, address}           → rcpt_result{id, status, canonical?}
//       is this recipient deliverable here? status: found | unknown | tempfail;
//       for a domain that is not ours: status "remote". canonical is the
//       resolved form (lower-cased local part, +detail kept) for the log.
//   verify{id, user, password, client_address, service}
//                               → verify_result{id, status, user?}
//       password check (users file: crypt(3); system users when enabled).
//       status: ok | fail | tempfail. Failures are answered late (growing
//       delays per client address and per user) whatever the caller does, and
//       never say whether the user exists.
//   resolve{id, address}        → resolve_result{id, status, reason?, mailboxes...}
//       where should mail for this recipient be stored? (local-delivery only)
//       Aliases are expanded to the final users (nested, depth-limited, loops
//       detected). status: found | unknown | tempfail | unsupported (a target
//       local-delivery cannot handle yet: |command, /file, :include:, a
//       remote address) | loop. With found, one entry per mailbox in the
//       parallel repeated fields user, uid, gid, home, mailbox, format
//       (maildir | mbox); uid and gid are never 0.
//
// Message type numbers are reserved per feature so that work on them can go
// on in parallel without collisions: 9-12 submission (sender ownership, rate
// limits), 13-18 login/session split (tickets for the master, POP-before-SMTP),
// 19-24 local-delivery (.forward, pipes, files). Take the next free one in
// your range; the protocol version stays 1 until a release.
#pragma once

#include "common/ipc/frame.hpp"

namespace pbx::ipc::auth {

inline constexpr FieldSpec kDomainFields[] = {
    {"id", Kind::U64, kRequired},
    {"domain", Kind::Str, kRequired},
};
inline constexpr FieldSpec kDomainResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"local", Kind::U64, kRequired},
};
inline constexpr FieldSpec kRcptFields[] = {
    {"id", Kind::U64, kRequired},
    {"address", Kind::Str, kRequired},
};
inline constexpr FieldSpec kRcptResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"status", Kind::Str, kRequired},  // found | unknown | remote | tempfail
    {"canonical", Kind::Str, kOptional},
};
inline constexpr FieldSpec kVerifyFields[] = {
    {"id", Kind::U64, kRequired},
    {"user", Kind::Str, kRequired},
    {"password", Kind::Bytes, kRequired},
    {"client_address", Kind::Str, kOptional},
    {"service", Kind::Str, kRequired},  // smtp | submission | pop3 | imap
};
inline constexpr FieldSpec kVerifyResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"status", Kind::Str, kRequired},  // ok | fail | tempfail
    {"user", Kind::Str, kOptional},    // ok: the canonical user name
};

inline constexpr FieldSpec kResolveFields[] = {
    {"id", Kind::U64, kRequired},
    {"address", Kind::Str, kRequired},
};
inline constexpr FieldSpec kResolveResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"status", Kind::Str, kRequired},  // found | unknown | tempfail | unsupported | loop
    {"reason", Kind::Str, kOptional},  // for the log and the bounce text
    {"user", Kind::Str, kOptional, kRepeated},
    {"uid", Kind::U64, kOptional, kRepeated},
    {"gid", Kind::U64, kOptional, kRepeated},
    {"home", Kind::Str, kOptional, kRepeated},
    {"mailbox", Kind::Str, kOptional, kRepeated},
    {"format", Kind::Str, kOptional, kRepeated},  // maildir | mbox
};

inline constexpr MessageSpec kMessages[] = {
    {1, "domain", kDomainFields}, {2, "domain_result", kDomainResultFields},
    {3, "rcpt", kRcptFields},     {4, "rcpt_result", kRcptResultFields},
    {5, "verify", kVerifyFields}, {6, "verify_result", kVerifyResultFields},
    {7, "resolve", kResolveFields}, {8, "resolve_result", kResolveResultFields},
};
inline constexpr Protocol kProtocol{"auth", 1, kMessages, 64 * 1024};
static_assert(well_formed(kProtocol));

}  // namespace pbx::ipc::auth
