// The delivery channels (local/local.sock served by local-delivery,
// remote/remote.sock served by remote-delivery; the queue-manager is the only
// client). Delivery agents never browse the spool: they get an open read-only
// fd of queue/ID.msg and the envelope fields they need (DESIGN §2).
//
//   deliver{id, queue_id, sender, message(fd), recipients...}
//       the recipients are parallel repeated fields, one entry per recipient
//       in the same order: rcpt (address), rcpt_orcpt ("" when none),
//       rcpt_notify (spool::NotifyFlags bits). An agent refuses a request whose
//       lists differ in length (result status "deferred" for all).
//   → rcpt_result{id, index, status, reply}   one per recipient, any order
//       status: sent | deferred | failed; reply: one line, e.g.
//       "250 2.0.0 delivered to maildir" or "550 5.1.1 user unknown"; for a
//       DSN, `dsn_status` (RFC 3463, "5.1.1") and `remote` (the MTA's name);
//       `tls` (remote-delivery only, for the queue-manager's log line): the
//       protocol and cipher of the session, "TLSv1.3:TLS_AES_256_GCM_SHA384:
//       verified", or "none" (plain text, or no host reached).
//   → done{id}                                 after the last rcpt_result
//
// A request the agent cannot finish because it is stopping or crashes is
// simply never answered: the queue-manager treats every recipient without a
// rcpt_result as deferred when the connection drops (the spool is the truth).
#pragma once

#include "common/ipc/frame.hpp"

namespace pbx::ipc::delivery {

inline constexpr FieldSpec kDeliverFields[] = {
    {"id", Kind::U64, kRequired},
    {"queue_id", Kind::Str, kRequired},
    {"sender", Kind::Str, kRequired},  // "" = null sender
    {"message", Kind::Fd, kRequired},  // read-only fd of queue/ID.msg
    {"size", Kind::U64, kRequired},
    {"arrival", Kind::U64, kRequired},  // seconds since the epoch
    {"body", Kind::Str, kOptional},     // 7BIT | 8BITMIME
    {"smtputf8", Kind::U64, kOptional},
    {"envid", Kind::Str, kOptional},
    {"ret", Kind::Str, kOptional},  // FULL | HDRS
    {"rcpt", Kind::Str, kRequired, kRepeated},
    {"rcpt_orcpt", Kind::Str, kRequired, kRepeated},
    {"rcpt_notify", Kind::U64, kRequired, kRepeated},
};
inline constexpr FieldSpec kRcptResultFields[] = {
    {"id", Kind::U64, kRequired},
    {"index", Kind::U64, kRequired},   // into the request's recipients
    {"status", Kind::Str, kRequired},  // sent | deferred | failed
    {"reply", Kind::Str, kRequired},
    {"dsn_status", Kind::Str, kOptional},
    {"remote", Kind::Str, kOptional},
    {"tls", Kind::Str, kOptional},  // remote-delivery: "TLSv1.3:...", "none"
};
inline constexpr FieldSpec kDoneFields[] = {
    {"id", Kind::U64, kRequired},
};

inline constexpr MessageSpec kMessages[] = {
    {1, "deliver", kDeliverFields},
    {2, "rcpt_result", kRcptResultFields},
    {3, "done", kDoneFields},
};
// Frames are small: no message bytes cross this channel, only the fd.
inline constexpr Protocol kProtocol{"delivery", 1, kMessages, 4 * 1024 * 1024};
static_assert(well_formed(kProtocol));

}  // namespace pbx::ipc::delivery
