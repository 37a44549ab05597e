// The proxy channel in "frames" mode: what a session program (pop3d) sends
// to its login process over the socketpair of the login/session split
// (common/session_interface.hpp, PBX_PROXY=frames). The other direction,
// client → session, stays raw bytes. The session's first frame is a hello.
//
//   data{bytes}                  bytes for the client, in order
//   idle{consumed, line?, answer?}
//       the session has read exactly `consumed` bytes of the client's stream
//       so far (nothing more is buffered unread) and has nothing left to
//       send. With `line` and `answer` it also offers: if the client's bytes
//       from offset `consumed` start with exactly `line`, the answer to that
//       line is exactly `answer` and the session will send nothing for it
//       (it reads nothing between this frame and that line). The login
//       process then writes `answer` itself (common/login/reply_ahead.hpp;
//       pop3d(8), "the proxy protocol"). `line` is one line (its only LF is
//       its last byte) of at most kMaxOfferLine bytes, `answer` at most
//       kMaxOfferAnswer bytes; both or neither. The login process forwards
//       the client's bytes only while it holds idle{consumed = what it
//       forwarded}, and keeps the bytes forwarded since the last idle
//       offset, so that it decides an offer on the very bytes the session
//       will read there (reply_ahead.hpp).
//
// The session runs as the mail user: to the login process these frames are
// untrusted input. A bad frame (decoding error, a size over the limits, a
// `consumed` that goes back or past what was forwarded) closes that one
// connection.
#pragma once

#include "common/ipc/frame.hpp"

namespace pbx::ipc::proxy {

inline constexpr size_t kMaxData = 64 * 1024;
inline constexpr size_t kMaxOfferLine = 255;  // a POP3 command line, CRLF included
inline constexpr size_t kMaxOfferAnswer = 16 * 1024;

inline constexpr FieldSpec kDataFields[] = {
    {"bytes", Kind::Bytes, kRequired},
};
inline constexpr FieldSpec kIdleFields[] = {
    {"consumed", Kind::U64, kRequired},
    {"line", Kind::Bytes, kOptional},
    {"answer", Kind::Bytes, kOptional},
};
inline constexpr MessageSpec kMessages[] = {
    {1, "data", kDataFields},
    {2, "idle", kIdleFields},
};
// The largest frame: a data frame of kMaxData (an idle frame with an offer
// is smaller), plus headers.
inline constexpr Protocol kProtocol{"proxy", 1, kMessages, kMaxData + 1024};
static_assert(well_formed(kProtocol));
static_assert(kMaxOfferLine + kMaxOfferAnswer + 1024 < kMaxData);

}  // namespace pbx::ipc::proxy
