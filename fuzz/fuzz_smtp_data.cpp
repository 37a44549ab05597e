// libFuzzer target: the message text reader (DATA and BDAT) and the command
// line reader, fed the same bytes whole and in pieces chosen by the input.
//
// Input layout: byte 0 picks mode and limits, byte 1 seeds the piece sizes,
// the rest is the client's bytes. Checked promises (abort on violation):
//   - the split does not change anything: text, consumed bytes, end, problems;
//   - text without problems is CRLF-clean, and never longer than the limits;
//   - in dot mode the end is found exactly at the first <CRLF>.<CRLF> (or
//     ".\r\n" at the very start), and nowhere else;
//   - the line reader never returns a line holding CR or LF, and never
//     consumes more than it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/smtp/data_reader.hpp"
#include "common/smtp/line_reader.hpp"

using namespace pbx::smtp;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

struct Result {
    std::string text;
    size_t consumed = 0;
    bool done = false;
    uint8_t problems = 0;
};

Result read_all(std::string_view in, DataReader::Mode mode, size_t line_limit, uint64_t size_limit,
                uint32_t seed) {
    DataReader reader(mode, line_limit, size_limit);
    Result r;
    size_t pos = 0;
    while (pos < in.size() && !reader.done()) {
        size_t n = in.size() - pos;
        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            n = std::min<size_t>(n, 1 + (seed >> 8) % 17);
        }
        size_t used = reader.feed(in.substr(pos, n), r.text);
        require(used <= n);
        require(used == n || reader.done());
        pos += used;
    }
    r.consumed = pos;
    r.done = reader.done();
    r.problems = reader.problems();
    return r;
}

// Where a dot-mode reader must stop. After any "\r\n" the reader is at a
// line start (a CR before LF is never bare), so the end is the first
// "\r\n.\r\n", or ".\r\n" at the very beginning; bare CR/LF before it
// make the message refused, not the end move.
size_t expected_end(std::string_view in) {
    if (in.substr(0, 3) == ".\r\n") return 3;
    size_t p = in.find("\r\n.\r\n");
    return p == std::string_view::npos ? p : p + 5;
}

void check_lines(std::string_view in, size_t limit) {
    LineReader reader;
    std::string buffer(in);
    size_t guard = 0;
    while (true) {
        LineResult r = reader.next(buffer, limit);
        if (r.status == LineStatus::NeedMore) break;
        require(r.consumed > 0 && r.consumed <= buffer.size());
        if (r.status == LineStatus::Line) {
            require(r.line.find('\r') == std::string_view::npos);
            require(r.line.find('\n') == std::string_view::npos);
            require(r.line.size() + 2 <= limit);
        }
        buffer.erase(0, r.consumed);
        require(++guard <= in.size() + 1);
    }
    require(buffer.size() < limit || reader.discarding());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t cfg = data[0];
    const uint32_t seed = data[1] * 2654435761u + 1;
    std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);

    const auto mode = (cfg & 1) ? DataReader::Mode::Raw : DataReader::Mode::Dot;
    const size_t line_limit = (cfg & 2) ? 1000 : 3 + (cfg >> 4);
    const uint64_t size_limit = (cfg & 4) ? 0 : 10 + (cfg >> 3);

    Result whole = read_all(in, mode, line_limit, size_limit, 0);
    Result split = read_all(in, mode, line_limit, size_limit, seed);
    require(whole.text == split.text);
    require(whole.consumed == split.consumed);
    require(whole.done == split.done);
    require(whole.problems == split.problems);

    if (size_limit != 0) require(whole.text.size() <= size_limit);
    if (whole.problems == 0) {
        for (size_t i = 0; i < whole.text.size(); ++i) {
            if (whole.text[i] == '\n') require(i > 0 && whole.text[i - 1] == '\r');
            if (whole.text[i] == '\r')
                require(i + 1 < whole.text.size() && whole.text[i + 1] == '\n');
        }
    }
    if (mode == DataReader::Mode::Raw) {
        require(!whole.done && whole.consumed == in.size());
        // A final CR waits for the next byte to tell CRLF from a bare CR.
        std::string_view expect = in;
        if (!expect.empty() && expect.back() == '\r') expect.remove_suffix(1);
        if (whole.problems == 0) require(whole.text == expect);
    } else {
        size_t end = expected_end(in);
        if (end == std::string_view::npos) {
            require(!whole.done && whole.consumed == in.size());
        } else {
            require(whole.done && whole.consumed == end);
        }
    }

    check_lines(in, (cfg & 8) ? 512 : 16);
    return 0;
}
