// Reads message text: after DATA (dot-stuffed, ended by <CRLF>.<CRLF>) or
// inside BDAT chunks (raw, the engine counts the octets).
//
// Smuggling hardening: in dot mode only <CRLF>.<CRLF> ends the message, where
// the first CRLF is a real CRLF (or the end of the DATA command line). A bare
// LF or bare CR never ends a line, so "\n.\n", "\r.\r", "\r\n.\n" and
// "\n.\r\n" are message text, never an end. Such a message is marked
// (Problem::BareLf / BareCr) and refused by the engine at the end of data
// (550 5.6.0), so the bytes are never queued and never relayed to a server
// that might read them differently.
//
// The reader stops producing output at the first problem (the message is
// refused anyway) but keeps scanning for the end of data, so the session
// stays in step with the client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pbx::smtp {

enum Problem : uint8_t {
    kProblemTooBig = 1,       // more than size_limit octets (552 5.3.4)
    kProblemBareLf = 2,       // 550 5.6.0
    kProblemBareCr = 4,       // 550 5.6.0
    kProblemLineTooLong = 8,  // a line over text_line_limit (550 5.6.0)
};

class DataReader {
  public:
    enum class Mode { Dot, Raw };

    // size_limit 0: no limit.
    DataReader(Mode mode, size_t text_line_limit, uint64_t size_limit)
        : mode_(mode), text_line_limit_(text_line_limit), size_limit_(size_limit) {}

    // Consumes from `in`, appending message text (dot-unstuffed, the final
    // <CRLF>.<CRLF> removed except for its first CRLF, which ends the last
    // line) to `out` until the first problem. Returns the number of bytes
    // consumed: all of `in` unless the end of data was found (dot mode).
    size_t feed(std::string_view in, std::string& out);

    bool done() const { return done_; }
    uint8_t problems() const { return problems_; }
    uint64_t size() const { return size_; }  // octets of message text
    // Raw mode: the text so far ends in the middle of a line (no final CRLF).
    bool mid_line() const { return state_ != State::Start; }
    // Raw mode, last chunk: a final CR without LF is a bare CR.
    void finish_raw();

  private:
    enum class State { Start, Dot, DotCr, Mid, Cr };

    void emit(std::string& out, std::string_view bytes);
    void problem(uint8_t p) { problems_ |= p; }

    Mode mode_;
    size_t text_line_limit_;
    uint64_t size_limit_;
    State state_ = State::Start;
    size_t line_length_ = 0;
    uint64_t size_ = 0;
    uint8_t problems_ = 0;
    bool done_ = false;
};

}  // namespace pbx::smtp
