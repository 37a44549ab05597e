#include "imapd/parser.hpp"

#include <algorithm>
#include <charconv>

namespace pbx::imap {

namespace {

bool is_ctl(unsigned char c) {
    return c < 0x20 || c == 0x7f;
}

// ASTRING-CHAR minus what ends an atom in a command. '%' and '*' (list
// wildcards) and ']' are allowed; '[' opens a bracketed part (see parser.hpp).
bool is_atom_char(unsigned char c) {
    return !is_ctl(c) && c != ' ' && c != '(' && c != ')' && c != '{' && c != '"' && c != '\\' &&
           c != '[';
}

bool valid_tag(std::string_view t) {
    if (t.empty() || t.size() > 64) return false;
    for (unsigned char c : t)
        if (!is_atom_char(c) || c == '+' || c == '%' || c == '*' || c == ']' || c >= 0x80)
            return false;
    return true;
}

// A literal marker at the end of `line`: "{N}" or "{N+}". Returns the offset
// of '{' or npos.
size_t literal_marker(std::string_view line, uint64_t& n, bool& plus) {
    if (line.empty() || line.back() != '}') return std::string_view::npos;
    size_t open = line.rfind('{');
    if (open == std::string_view::npos) return open;
    std::string_view num = line.substr(open + 1, line.size() - open - 2);
    plus = !num.empty() && num.back() == '+';
    if (plus) num.remove_suffix(1);
    if (num.empty() || num.size() > 19) return std::string_view::npos;
    for (char c : num)
        if (c < '0' || c > '9') return std::string_view::npos;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
    if (ec != std::errc()) return std::string_view::npos;
    return open;
}

// Cursor over pieces: text pieces alternate with literal pieces.
class Tokenizer {
  public:
    Tokenizer(const std::vector<Piece>& pieces, const Limits& limits)
        : pieces_(pieces), limits_(limits) {}

    std::string error;

    // Parses the values of the command (or of a list when depth > 0).
    bool values(std::vector<Value>& out, size_t depth) {
        bool first = true;
        for (;;) {
            if (at_end_of_command()) {
                if (depth > 0) return set_error("Missing ')'");
                return true;
            }
            int c = peek();
            if (c == ')') {
                if (depth == 0) return set_error("Unexpected ')'");
                return true;  // the caller consumes it
            }
            if (!first) {
                if (c != ' ') return set_error("Expected a space between arguments");
                ++pos_;
                if (at_end_of_command() || peek() == ')')
                    return set_error("Unexpected space before the end of a list or line");
            }
            first = false;
            if (++count_ > limits_.max_values) return set_error("Too many arguments");
            Value v;
            if (!value(v, depth)) return false;
            out.push_back(std::move(v));
        }
    }

  private:
    bool set_error(std::string e) {
        error = std::move(e);
        return false;
    }
    // End of the current text piece, and a literal follows.
    bool at_literal() const {
        return pos_ >= pieces_[i_].text.size() && i_ + 1 < pieces_.size() &&
               pieces_[i_ + 1].literal;
    }
    bool at_end_of_command() const {
        return pos_ >= pieces_[i_].text.size() && i_ + 1 >= pieces_.size();
    }
    // -1 at the end of the current text piece.
    int peek() const {
        if (pos_ >= pieces_[i_].text.size()) return -1;
        return static_cast<unsigned char>(pieces_[i_].text[pos_]);
    }

    bool value(Value& v, size_t depth) {
        if (at_literal()) {
            v.kind = Value::Kind::String;
            v.literal = true;
            v.text = std::string(pieces_[i_ + 1].text);
            // The next text piece must exist (a literal is followed by a line).
            i_ += 2;
            pos_ = 0;
            if (i_ >= pieces_.size())
                return set_error("Internal: literal without a following line");
            return true;
        }
        int c = peek();
        if (c == '(') {
            if (depth + 1 > limits_.max_depth) return set_error("Too deeply nested parentheses");
            ++pos_;
            v.kind = Value::Kind::List;
            if (!values(v.list, depth + 1)) return false;
            if (peek() != ')') return set_error("Missing ')'");
            ++pos_;
            return true;
        }
        if (c == '"') return quoted(v);
        return atom(v);
    }

