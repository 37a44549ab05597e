// Delivery status notifications (RFC 3464): the pure composer of the
// multipart/report the queue-manager sends to a sender (bounces, delay
// notices, success reports) and to bounce_notice_recipient (the one
// notice about a bounce that could not be delivered).
//
// Pure: every clock reading, name and byte of the original message is an
// argument; the result is the complete message text, CRLF line ends (as
// every message in the spool, pillarbox-spool(5)), every line we write at
// most 998 octets (long values are folded at spaces, and a run of 900
// octets without one is broken), and a MIME boundary that occurs nowhere in
// the content.
//
//   multipart/report; report-type=delivery-status
//     1. text/plain        what happened, one paragraph per recipient
//     2. message/delivery-status
//          Reporting-MTA, Original-Envelope-Id, Arrival-Date; per recipient
//          Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
//          Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until
//     3. message/rfc822 (the whole original) or text/rfc822-headers
//
// Text we put in parts 1 and 2 (replies, addresses) is made 7-bit: octets
// outside printable ASCII become "?" (RFC 6533's message/global-delivery-
// status, which would carry UTF-8 there, is left for later). The original
// part is copied as it is; the result says whether it holds 8-bit octets
// (the notice then needs BODY=8BITMIME).
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace pbx::dsn {

enum class Action { Failed, Delayed, Delivered, Relayed };

std::string_view to_string(Action a);  // "failed", "delayed", ...

struct RecipientReport {
    std::string final_recipient;     // the envelope recipient, without <>
    std::string original_recipient;  // ORCPT, decoded ("rfc822;a+b@x"); "" = none
    Action action = Action::Failed;
    std::string reply;             // the last reply, one line; "" = none
    std::string remote_mta;        // host name of the server that replied; "" = unknown
    std::time_t last_attempt = 0;  // 0: never attempted (no Last-Attempt-Date)
};

struct Report {
    std::string reporting_mta;  // myhostname
    std::string to;             // who gets the notice (the sender, or postmaster)
    std::string message_id;     // without <>, e.g. "ID@myhostname"
    std::time_t date = 0;       // now
    int utc_offset_minutes = 0;
    std::time_t arrival = 0;  // of the original message
    std::string original_queue_id;
    std::string original_sender;              // "" = null sender
    std::string envid;                        // DSN ENVID (decoded); "" = none
    std::time_t will_retry_until = 0;         // for delayed recipients
    bool postmaster_copy = false;             // the notice about an undeliverable notice
    std::vector<RecipientReport> recipients;  // at least one
    // true: `original` is the whole message (message/rfc822); false: its
    // header section is returned (text/rfc822-headers), cut from `original`,
    // which may then be just a prefix of the message.
    bool return_full = false;
    std::string_view original;
};

struct Composed {
    std::string text;        // the whole message, CRLF line ends
    bool eight_bit = false;  // the returned original holds octets >= 0x80
};

Composed compose(const Report& r);

// "5.1.1" from a reply: the enhanced code after the 3-digit code
// ("550 5.1.1 user unknown", "550-5.1.1 ...") or at its start
// ("4.4.7 message expired: ..."); else the class of the 3-digit code
// ("550 no" → "5.0.0"); else by action ("5.0.0" for failed, "4.0.0" for
// delayed, "2.0.0" for delivered and relayed).
std::string status_of(std::string_view reply, Action a);

// The header section of a message: up to and including the empty line
// that ends it (or, without one, everything up to the last complete line),
// at most `limit` octets (cut at a line end).
std::string_view header_section(std::string_view message, size_t limit);

// The Subject: of a notice: failures first, then delays, then successes.
std::string_view subject_of(const Report& r);

}  // namespace pbx::dsn
