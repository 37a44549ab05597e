#include "common/smtp/data_reader.hpp"

#include <algorithm>

namespace pbx::smtp {

void DataReader::emit(std::string& out, std::string_view bytes) {
    // Once the message is refused its bytes go nowhere. Output stops exactly
    // at the octet that broke a limit, so that it does not depend on how the
    // input was split into feed() calls.
    const bool clean = problems_ == 0;
    size_t keep = bytes.size();
    if (size_limit_ != 0 && size_ + bytes.size() > size_limit_) {
        keep = std::min<uint64_t>(keep, size_ < size_limit_ ? size_limit_ - size_ : 0);
        problem(kProblemTooBig);
    }
    if (line_length_ + bytes.size() > text_line_limit_) {
        keep =
            std::min(keep, line_length_ < text_line_limit_ ? text_line_limit_ - line_length_ : 0);
        problem(kProblemLineTooLong);
    }
    if (clean) out.append(bytes.substr(0, keep));
    size_ += bytes.size();
    line_length_ += bytes.size();
}

void DataReader::finish_raw() {
    if (state_ == State::Cr) {
        problem(kProblemBareCr);
        state_ = State::Mid;
    }
}

size_t DataReader::feed(std::string_view in, std::string& out) {
    size_t i = 0;
    while (i < in.size() && !done_) {
        char c = in[i];
        switch (state_) {
            case State::Start:
                line_length_ = 0;
                if (mode_ == Mode::Dot && c == '.') {
                    state_ = State::Dot;
                    ++i;
                    continue;
                }
                state_ = State::Mid;
                continue;  // same byte, as mid-line

            case State::Dot:
                // RFC 5321 4.5.2: a line starting with "." and holding more
                // loses its first dot; ".\r" may still be the end.
                if (c == '\r') {
                    state_ = State::DotCr;
                    ++i;
                    continue;
                }
                state_ = State::Mid;
                continue;

            case State::DotCr:
                if (c == '\n') {
                    done_ = true;
                    ++i;
                    continue;
                }
                state_ = State::Cr;  // the dot is dropped; the CR is bare
                continue;

            case State::Cr:
                if (c == '\n') {
                    emit(out, "\r\n");
                    state_ = State::Start;
                    ++i;
                    continue;
                }
                problem(kProblemBareCr);
                emit(out, "\r");
                state_ = State::Mid;
                continue;  // the byte after a bare CR is text (or another CR)

            case State::Mid: {
                if (c == '\r') {
                    state_ = State::Cr;
                    ++i;
                    continue;
                }
                if (c == '\n') {
                    problem(kProblemBareLf);
                    emit(out, "\n");
                    ++i;
                    continue;  // still mid-line: a bare LF never starts a line
                }
                size_t end = in.find_first_of("\r\n", i);
                if (end == std::string_view::npos) end = in.size();
                emit(out, in.substr(i, end - i));
                i = end;
                continue;
            }
        }
    }
    return i;
}

}  // namespace pbx::smtp