    bool quoted(Value& v) {
        std::string_view t = pieces_[i_].text;
        ++pos_;
        v.kind = Value::Kind::String;
        for (;;) {
            if (pos_ >= t.size()) return set_error("Unterminated quoted string");
            char c = t[pos_++];
            if (c == '"') return true;
            if (c == '\\') {
                if (pos_ >= t.size()) return set_error("Unterminated quoted string");
                char e = t[pos_++];
                if (e != '"' && e != '\\') return set_error("Invalid escape in quoted string");
                v.text.push_back(e);
                continue;
            }
            if (c == '\r' || c == '\n' || c == '\0')
                return set_error("Invalid character in quoted string");
            v.text.push_back(c);
        }
    }

    bool atom(Value& v) {
        std::string_view t = pieces_[i_].text;
        size_t start = pos_;
        // A flag: "\Seen", "\*".
        if (pos_ < t.size() && t[pos_] == '\\') {
            ++pos_;
            if (pos_ < t.size() && t[pos_] == '*') ++pos_;
        }
        while (pos_ < t.size()) {
            unsigned char c = static_cast<unsigned char>(t[pos_]);
            if (c == '[') {
                size_t close = t.find(']', pos_);
                if (close == std::string_view::npos) return set_error("Missing ']'");
                for (size_t k = pos_; k < close; ++k)
                    if (is_ctl(static_cast<unsigned char>(t[k])))
                        return set_error("Invalid character in brackets");
                pos_ = close + 1;
                continue;
            }
            if (!is_atom_char(c)) break;
            ++pos_;
        }
        if (pos_ == start) {
            if (pos_ < t.size()) {
                unsigned char c = static_cast<unsigned char>(t[pos_]);
                if (c == '{') return set_error("Literal marker not at the end of a line");
                if (c == ' ') return set_error("Unexpected space");
                return set_error("Invalid character in command");
            }
            return set_error("Missing argument");
        }
        if (pos_ < t.size()) {
            unsigned char c = static_cast<unsigned char>(t[pos_]);
            if (c != ' ' && c != ')') {
                if (c == '{') return set_error("Literal marker not at the end of a line");
                return set_error("Invalid character in atom");
            }
        }
        v.kind = Value::Kind::Atom;
        v.text = std::string(t.substr(start, pos_ - start));
        return true;
    }

    const std::vector<Piece>& pieces_;
    const Limits& limits_;
    size_t i_ = 0;
    size_t pos_ = 0;
    size_t count_ = 0;
};

}  // namespace

bool Value::is_nil() const {
    return kind == Kind::Atom && iequals(text, "NIL");
}

std::string Value::debug_string() const {
    switch (kind) {
        case Kind::Atom:
            return text;
        case Kind::String:
            return literal ? "{" + std::to_string(text.size()) + "}" + text : "\"" + text + "\"";
        case Kind::List: {
            std::string s = "(";
            for (size_t i = 0; i < list.size(); ++i) {
                if (i) s += ' ';
                s += list[i].debug_string();
            }
            return s + ")";
        }
    }
    return {};
}

std::optional<Command> parse_command(const std::vector<Piece>& pieces, const Limits& limits,
                                     std::string& tag, std::string& error) {
    tag = "*";
    if (pieces.empty() || pieces[0].literal) {
        error = "Empty command";
        return std::nullopt;
    }
    std::string_view first = pieces[0].text;
    size_t sp = first.find(' ');
    std::string_view t = first.substr(0, sp);
    if (t.empty()) {
        error = "Empty command line";
        return std::nullopt;
    }
    if (!valid_tag(t)) {
        error = "Invalid tag";
        return std::nullopt;
    }
    tag = std::string(t);
    if (sp == std::string_view::npos || sp + 1 >= first.size()) {
        error = "Missing command";
        return std::nullopt;
    }
    size_t name_end = first.find(' ', sp + 1);
    std::string_view name = first.substr(
        sp + 1, name_end == std::string_view::npos ? std::string_view::npos : name_end - sp - 1);
    if (name.empty() || name.size() > 32 || !std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' ||
                   (c >= '0' && c <= '9');
        })) {
        error = "Invalid command name";
        return std::nullopt;
    }
    Command cmd;
    cmd.tag = tag;
    cmd.name = upper(name);
    std::vector<Piece> rest = pieces;
    if (name_end == std::string_view::npos) {
        if (pieces.size() > 1) {
            error = "Literal where a command name was expected";
            return std::nullopt;
        }
        return cmd;
    }
    rest[0].text = first.substr(name_end + 1);
    if (rest[0].text.empty() && rest.size() == 1) {
        error = "Unexpected space at the end of the line";
        return std::nullopt;
    }
    Tokenizer tok(rest, limits);
    if (!tok.values(cmd.args, 0)) {
        error = tok.error;
        return std::nullopt;
    }
    return cmd;
}

