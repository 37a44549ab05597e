// The proxy channel in "frames" mode: what a session program (pop3d) sends
// to its login process over the socketpair of the login/session split
// (common/session_interface.hpp, PBX_PROXY=frames). The other direction,
// client → session, stays raw bytes. The session's first frame is a hello.
//
//   data{bytes}                  bytes for the client, in order
//   offer{at, line, answer}
//       if the client's bytes from offset `at` start with exactly `line`,
//       the answer to that line is exactly `answer` and the session will
//       send nothing for it; the login process then writes `answer` itself
//       (common/login/reply_ahead.hpp; pop3d(8), "the proxy protocol").
//       Offers form a chain: the first one of a chain is for the session's
//       read offset when it sends it (nothing is offered while it has
//       anything unread), each next one for the offset right after the
//       previous one's line, and it is binding only if every earlier offer
//       of its chain was taken. A chain ends when a line does not match its
//       offer (the session then answers that line the normal way, with a
//       data frame, before it offers anything again) or when the session
//       sends a data frame. `line` is one line (its only LF is its last
//       byte) of at most kMaxOfferLine bytes, `answer` at most
//       kMaxOfferAnswer bytes; the answers offered and not yet taken are at
//       most kMaxOfferBytes, in at most kMaxOffers offers.
//   idle{consumed}
//       the session has read exactly `consumed` bytes of the client's stream
//       so far (nothing more is buffered unread), has nothing left to send
//       and has sent every offer it makes before it reads more. It sends
//       one whenever it comes to rest after sending anything (data or
//       offers) or after reading a line that was not a taken offer; taking
//       offers alone is silent. The login process holds the client's bytes
//       that no offer decides until it knows the session is at rest past
//       every byte forwarded that way (reply_ahead.hpp).
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
inline constexpr size_t kMaxOfferBytes = 32 * 1024;  // answers offered, not yet taken
inline constexpr size_t kMaxOffers = 8;
// The session tops its chain up when this few offers or fewer are left;
// the login process passes taken lines on when it holds this few or fewer.
inline constexpr size_t kRefillAt = 4;

inline constexpr FieldSpec kDataFields[] = {
    {"bytes", Kind::Bytes, kRequired},
};
inline constexpr FieldSpec kIdleFields[] = {
    {"consumed", Kind::U64, kRequired},
};
inline constexpr FieldSpec kOfferFields[] = {
    {"at", Kind::U64, kRequired},
    {"line", Kind::Bytes, kRequired},
    {"answer", Kind::Bytes, kRequired},
};
inline constexpr MessageSpec kMessages[] = {
    {1, "data", kDataFields},
    {2, "idle", kIdleFields},
    {3, "offer", kOfferFields},
};
// The largest frame: a data frame of kMaxData (an idle frame with an offer
// is smaller), plus headers.
inline constexpr Protocol kProtocol{"proxy", 2, kMessages, kMaxData + 1024};
static_assert(well_formed(kProtocol));
static_assert(kMaxOfferLine + kMaxOfferAnswer + 1024 < kMaxData);

}  // namespace pbx::ipc::proxy
