// Pure helpers of the smtpd glue, kept apart from the I/O so that they can
// be tested from tables: how much client input to hand the engine at once,
// and the per-session command statistics of the disconnect log line.
//
// Why the glue feeds the engine in pieces: the engine takes any amount of
// input, but the log wants to know which command each reply answered
// ("disconnect from ... ehlo=1 mail=1 rcpt=0/1 data=1 quit=1", "NOQUEUE:
// reject: RCPT ..."). Handing over at most one command line at a time, and
// ending a piece of message text right after any line that begins with "."
// (a possible end of DATA), guarantees that every command line reaches the
// engine at the start of a feed, where the glue can see it.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/smtp/engine.hpp"

namespace pbx::smtpserver {

// The first bytes of `input` to feed the engine in `phase` (never 0 for
// non-empty input): in Command phase up to and including the first LF; in
// Data phase up to the LF that ends a line starting with '.', or up to the
// LF before such a line; otherwise everything.
size_t next_feed_size(std::string_view input, smtp::Phase phase);

// The verb of a command line, upper-cased ("MAIL"); "" when the line has no
// verb of letters (at most kMaxVerb of them).
inline constexpr size_t kMaxVerb = 10;
std::string command_verb(std::string_view line);

// The reply code at the start of a reply ("250 ..."), 0 if none.
int reply_code(std::string_view reply);
// The last line of a (multi-line) reply, without CRLF.
std::string_view last_reply_line(std::string_view reply);
// The first <...> of a command line, made printable for the log (control
// bytes and non-ASCII become '?'); "" when there is none.
std::string logged_path(std::string_view line);

// Commands and how many succeeded, Postfix style.
class CommandStats {
  public:
    // A complete command line with this verb was handed to the engine.
    void command(std::string_view verb);
    // The first reply after the command: below 400 is a success.
    void reply(int code);
    // "ehlo=1 mail=1 rcpt=0/1 data=1 quit=1 commands=4/5" (only the commands
    // seen; "n" when all n succeeded, "ok/n" otherwise).
    std::string summary() const;
    // The last command's verb ("RCPT"), "CONNECT" before any.
    std::string last() const;
    bool awaiting_reply() const { return awaiting_ != kNone; }
    // The verb whose reply is awaited ("rcpt"), "" when none.
    std::string_view awaiting_verb() const;

  private:
    static constexpr size_t kVerbs = 15;
    static constexpr size_t kNone = kVerbs;
    static const std::array<std::string_view, kVerbs> kNames;
    static size_t index_of(std::string_view verb);
    std::array<unsigned, kVerbs> total_{};
    std::array<unsigned, kVerbs> ok_{};
    size_t awaiting_ = kNone;
    size_t last_ = kNone;
};

}  // namespace pbx::smtpserver
