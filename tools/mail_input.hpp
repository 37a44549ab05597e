// The command line and the message input of sendmail(1), mailq(1) and
// newaliases(1): pure functions and a byte-fed reader, so that every option,
// the lone-dot rule and the line-end conversion sit in test tables (fed whole
// and one byte at a time) instead of in I/O code.
//
// Nothing here decides who the caller is: the queue-manager learns that from
// SO_PEERCRED. `-f` is only a request that the queue-manager may refuse.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace pbx::mail {

// sysexits.h, spelled out so that the tables and the man page agree.
enum ExitCode : int {
    kExOk = 0,
    kExUsage = 64,
    kExDataErr = 65,
    kExNoInput = 66,
    kExNoUser = 67,
    kExUnavailable = 69,
    kExSoftware = 70,
    kExOsErr = 71,
    kExCantCreat = 73,
    kExIoErr = 74,
    kExTempFail = 75,
    kExNoPerm = 77,
    kExConfig = 78,
};

enum class Mode {
    Deliver,    // -bm (the default): read a message on stdin and queue it
    Smtp,       // -bs: SMTP on stdin/stdout
    ListQueue,  // -bp, mailq
    Aliases,    // -bi, -I, newaliases
    Flush,      // -q: ask the queue-manager to retry everything now
};

// The mode a program name implies: "mailq" → ListQueue, "newaliases" →
// Aliases, anything else (sendmail, a path ending in /sendmail) → Deliver.
Mode mode_for_program(std::string_view argv0);

struct ArgLimits {
    size_t max_sender = 1024;    // -f/-r value (the envelope's value limit)
    size_t max_full_name = 256;  // -F
    size_t max_envid = 100;      // -V (RFC 3461 4.4: at most 100 characters)
    size_t max_recipient_args = 1000;
    size_t max_arg = 64 * 1024;  // one recipient argument
};

struct Options {
    Mode mode = Mode::Deliver;
    bool extract_recipients = false;  // -t
    bool dot_ends_input = true;       // false with -i or -oi
    bool verbose = false;             // -v
    // -f / -r: the envelope sender requested, "<" ">" removed; "" is the null
    // sender. nullopt: the invoking user's own address.
    std::optional<std::string> sender;
    std::optional<std::string> full_name;  // -F
    std::string config_path;               // -C; empty: $PBX_CONFIG or the default
    uint8_t notify = 0;                    // -N, spool::NotifyFlags bits; 0: not given
    std::string ret;                       // -R: "FULL", "HDRS" or ""
    std::string envid;                     // -V
    std::string body;                      // -B: "7BIT", "8BITMIME" or "" (detect)
    std::vector<std::string> recipients;   // the operands, each an address list
    std::vector<std::string> ignored;      // accepted-and-ignored options, for -v
};

struct UsageError {
    std::string message;  // one line, without the program name
};

// Parses the arguments after argv[0]. Options come first (clustered "-ti",
// attached "-fuser" or separate "-f user" values); the first operand or "--"
// ends them, so an address that starts with '-' after "--" is never an option.
// A mode that takes no recipients refuses operands; the default mode needs
// recipients or -t.
Result<Options, UsageError> parse_args(std::span<const std::string_view> args, Mode default_mode,
                                       const ArgLimits& limits = {});

// -N: "never", or a comma-separated list of success, delay, failure
// (case-insensitive). Returns the spool::NotifyFlags bits.
Result<uint8_t, UsageError> parse_notify(std::string_view text);

// ---- the message on stdin ---------------------------------------------

// Reads the message, converting line ends: LF → CRLF, an existing CRLF is
// kept, a bare CR (not followed by LF) is kept as it is. Without -i a line
// holding a single "." (".\n" or ".\r\n", or a final "." at end of input)
// ends the message; the line itself is not part of it. A last line without a
// line end gets CRLF.
//
// Bounded: the converted message may not exceed max_size octets; the reader
// refuses more (TooLarge) instead of buffering it.
class MessageReader {
  public:
    enum class State { More, Done, TooLarge };

    MessageReader(bool dot_ends_input, uint64_t max_size);

    // Feeds input; returns Done once the terminating dot line was seen (later
    // input is ignored) and TooLarge once the limit is passed.
    State feed(std::string_view bytes);
    // End of input.
    State finish();

    State state() const { return state_; }
    // Any octet >= 0x80 seen (the message needs 8BITMIME).
    bool eight_bit() const { return eight_bit_; }
    const std::string& message() const { return out_; }
    std::string take() { return std::move(out_); }

  private:
    bool end_line();  // at a '\n'; true when it was the dot line

    bool dot_ends_;
    uint64_t max_size_;
    State state_ = State::More;
    bool eight_bit_ = false;
    std::string out_;
    size_t line_start_ = 0;
};

// The same line-end rule as a stream filter (sendmail -bs: an SMTP client on
// stdin may end lines with LF alone, as Postfix's sendmail -bs allows).
class CrlfFilter {
  public:
    std::string convert(std::string_view bytes);

  private:
    bool prev_cr_ = false;
};

}  // namespace pbx::mail
