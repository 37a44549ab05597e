// What a local delivery adds to a message and the mail-loop check
// (DESIGN.md §5). Pure functions of the message text.
//
//   Return-Path: <sender>      the envelope sender ("<>" for the null sender)
//   Delivered-To: <rcpt>       the final recipient address
//
// The added lines use the message's own line ending (CRLF when its first line
// ends in CRLF, LF otherwise), so the stored bytes stay consistent.
//
// A loop is declared when the header already holds "Delivered-To: <rcpt>"
// for the same recipient (case-insensitive, as Postfix and qmail do), or more
// than LoopLimits::max_received "Received:" lines.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pbx::mailbox {

struct LoopLimits {
    size_t max_received = 50;              // RFC 5321 §6.3: "a large number"
    size_t max_header_scan = 1024 * 1024;  // bytes of header looked at
};

// "\r\n" or "\n": the line ending of the first line of `message`.
std::string_view line_ending(std::string_view message);

// CRLF → LF (what commands and mbox files get), and bare LF → CRLF (what the
// enqueue channel takes). Every other byte is kept.
std::string to_lf(std::string_view text);
std::string to_crlf(std::string_view text);

// The lines prepended by a delivery, with the message's line ending.
std::string delivery_headers(std::string_view message, std::string_view sender,
                             std::string_view rcpt);

// nullopt when no loop is seen; otherwise why (for the log).
std::optional<std::string> detect_loop(std::string_view message, std::string_view rcpt,
                                       const LoopLimits& limits = {});

}  // namespace pbx::mailbox
