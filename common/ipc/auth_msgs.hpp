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
//   resolve{id, address}        → resolve_result{id, status, reason?, targets...}
//       what should local-delivery do with mail for this recipient? (only
//       local-delivery, as root, may ask). Aliases are expanded (nested,
//       depth-limited, loops detected; common/auth/expand.hpp). status:
//       found | unknown | tempfail | loop | refused (a command, file or
//       :include: from a file not owned by root, or not allowed) |
//       unsupported (e.g. too many targets). With found, one entry per target
//       in the parallel repeated fields kind, target, user, uid, gid, home,
//       mailbox, format, dotforward:
//         kind mailbox: store in `mailbox` (format maildir | mbox) as
//                       user/uid/gid; dotforward 1: a system user whose
//                       ~/.forward local-delivery reads (as that user) first
//         kind pipe:    run `target` with /bin/sh -c as user/uid/gid
//         kind file:    append to the file `target` as user/uid/gid
//         kind forward: re-submit the message to the address `target` (a
//                       domain that is not ours); user "" and uid/gid 0
//       uid and gid are never 0 for mailbox, pipe and file.
//   owns{id, user, address}    → owns_result{id, status}
//       may the authenticated `user` (verify's canonical name) use `address`
//       as envelope sender or in From:? status: yes | no | tempfail. Yes for
//       the user's own addresses in our domains (with any +detail), aliases
//       that expand to the user, and submission_sender_map (which may also
//       allow any address). Only submitd may ask.
//
//   login{id, user, password, client_address, service}
//                               → login_result{id, status, user?, ticket?}
//       a login process (pop3-login, imap-login) asks for a session: the
//       password is checked exactly as for verify (same failure delays, same
//       answers); with ok, authd also found the user's mailbox and issues a
//       ticket: 32 random bytes (hex), valid once, for kTicketLifetime, that
//       only the master (root) can redeem. service: pop3 | imap. A user
//       whose database entry maps to uid or gid 0, or who has no mailbox,
//       gets fail (logged as such). A successful pop3/imap login records the
//       client address for POP-before-SMTP when pop_before_smtp > 0.
//   redeem{id, ticket}          → redeem_result{id, status, user?, uid?, gid?,
//                                 home?, mailbox?, format?, service?, client_address?}
//       the master turns a ticket into the session's identity. status: ok |
//       fail (unknown, used or expired ticket, or a caller that is not root).
//       A ticket is gone after its first redeem, whatever the answer.
//   relay_check{id, client_address} → relay_check_result{id, allowed, minutes_left?}
//       POP-before-SMTP (smtpd, submitd): did this address log in with POP3 or
//       IMAP within the last pop_before_smtp minutes? allowed: 1 | 0; always 0
//       when pop_before_smtp is 0 (off).
//
// Message type numbers are reserved per feature so that work on them can go
// on in parallel without collisions: 9-12 submission (sender ownership, rate
// limits), 13-18 login/session split (tickets for the master, POP-before-SMTP),
// 19-24 local-delivery (.forward, pipes, files). Take the next free one in
// your range; the protocol version stays 1 until a release.
#pragma once

#include <chrono>

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
    {"id", Kind::U64, kRequired},         {"user", Kind::Str, kRequired},
    {"password", Kind::Bytes, kRequired}, {"client_address", Kind::Str, kOptional},
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
    {"status", Kind::Str, kRequired},  // found | unknown | tempfail | loop | refused | unsupported
    {"reason", Kind::Str, kOptional},  // for the log and the bounce text
    {"kind", Kind::Str, kOptional, kRepeated},    // mailbox | pipe | file | forward
    {"target", Kind::Str, kOptional, kRepeated},  // command, path or address; "" for mailbox
    {"user", Kind::Str, kOptional, kRepeated},
    {"uid", Kind::U64, kOptional, kRepeated},
    {"gid", Kind::U64, kOptional, kRepeated},
    {"home", Kind::Str, kOptional, kRepeated},
    {"mailbox", Kind::Str, kOptional, kRepeated},
    {"format", Kind::Str, kOptional, kRepeated},      // maildir | mbox
    {"dotforward", Kind::U64, kOptional, kRepeated},  // 1: read ~/.forward first
};
inline constexpr FieldSpec kOwnsFields[] = {
    {"id", Kind::U64, kRequired},
    {"user", Kind::Str, kRequired},
    {"address", Kind::Str, kRequired},  // "" is the null sender
};
inline constexpr FieldSpec kOwnsResultFields[] = {
    {"id", Kind::U64, kRequired},      // the request's
    {"status", Kind::Str, kRequired},  // yes | no | tempfail
};

// The login/session split (13-18).
inline constexpr std::chrono::seconds kTicketLifetime{30};
inline constexpr FieldSpec kLoginFields[] = {
    {"id", Kind::U64, kRequired},         {"user", Kind::Str, kRequired},
    {"password", Kind::Bytes, kRequired}, {"client_address", Kind::Str, kOptional},
    {"service", Kind::Str, kRequired},  // pop3 | imap
};
inline constexpr FieldSpec kLoginResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"status", Kind::Str, kRequired},  // ok | fail | tempfail
    {"user", Kind::Str, kOptional},    // ok: the canonical user name
    {"ticket", Kind::Str, kOptional},  // ok: for the master to redeem
};
inline constexpr FieldSpec kRedeemFields[] = {
    {"id", Kind::U64, kRequired},
    {"ticket", Kind::Str, kRequired},
};
inline constexpr FieldSpec kRedeemResultFields[] = {
    {"id", Kind::U64, kRequired},      {"status", Kind::Str, kRequired},  // ok | fail
    {"user", Kind::Str, kOptional},    {"uid", Kind::U64, kOptional},
    {"gid", Kind::U64, kOptional},     {"home", Kind::Str, kOptional},
    {"mailbox", Kind::Str, kOptional}, {"format", Kind::Str, kOptional},  // maildir | mbox
    {"service", Kind::Str, kOptional}, {"client_address", Kind::Str, kOptional},
};
inline constexpr FieldSpec kRelayCheckFields[] = {
    {"id", Kind::U64, kRequired},
    {"client_address", Kind::Str, kRequired},
};
inline constexpr FieldSpec kRelayCheckResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"allowed", Kind::U64, kRequired},
    {"minutes_left", Kind::U64, kOptional},
};

// clang-format off
inline constexpr MessageSpec kMessages[] = {
    {1, "domain", kDomainFields},   {2, "domain_result", kDomainResultFields},
    {3, "rcpt", kRcptFields},       {4, "rcpt_result", kRcptResultFields},
    {5, "verify", kVerifyFields},   {6, "verify_result", kVerifyResultFields},
    {7, "resolve", kResolveFields}, {8, "resolve_result", kResolveResultFields},
    {9, "owns", kOwnsFields},       {10, "owns_result", kOwnsResultFields},
    {13, "login", kLoginFields}, {14, "login_result", kLoginResultFields},
    {15, "redeem", kRedeemFields}, {16, "redeem_result", kRedeemResultFields},
    {17, "relay_check", kRelayCheckFields}, {18, "relay_check_result", kRelayCheckResultFields},
};
// clang-format on
inline constexpr Protocol kProtocol{"auth", 1, kMessages, 64 * 1024};
static_assert(well_formed(kProtocol));

}  // namespace pbx::ipc::auth
