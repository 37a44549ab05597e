// What `pillarbox queue list` and `show` print (admin op list/show): pure
// formatters over the in-memory schedule, golden-tested.
//
// list, text (the classic mailq layout, with 20-digit queue IDs):
//
//   -Queue ID-           --Size-- ----Arrival Time---- -Sender/Recipient-------
//   0006011e5a7c8d001234*    1234 Tue Nov 14 22:13:20  alice@example.org
//                                                      bob@example.org
//           (4.4.1 connect to mx.example.com: Connection refused)
//                                                      carol@example.com
//
//   -- 2 Kbytes in 1 Request.
//
// The character after the ID: '*' being delivered, '!' held. Only recipients
// still to be delivered are listed, each after its deferral reason (the last
// reply, or why nothing was tried). The null sender shows as MAILER-DAEMON.
// An empty queue prints "Mail queue is empty".
//
// list --json: one JSON object per line and message (as postqueue -j):
//   {"queue_name":"deferred","queue_id":"...","arrival_time":1700000000,
//    "message_size":1234,"sender":"...","recipients":[{"address":"...",
//    "state":"deferred","delay_reason":"..."}]}
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "queue-manager/store.hpp"

namespace pbx::qm {

std::string list_text(std::span<const Entry* const> entries, int utc_offset_minutes);
std::string list_json(std::span<const Entry* const> entries);

// Every envelope field, each recipient's state, attempts, last reply and
// next attempt; "key: value" lines, or one JSON object.
std::string show_text(const Entry& e, int utc_offset_minutes);
std::string show_json(const Entry& e);

// "active", "deferred" or "hold" (list's queue_name).
std::string_view queue_name(const Entry& e);

// A JSON string literal, quotes included; control octets and non-UTF-8
// bytes are escaped as \u00XX so the output is always valid JSON text.
std::string json_string(std::string_view s);

}  // namespace pbx::qm
