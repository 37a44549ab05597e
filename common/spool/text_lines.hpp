// Internal to common/spool: the line and number scanning shared by the
// envelope and maildrop readers. Not a public API.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

namespace pbx::spool::detail {

enum class LineStatus { Ok, Eof, TooLong, Unterminated, Nul, CarriageReturn };

// Walks `input` one "\n"-terminated line at a time without reading past it.
class LineCursor {
  public:
    LineCursor(std::string_view input, size_t max_line) : in_(input), max_(max_line) {}

    // On Ok, `*line` is the line without its "\n". line_number() is the
    // 1-based number of the line just returned (or rejected).
    LineStatus next(std::string_view* line) {
        if (pos_ >= in_.size()) return LineStatus::Eof;
        ++number_;
        std::string_view rest = in_.substr(pos_);
        // Look no further than one octet past the limit.
        std::string_view window = rest.substr(0, max_ + 1);
        size_t nl = window.find('\n');
        std::string_view text = nl == std::string_view::npos ? window : window.substr(0, nl);
        if (text.find('\0') != std::string_view::npos) return LineStatus::Nul;
        if (text.find('\r') != std::string_view::npos) return LineStatus::CarriageReturn;
        if (nl == std::string_view::npos) {
            return window.size() > max_ ? LineStatus::TooLong : LineStatus::Unterminated;
        }
        if (nl > max_) return LineStatus::TooLong;
        pos_ += nl + 1;
        *line = text;
        return LineStatus::Ok;
    }

    int line_number() const { return number_; }
    size_t offset() const { return pos_; }
    void skip(size_t n) { pos_ += n; }
    std::string_view rest() const { return in_.substr(pos_); }
    void set_line_number(int n) { number_ = n; }

  private:
    std::string_view in_;
    size_t max_;
    size_t pos_ = 0;
    int number_ = 0;
};

// Canonical unsigned decimal: digits only, no sign, no leading zero (except
// "0" itself), at most `max`.
inline bool parse_decimal(std::string_view s, uint64_t max, uint64_t* out) {
    if (s.empty() || s.size() > 20) return false;
    if (s.size() > 1 && s[0] == '0') return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || v > max) return false;
    *out = v;
    return true;
}

}  // namespace pbx::spool::detail