// ---- CommandReader -----------------------------------------------------

std::string CommandReader::current_tag() const {
    std::string_view first = pieces_.empty() ? std::string_view(line_) : pieces_[0].text;
    std::string_view t = first.substr(0, first.find(' '));
    return valid_tag(t) ? std::string(t) : "*";
}

std::string CommandReader::current_name() const {
    std::string_view first = pieces_.empty() ? std::string_view(line_) : pieces_[0].text;
    size_t sp = first.find(' ');
    if (sp == std::string_view::npos) return {};
    first = first.substr(sp + 1);
    return upper(first.substr(0, first.find(' ')));
}

void CommandReader::reset() {
    state_ = State::Line;
    line_.clear();
    pieces_.clear();
    literal_left_ = 0;
    command_size_ = 0;
    discard_tail_.clear();
}

void CommandReader::fail(Event& ev, std::string text, std::string code, bool no) {
    ev.kind = Event::Kind::Error;
    ev.tag = current_tag();
    ev.text = std::move(text);
    ev.code = std::move(code);
    ev.reply_no = no;
}

void CommandReader::finish(Event& ev) {
    std::vector<Piece> views;
    views.reserve(pieces_.size());
    for (const auto& p : pieces_) views.push_back(Piece{p.text, p.literal});
    std::string tag, error;
    auto cmd = parse_command(views, limits_, tag, error);
    if (cmd) {
        ev.kind = Event::Kind::Command;
        ev.command = std::move(*cmd);
    } else {
        ev.kind = Event::Kind::Error;
        ev.tag = tag;
        ev.text = error;
    }
    reset();
}

// line_ holds a whole line (without CR LF). Returns true when an event is set.
bool CommandReader::line_complete(Event& ev) {
    if (pieces_.empty() && line_.empty()) {  // a stray empty line between commands
        reset();
        return false;
    }
    uint64_t n = 0;
    bool plus = false;
    size_t marker = literal_marker(line_, n, plus);
    if (marker == std::string_view::npos) {
        pieces_.push_back(Stored{std::move(line_), false});
        line_.clear();
        finish(ev);
        return true;
    }
    std::string name = current_name();
    bool append = name == "APPEND";
    size_t limit = append ? limits_.max_append_literal : limits_.max_literal;
    line_.resize(marker);
    pieces_.push_back(Stored{std::move(line_), false});
    line_.clear();
    if (n > limit || command_size_ + n > limits_.max_command) {
        if (append)
            fail(ev, "Message too large (APPENDLIMIT " + std::to_string(limit) + ")", "TOOBIG",
                 true);
        else
            fail(ev, "Literal too large (at most " + std::to_string(limit) + " bytes)", "TOOBIG");
        if (plus) {
            state_ = State::DiscardLiteral;
            literal_left_ = n;
            pieces_.clear();
        } else {
            reset();  // the client sends nothing more for this command
        }
        return true;
    }
    command_size_ += n;
    literal_left_ = n;
    pieces_.push_back(Stored{std::string(), true});
    pieces_.back().text.reserve(n);
    state_ = State::Literal;
    if (!plus) {
        ev.kind = Event::Kind::Continue;
        return true;
    }
    return false;
}

