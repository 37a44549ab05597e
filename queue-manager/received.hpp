// The Received: line the queue-manager writes first into every message
// (DESIGN §4: "ID.msg: the message as received, with our Received: line").
// Pure: the clock reading and the zone offset are arguments.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "common/spool/envelope.hpp"

namespace pbx::qm {

struct ReceivedContext {
    std::string_view myhostname;
    std::time_t when = 0;
    int utc_offset_minutes = 0;
};

// Over SMTP (origin smtp or submission):
//   Received: from HELO (HOST [IP])
//   	(using TLS)                         only when TLS was used
//   	by MYHOSTNAME (Pillarbox) with PROTOCOL id ID
//   	for <RCPT>;                         only with exactly one recipient
//   	DATE
// (common/smtp/received.hpp builds it). Local submission (origin sendmail):
//   Received: by MYHOSTNAME (Pillarbox, from userid UID)
//   	id ID; DATE
// A notice the queue-manager generated (origin dsn, postmaster-notice):
//   Received: by MYHOSTNAME (Pillarbox)
//   	id ID; DATE
// CRLF line ends. Every envelope value was checked to be free of CR/LF when
// it was accepted, and the SMTP builder replaces control characters too.
std::string received_line(const spool::Envelope& env, const ReceivedContext& ctx);

// The local zone's offset from UTC at `when`, for ReceivedContext (not pure:
// it reads the time zone).
int local_utc_offset_minutes(std::time_t when);

}  // namespace pbx::qm
