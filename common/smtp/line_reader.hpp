// Splits the client's command stream into CRLF-terminated lines.
//
// Smuggling hardening (the Postfix smtpd_forbid_bare_newline approach): only
// CRLF ends a command line. A bare LF is answered at once (BareLf) and the
// bytes after it, up to the next CRLF, are thrown away (answering each further
// bare LF): they belong to a line that was never properly terminated, so
// nothing in them is ever executed. A line holding a bare CR is refused whole
// (BareCr). A line longer than the limit is refused (TooLong) as soon as the
// limit is reached, and its tail is discarded up to the next CRLF.
#pragma once

#include <cstddef>
#include <string_view>

namespace pbx::smtp {

enum class LineStatus {
    NeedMore,   // no complete line yet; nothing consumed
    Line,       // `line` is a command line without its CRLF
    TooLong,    // the line reached the limit without CRLF; now discarding
    BareLf,     // a bare LF arrived; now discarding up to CRLF
    BareCr,     // a complete line that contains a bare CR
    Discarded,  // bytes of a refused line were thrown away
};

struct LineResult {
    LineStatus status = LineStatus::NeedMore;
    std::string_view line;  // only for Line; points into the buffer given to next()
    size_t consumed = 0;    // bytes of the buffer the caller must drop
};

class LineReader {
  public:
    // Examines the start of `buffer`. `limit` is the longest line allowed,
    // CRLF included; it may differ per call (AUTH lines are longer).
    LineResult next(std::string_view buffer, size_t limit);

    bool discarding() const { return discarding_; }
    // Discard up to the next CRLF (the caller refused a line early).
    void start_discarding() {
        discarding_ = true;
        prev_cr_ = false;
    }
    void reset() {
        discarding_ = false;
        prev_cr_ = false;
    }

  private:
    bool discarding_ = false;
    bool prev_cr_ = false;  // while discarding: the last byte thrown away was CR
};

}  // namespace pbx::smtp