size_t CommandReader::feed(std::string_view data, Event& ev) {
    ev = Event{};
    size_t i = 0;
    while (i < data.size()) {
        switch (state_) {
            case State::Line: {
                size_t lf = data.find('\n', i);
                size_t end = lf == std::string_view::npos ? data.size() : lf;
                size_t room = limits_.max_line + 1 - line_.size();  // +1: a CR
                if (end - i > room) {
                    // Overlong: report once (with the tag, if it came), then drop the line.
                    line_.append(data.substr(i, std::min<size_t>(room, 128)));
                    fail(ev,
                         "Line too long (at most " + std::to_string(limits_.max_line) + " bytes)");
                    pieces_.clear();
                    line_.clear();
                    state_ = State::DiscardLine;
                    return i;
                }
                line_.append(data.substr(i, end - i));
                command_size_ += end - i;
                if (lf == std::string_view::npos) return data.size();
                i = lf + 1;
                if (!line_.empty() && line_.back() == '\r') line_.pop_back();
                if (command_size_ > limits_.max_command) {
                    fail(ev, "Command too large");
                    reset();
                    return i;
                }
                if (line_complete(ev)) return i;
                if (state_ == State::Literal && literal_left_ == 0) state_ = State::Line;
                break;
            }
            case State::Literal: {
                size_t take = std::min(literal_left_, data.size() - i);
                pieces_.back().text.append(data.substr(i, take));
                literal_left_ -= take;
                i += take;
                if (literal_left_ == 0) state_ = State::Line;
                break;
            }
            case State::DiscardLine: {
                size_t lf = data.find('\n', i);
                size_t end = lf == std::string_view::npos ? data.size() : lf;
                discard_tail_.append(data.substr(i, end - i));
                if (discard_tail_.size() > 40) discard_tail_.erase(0, discard_tail_.size() - 40);
                if (lf == std::string_view::npos) return data.size();
                i = lf + 1;
                if (!discard_tail_.empty() && discard_tail_.back() == '\r')
                    discard_tail_.pop_back();
                uint64_t n = 0;
                bool plus = false;
                if (literal_marker(discard_tail_, n, plus) != std::string_view::npos && plus) {
                    literal_left_ = n;
                    state_ = State::DiscardLiteral;
                } else {
                    reset();
                }
                discard_tail_.clear();
                break;
            }
            case State::DiscardLiteral: {
                size_t take = std::min<size_t>(literal_left_, data.size() - i);
                literal_left_ -= take;
                i += take;
                if (literal_left_ == 0) state_ = State::DiscardLine;
                break;
            }
        }
    }
    return i;
}

// ---- helpers -------------------------------------------------------------

bool SequenceSet::contains(uint32_t n, uint32_t star) const {
    for (const auto& r : ranges) {
        uint32_t a = r.lo == 0 ? star : r.lo;
        uint32_t b = r.hi == 0 ? star : r.hi;
        if (a > b) std::swap(a, b);
        if (n >= a && n <= b) return true;
    }
    return false;
}

std::string SequenceSet::to_string() const {
    std::string s;
    for (const auto& r : ranges) {
        if (!s.empty()) s += ',';
        s += r.lo == 0 ? "*" : std::to_string(r.lo);
        if (r.hi != r.lo) s += ":" + (r.hi == 0 ? std::string("*") : std::to_string(r.hi));
    }
    return s;
}

namespace {
bool parse_seq_number(std::string_view s, uint32_t& out) {
    if (s == "*") {
        out = 0;
        return true;
    }
    if (s.empty() || s[0] == '0' || s.size() > 10) return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > 0xffffffffu) return false;
    out = static_cast<uint32_t>(v);
    return true;
}
}  // namespace

std::optional<SequenceSet> parse_sequence_set(std::string_view s) {
    SequenceSet set;
    if (s.empty()) return std::nullopt;
    size_t start = 0;
    while (start <= s.size()) {
        size_t comma = s.find(',', start);
        if (comma == std::string_view::npos) comma = s.size();
        std::string_view item = s.substr(start, comma - start);
        size_t colon = item.find(':');
        SequenceSet::Range r{};
        if (colon == std::string_view::npos) {
            if (!parse_seq_number(item, r.lo)) return std::nullopt;
            r.hi = r.lo;
        } else {
            if (!parse_seq_number(item.substr(0, colon), r.lo) ||
                !parse_seq_number(item.substr(colon + 1), r.hi))
                return std::nullopt;
        }
        set.ranges.push_back(r);
        if (set.ranges.size() > 10000) return std::nullopt;
        start = comma + 1;
        if (comma == s.size()) break;
    }
    return set;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
        if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
        if (x != y) return false;
    }
    return true;
}

std::string quote_string(std::string_view s) {
    bool literal = s.size() > 1024;
    for (unsigned char c : s)
        if (c == '\r' || c == '\n' || c == 0 || c >= 0x80) literal = true;
    if (literal) return "{" + std::to_string(s.size()) + "}\r\n" + std::string(s);
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string quote_astring(std::string_view s) {
    bool atom = !s.empty() && !iequals(s, "NIL");
    for (unsigned char c : s)
        if (!is_atom_char(c) || c == '%' || c == '*' || c == ']' || c >= 0x80) atom = false;
    return atom ? std::string(s) : quote_string(s);
}

std::string quote_nstring(const std::optional<std::string>& s) {
    return s ? quote_string(*s) : std::string("NIL");
}

}  // namespace pbx::imap
