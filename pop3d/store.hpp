// What pop3d serves: a snapshot of one mailbox (Maildir or mbox), taken when
// the session starts, with each message's size in the form RETR sends it and
// a unique id (UIDL). The session engine (session_engine.hpp) works on this
// interface only, so it is tested with an in-memory store.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace pbx::pop3 {

struct MessageInfo {
    uint64_t size = 0;  // octets of the CRLF form, before dot-stuffing (crlf_size)
    std::string uidl;   // 1..70 characters 0x21..0x7e, unique in the mailbox
};

class Store {
  public:
    virtual ~Store() = default;
    virtual const std::vector<MessageInfo>& messages() const = 0;
    // The message as stored, line ends LF or CRLF (mbox: unquoted). An
    // error means the message vanished or cannot be read.
    virtual Result<std::string> content(size_t index) = 0;
    // UPDATE state: removes the messages marked in `deleted` (same length as
    // messages()). On failure, none or some are removed; nothing else is.
    virtual Status commit(const std::vector<bool>& deleted) = 0;
    // Called about once a minute during the session (mbox: refreshes the
    // dotlock so that nobody takes it for a crashed writer's).
    virtual void keep_alive() {}
    // The session is over (after QUIT's commit): drop the locks now, before
    // the client reads the final +OK and perhaps logs in again at once.
    virtual void release() {}
};

// The CRLF form of a stored message: every LF not preceded by CR gets one,
// and a message that does not end in a line end gets a final CRLF.
std::string to_crlf(std::string_view content);
// to_crlf(content).size(), without building it.
uint64_t crlf_size(std::string_view content);
// A valid UIDL for `name` (RFC 1939: 1..70 of 0x21..0x7e): `name` itself when
// it is one, else "H" + hex of the first 16 bytes of its SHA-256.
std::string uidl_for(std::string_view name);

}  // namespace pbx::pop3
