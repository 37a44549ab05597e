#include "pop3d/protocol.hpp"

#include <charconv>

namespace pbx::pop3 {

size_t LineReader::feed(std::string_view bytes, std::optional<Line>& out) {
    out.reset();
    const size_t lf = bytes.find('\n');
    const size_t take = lf == std::string_view::npos ? bytes.size() : lf + 1;
    std::string_view piece = bytes.substr(0, lf == std::string_view::npos ? bytes.size() : lf);
    if (!overflow_) {
        if (buf_.size() + piece.size() > max_) {
            overflow_ = true;
            buf_.clear();
        } else {
            buf_.append(piece);
        }
    }
    if (lf == std::string_view::npos) return take;
    Line line;
    if (overflow_) {
        line.too_long = true;
    } else {
        if (!buf_.empty() && buf_.back() == '\r') buf_.pop_back();
        line.text = std::move(buf_);
    }
    buf_.clear();
    overflow_ = false;
    out = std::move(line);
    return take;
}

ParseResult parse_command(std::string_view line) {
    ParseResult r;
    if (line.empty()) {
        r.error = ParseError::Empty;
        return r;
    }
    for (char c : line) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            r.error = ParseError::BadChars;
            return r;
        }
    }
    const size_t sp = line.find(' ');
    std::string_view verb = line.substr(0, sp);
    if (verb.size() < 3 || verb.size() > 4) {
        r.error = ParseError::BadVerb;
        return r;
    }
    Command cmd;
    for (char c : verb) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        if (c < 'A' || c > 'Z') {
            r.error = ParseError::BadVerb;
            return r;
        }
        cmd.verb.push_back(c);
    }
    if (sp != std::string_view::npos) {
        std::string_view rest = line.substr(sp + 1);
        cmd.rest = std::string(rest);
        size_t pos = 0;
        while (pos <= rest.size()) {
            size_t next = rest.find(' ', pos);
            if (next == std::string_view::npos) next = rest.size();
            if (next > pos) {
                if (cmd.args.size() >= 8) {
                    r.error = ParseError::TooManyArgs;
                    return r;
                }
                cmd.args.emplace_back(rest.substr(pos, next - pos));
            }
            pos = next + 1;
        }
    }
    r.command = std::move(cmd);
    return r;
}

std::string_view to_string(ParseError e) {
    switch (e) {
        case ParseError::Empty:
            return "Empty command";
        case ParseError::BadVerb:
            return "Unknown command";
        case ParseError::BadChars:
            return "Control characters in the command";
        case ParseError::TooManyArgs:
            return "Too many arguments";
    }
    return "Bad command";
}

std::optional<size_t> parse_number(std::string_view s, size_t max, bool allow_zero) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    for (char c : s)
        if (c < '0' || c > '9') return std::nullopt;
    size_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || (v == 0 && !allow_zero) || v > max)
        return std::nullopt;
    return v;
}

}  // namespace pbx::pop3
