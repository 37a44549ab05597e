// The IMAP4rev1 command reader (RFC 3501 §9 grammar, RFC 7888 LITERAL+): an
// incremental, pure state machine. Bytes go in; whole commands, requests for
// a literal continuation and protocol errors come out. It never does I/O and
// never reads past the input it is given.
//
//   CommandReader r(limits);
//   size_t used = r.feed(bytes, ev);   // consumes bytes until one event
//   switch (ev.kind) {
//     case Event::None:         // everything consumed, need more input
//     case Event::Continue:     // a synchronizing literal {N}: send "+ ..."
//     case Event::Command:      // ev.command is complete (literals inline)
//     case Event::Error:        // ev.tag / ev.text / ev.code: reply BAD or NO
//   }
//
// A command is framed as lines ending in CRLF (a bare LF is accepted), where
// a line that ends in a literal marker "{N}" or "{N+}" continues after N
// bytes of literal data. The reader enforces the Limits: line length, literal
// size (APPEND gets its own, larger limit: APPENDLIMIT), total command size,
// parenthesis nesting depth and the number of values. A refused synchronizing
// literal ends the command at once (the client sends nothing until it gets
// "+"); a refused non-synchronizing literal is read and thrown away, as is
// the rest of an overlong line, so that the session stays in step with the
// client and survives.
//
// The tokens (Value): atoms (which may hold "[...]" with spaces and
// parentheses inside, as in BODY[HEADER.FIELDS (From)]<0.10>, and the list
// wildcards % and *), strings (quoted or literal; Value::literal says which),
// and parenthesized lists. NIL stays an atom; what an argument means is the
// command's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pbx::imap {

struct Value {
    enum class Kind { Atom, String, List };
    Kind kind = Kind::Atom;
    std::string text;         // Atom, String
    std::vector<Value> list;  // List
    bool literal = false;     // String: came as a literal

    bool is_atom() const { return kind == Kind::Atom; }
    bool is_string() const { return kind == Kind::String; }
    bool is_list() const { return kind == Kind::List; }
    // An astring (RFC 3501): an atom or a string.
    bool is_astring() const { return kind != Kind::List; }
    bool is_nil() const;
    // "ATOM", "\"quoted\"", "{3}", "(...)": for tests and logs.
    std::string debug_string() const;
};

struct Piece {
    std::string_view text;
    bool literal;
};

struct Command {
    std::string tag;
    std::string name;  // upper case
    std::vector<Value> args;
};

struct Limits {
    size_t max_line = 64 * 1024;            // one line, without its CRLF
    size_t max_literal = 64 * 1024;         // a literal outside APPEND
    size_t max_append_literal = 50u << 20;  // a literal in APPEND (APPENDLIMIT)
    size_t max_command = 51u << 20;         // lines and literals of one command
    size_t max_depth = 16;                  // nested parentheses
    size_t max_values = 20000;              // tokens in one command
};

struct Event {
    enum class Kind { None, Continue, Command, Error };
    Kind kind = Kind::None;
    Command command;        // Command
    std::string tag;        // Error: the tag if one was read, else "*"
    std::string text;       // Error: why, for the client
    std::string code;       // Error: response code without brackets, e.g. "TOOBIG"
    bool reply_no = false;  // Error: answer NO (e.g. APPEND too large), else BAD
    bool fatal = false;     // Error: the session should say BYE and close
};

class CommandReader {
  public:
    explicit CommandReader(Limits limits = {}) : limits_(limits) {}

    // Consumes a prefix of `data`, stopping after the first event; returns
    // the number of bytes consumed. ev.kind == None means all of `data` was
    // consumed and no event is complete yet.
    size_t feed(std::string_view data, Event& ev);

    // True between commands (nothing of a next command buffered).
    bool idle() const { return state_ == State::Line && line_.empty() && pieces_.empty(); }
    const Limits& limits() const { return limits_; }
    void set_limits(const Limits& l) { limits_ = l; }

  private:
    enum class State { Line, Literal, DiscardLine, DiscardLiteral };
    struct Stored {
        std::string text;
        bool literal;
    };
    bool line_complete(Event& ev);
    void finish(Event& ev);
    void fail(Event& ev, std::string text, std::string code = {}, bool no = false);
    void reset();
    std::string current_tag() const;
    std::string current_name() const;

    Limits limits_;
    State state_ = State::Line;
    std::string line_;
    std::vector<Stored> pieces_;  // lines and literals of the command so far
    size_t literal_left_ = 0;
    size_t command_size_ = 0;
    std::string discard_tail_;  // last bytes of a discarded line (literal marker)
};

// Parses the pieces of one framed command into a Command. Exposed for tests
// and the fuzzer: text pieces alternate with literal pieces (a text piece is
// a line without its CRLF and without its trailing literal marker). Depth and
// value count limited as Limits says. On error, returns nullopt and sets
// `error` (and `tag` when the tag was read).
std::optional<Command> parse_command(const std::vector<Piece>& pieces, const Limits& limits,
                                     std::string& tag, std::string& error);

// ---- argument helpers --------------------------------------------------

// RFC 3501 sequence-set: "1:3,5,7:*"; '*' is written as 0 here and resolved
// against the largest number in use by SequenceSet::contains.
struct SequenceSet {
    struct Range {
        uint32_t lo, hi;  // 0 = '*'
    };
    std::vector<Range> ranges;
    // `star`: the value '*' stands for (the largest number in use); `n` is
    // in the set when some range, ordered, holds it.
    bool contains(uint32_t n, uint32_t star) const;
    std::string to_string() const;
};
std::optional<SequenceSet> parse_sequence_set(std::string_view s);

// The upper-case copy of an ASCII string.
std::string upper(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// Quoting for responses: a quoted string when possible, else a literal.
std::string quote_astring(std::string_view s);
std::string quote_string(std::string_view s);  // always a string (quoted or literal)
std::string quote_nstring(const std::optional<std::string>& s);

}  // namespace pbx::imap
