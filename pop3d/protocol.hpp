// POP3 (RFC 1939, RFC 2449) pieces shared by pop3-login and pop3d: the
// incremental command-line reader and the command parser. Pure, bounded,
// never reading past their input (fuzz/fuzz_pop3_command.cpp).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pbx::pop3 {

// RFC 2449 §4: a command line is at most 255 octets, CRLF included. AUTH
// responses (RFC 5034) may be longer: kMaxAuthLine.
inline constexpr size_t kMaxCommandLine = 255;
inline constexpr size_t kMaxAuthLine = 8192;

// Collects one line at a time from arbitrary pieces of input. A line ends at
// LF (a CR before it is removed; a bare LF is accepted). A line longer than
// `max` bytes is discarded up to its LF and reported as too long.
class LineReader {
  public:
    struct Line {
        std::string text;  // without the line ending
        bool too_long = false;
    };
    explicit LineReader(size_t max) : max_(max) {}
    // Consumes bytes up to and including the first LF; returns how many and,
    // when a line ended, the line.
    size_t feed(std::string_view bytes, std::optional<Line>& out);
    bool partial() const { return !buf_.empty() || overflow_; }
    void set_max(size_t max) { max_ = max; }

  private:
    size_t max_;
    std::string buf_;
    bool overflow_ = false;
};

struct Command {
    std::string verb;               // upper case, 1-4 letters... as sent (upper-cased)
    std::vector<std::string> args;  // split at single spaces
    std::string rest;               // everything after "VERB " (PASS keeps spaces)
};

enum class ParseError {
    Empty,     // empty line
    BadVerb,   // not 3-4 ASCII letters
    BadChars,  // NUL or other control characters in the line
    TooManyArgs,
};

// "RETR 1" → {RETR, [1]}. Keywords are case-insensitive (RFC 1939 §3), at
// most 4 arguments of at most 40 characters each (§3) unless `lenient_args`
// (PASS, AUTH responses).
struct ParseResult {
    std::optional<Command> command;
    ParseError error = ParseError::Empty;
};
ParseResult parse_command(std::string_view line);
std::string_view to_string(ParseError e);

// A message number argument: decimal, 1..max (0..max with allow_zero), no sign, no leading garbage.
std::optional<size_t> parse_number(std::string_view s, size_t max = 1u << 30,
                                   bool allow_zero = false);

}  // namespace pbx::pop3
