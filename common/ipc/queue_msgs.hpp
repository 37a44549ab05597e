// The enqueue channel (queue/enqueue.sock, server: queue-manager). Message
// bytes cross IPC here, once (DESIGN §3); the queue-manager answers `queued`
// only after the commit protocol of DESIGN §4 has made the message durable.
//
// One transaction, client → queue-manager:
//   begin            the envelope of the message (sender, client, protocol...)
//   rcpt             one per recipient, in order
//   data             the message bytes, in chunks (CRLF line ends, no
//                    dot-stuffing, no Received: line: the queue-manager adds it)
//   commit           end of data
// then queue-manager → client:
//   queued{queue_id} durable: the client may say 250 / exit 0
//   failed{temporary, text}
// `abort` instead of `commit` drops the transaction (nothing is kept). A
// connection may carry several transactions, one after the other.
//
// Who submits is known from SO_PEERCRED, never from a field: smtpd and submitd
// (their own uids) may set every field; any other uid is a local submission
// (sendmail): origin and origin_uid are taken from the credentials, and the
// sender is accepted only from root or the uid that owns it.
//
// Administration, same channel (root only, except `list` for any user as
// mailq(1)): admin{op, id?, json?} → admin_reply{ok, text}. Ops: list, show,
// hold, release, delete, flush.
#pragma once

#include "common/ipc/frame.hpp"

namespace pbx::ipc::queue {

inline constexpr FieldSpec kBeginFields[] = {
    {"origin", Kind::Str, kRequired},   // smtp | submission | sendmail
    {"sender", Kind::Str, kRequired},   // "" = the null sender <>
    {"protocol", Kind::Str, kRequired}, // ESMTPS, ESMTPSA, local...
    {"client_address", Kind::Str, kOptional},
    {"client_hostname", Kind::Str, kOptional},
    {"helo", Kind::Str, kOptional},
    {"tls", Kind::Str, kOptional},        // TlsInfo::describe()
    {"auth_user", Kind::Str, kOptional},  // SMTP AUTH identity
    {"body", Kind::Str, kOptional},       // 7BIT (default) | 8BITMIME
    {"smtputf8", Kind::U64, kOptional},   // 1: SMTPUTF8 was given
    {"size_declared", Kind::U64, kOptional},
    {"ret", Kind::Str, kOptional},    // FULL | HDRS
    {"envid", Kind::Str, kOptional},  // decoded ENVID
};
inline constexpr FieldSpec kRcptFields[] = {
    {"address", Kind::Str, kRequired},  // as the client wrote it
    {"orcpt", Kind::Str, kOptional},    // "rfc822;user@host" (decoded)
    {"notify", Kind::U64, kOptional},   // spool::NotifyFlags bits
};
inline constexpr FieldSpec kDataFields[] = {
    {"bytes", Kind::Bytes, kRequired},
};
inline constexpr FieldSpec kNoFields[] = {{"unused", Kind::U64, kOptional}};
inline constexpr FieldSpec kQueuedFields[] = {
    {"queue_id", Kind::Str, kRequired},
};
inline constexpr FieldSpec kFailedFields[] = {
    {"temporary", Kind::U64, kRequired},  // 1: 4xx (try again), 0: 5xx
    {"text", Kind::Str, kRequired},
};
inline constexpr FieldSpec kAdminFields[] = {
    {"op", Kind::Str, kRequired},  // list | show | hold | release | delete | flush
    {"id", Kind::Str, kOptional},  // a queue ID; flush without one: everything
    {"json", Kind::U64, kOptional},
};
inline constexpr FieldSpec kAdminReplyFields[] = {
    {"ok", Kind::U64, kRequired},
    {"text", Kind::Str, kRequired},
};

// The largest `data` chunk a client sends; frames leave room for the header.
inline constexpr size_t kMaxChunk = 256 * 1024;

inline constexpr MessageSpec kMessages[] = {
    {1, "begin", kBeginFields},   {2, "rcpt", kRcptFields},
    {3, "data", kDataFields},     {4, "commit", kNoFields},
    {5, "abort", kNoFields},      {6, "queued", kQueuedFields},
    {7, "failed", kFailedFields}, {8, "admin", kAdminFields},
    {9, "admin_reply", kAdminReplyFields},
};
inline constexpr Protocol kProtocol{"queue", 1, kMessages, 16 * 1024 * 1024};
static_assert(well_formed(kProtocol));

}  // namespace pbx::ipc::queue
