// imapd/parser: the IMAP command reader, fed whole and byte by byte, and the
// sequence-set and quoting helpers.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "imapd/parser.hpp"

using namespace pbx::imap;

namespace {

// What the reader produced, as text: "CMD tag NAME args", "CONT", "ERR tag text".
std::string describe(const Event& ev) {
    switch (ev.kind) {
        case Event::Kind::None:
            return "NONE";
        case Event::Kind::Continue:
            return "CONT";
        case Event::Kind::Command: {
            std::string s = "CMD " + ev.command.tag + " " + ev.command.name;
            for (const auto& a : ev.command.args) s += " " + a.debug_string();
            return s;
        }
        case Event::Kind::Error:
            return std::string(ev.reply_no ? "NO " : "ERR ") + ev.tag +
                   (ev.code.empty() ? "" : " [" + ev.code + "]");
    }
    return "?";
}

std::vector<std::string> run(std::string_view input, size_t chunk, Limits limits = {}) {
    CommandReader r(limits);
    std::vector<std::string> out;
    size_t pos = 0;
    std::string pending;  // bytes not yet consumed
    while (pos < input.size() || !pending.empty()) {
        if (pos < input.size()) {
            size_t n = std::min(chunk, input.size() - pos);
            pending.append(input.substr(pos, n));
            pos += n;
        }
        for (;;) {
            Event ev;
            size_t used = r.feed(pending, ev);
            pending.erase(0, used);
            if (ev.kind == Event::Kind::None) break;
            out.push_back(describe(ev));
        }
        if (pos >= input.size() && !pending.empty()) break;
    }
    return out;
}

struct Case {
    std::string_view input;
    std::vector<std::string> expect;
};

}  // namespace

TEST_CASE("imap parser: valid commands, whole and byte by byte") {
    const Case cases[] = {
        {"a1 NOOP\r\n", {"CMD a1 NOOP"}},
        {"a1 noop\n", {"CMD a1 NOOP"}},
        {"\r\na2 CAPABILITY\r\n", {"CMD a2 CAPABILITY"}},
        {"t LOGIN alice \"se\\\"cret\"\r\n", {"CMD t LOGIN alice \"se\"cret\""}},
        {"t LOGIN {5}\r\nalice {3}\r\nabc\r\n", {"CONT", "CONT", "CMD t LOGIN {5}alice {3}abc"}},
        {"t LOGIN {5+}\r\nalice {3+}\r\nabc\r\n", {"CMD t LOGIN {5}alice {3}abc"}},
        {"t LOGIN {0}\r\n {0+}\r\n\r\n", {"CONT", "CMD t LOGIN {0} {0}"}},
        {"f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n",
         {"CMD f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)"}},
        {"f UID FETCH 1,3:5 BODY[]\r\n", {"CMD f UID FETCH 1,3:5 BODY[]"}},
        {"s STORE 1 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n",
         {"CMD s STORE 1 +FLAGS.SILENT (\\Seen \\Deleted $Junk)"}},
        {"l LIST \"\" %\r\n", {"CMD l LIST \"\" %"}},
        {"l LIST \"\" *\r\n", {"CMD l LIST \"\" *"}},
        {"a APPEND INBOX (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {3}\r\nabc\r\n",
         {"CONT", "CMD a APPEND INBOX (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {3}abc"}},
        {"n X ((a (b)) ())\r\n", {"CMD n X ((a (b)) ())"}},
        {"p PERMANENT \\*\r\n", {"CMD p PERMANENT \\*"}},
        {"a1 NOOP\r\na2 NOOP\r\n", {"CMD a1 NOOP", "CMD a2 NOOP"}},
        {"q X \"caf\xc3\xa9\"\r\n", {"CMD q X \"caf\xc3\xa9\""}},
        {"l LITERAL {4}\r\na\r\nb\r\n", {"CONT", "CMD l LITERAL {4}a\r\nb"}},
    };
    for (const auto& c : cases) {
        INFO(std::string(c.input));
        CHECK(run(c.input, c.input.size()) == c.expect);
        CHECK(run(c.input, 1) == c.expect);
        CHECK(run(c.input, 3) == c.expect);
    }
}

TEST_CASE("imap parser: invalid commands get an error and the reader goes on") {
    const Case cases[] = {
        {"\r\n", {}},
        {" NOOP\r\n", {"ERR *"}},
        {"a1\r\n", {"ERR a1"}},
        {"a1 \r\n", {"ERR a1"}},
        {"a+ NOOP\r\n", {"ERR *"}},
        {"* NOOP\r\n", {"ERR *"}},
        {"a1 NO$OP\r\n", {"ERR a1"}},
        {"a1 X (a\r\n", {"ERR a1"}},
        {"a1 X a)\r\n", {"ERR a1"}},
        {"a1 X \"abc\r\n", {"ERR a1"}},
        {"a1 X \"a\\bc\"\r\n", {"ERR a1"}},
        {"a1 X a  b\r\n", {"ERR a1"}},
        {"a1 X a \r\n", {"ERR a1"}},
        {"a1 X ( a)\r\n", {"ERR a1"}},
        {"a1 X {3}x\r\n", {"ERR a1"}},
        {"a1 X a{3}\r\nabc\r\n", {"CONT", "ERR a1"}},
        {"a1 X BODY[HEADER\r\n", {"ERR a1"}},
        {"a1 X a\"b\r\n", {"ERR a1"}},
        {"a1 X a\x01 b\r\n", {"ERR a1"}},
        // After an error the next command is read normally.
        {"a1 X (\r\na2 NOOP\r\n", {"ERR a1", "CMD a2 NOOP"}},
    };
    for (const auto& c : cases) {
        INFO(std::string(c.input));
        CHECK(run(c.input, c.input.size()) == c.expect);
        CHECK(run(c.input, 1) == c.expect);
    }
}

TEST_CASE("imap parser: limits") {
    Limits l;
    l.max_line = 40;
    l.max_literal = 10;
    l.max_append_literal = 20;
    l.max_command = 100;
    l.max_depth = 3;
    const Case cases[] = {
        // A refused synchronizing literal ends the command: the client waits.
        {"a1 LOGIN {11}\r\na2 NOOP\r\n", {"ERR a1 [TOOBIG]", "CMD a2 NOOP"}},
        // A refused non-synchronizing literal is read and dropped.
        {"a1 LOGIN {11+}\r\n01234567890 x\r\na2 NOOP\r\n", {"ERR a1 [TOOBIG]", "CMD a2 NOOP"}},
        {"a1 LOGIN {11+}\r\n01234567890 {2+}\r\nxx\r\na2 NOOP\r\n",
         {"ERR a1 [TOOBIG]", "CMD a2 NOOP"}},
        // APPEND: its own limit, and NO [TOOBIG] (RFC 7889).
        {"a1 APPEND INBOX {20}\r\n01234567890123456789\r\n",
         {"CONT", "CMD a1 APPEND INBOX {20}01234567890123456789"}},
        {"a1 APPEND INBOX {21}\r\na2 NOOP\r\n", {"NO a1 [TOOBIG]", "CMD a2 NOOP"}},
        // Overlong lines are dropped up to their end.
        {"a1 NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\na2 NOOP\r\n",
         {"ERR a1", "CMD a2 NOOP"}},
        {"a1 NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx "
         "{5+}\r\nabcde\r\na2 NOOP\r\n",
         {"ERR a1", "CMD a2 NOOP"}},
        {"a1 X (((a)))\r\n", {"CMD a1 X (((a)))"}},
        {"a1 X ((((a))))\r\n", {"ERR a1"}},
        {"a1 X {10}\r\n0123456789 {10}\r\n0123456789 {10}\r\n0123456789 {10}\r\n0123456789 "
         "{10}\r\n0123456789 {10}\r\n0123456789\r\na2 NOOP\r\n",
         {"CONT", "CONT", "CONT", "CONT", "CONT", "CONT", "ERR a1", "CMD a2 NOOP"}},
        // The command limit also counts the line of a literal marker.
        {"a1 X {10}\r\n0123456789 {10}\r\n0123456789 {10}\r\n0123456789 {10}\r\n0123456789 "
         "{10}\r\n0123456789 {10}\r\n0123456789 {90}\r\na2 NOOP\r\n",
         {"CONT", "CONT", "CONT", "CONT", "CONT", "CONT", "ERR a1", "CMD a2 NOOP"}},
    };
    for (const auto& c : cases) {
        INFO(std::string(c.input));
        CHECK(run(c.input, c.input.size(), l) == c.expect);
        CHECK(run(c.input, 1, l) == c.expect);
        CHECK(run(c.input, 7, l) == c.expect);
    }
}

TEST_CASE("imap sequence sets") {
    struct S {
        std::string_view text;
        bool ok;
        std::string_view canonical;
    };
    const S cases[] = {
        {"1", true, "1"},
        {"1:3", true, "1:3"},
        {"*", true, "*"},
        {"1:*", true, "1:*"},
        {"3,1:2,*", true, "3,1:2,*"},
        {"", false, ""},
        {"0", false, ""},
        {"1:", false, ""},
        {",1", false, ""},
        {"1,", false, ""},
        {"a", false, ""},
        {"4294967296", false, ""},
        {"4294967295", true, "4294967295"},
        {"01", false, ""},
        {"1::2", false, ""},
    };
    for (const auto& c : cases) {
        INFO(std::string(c.text));
        auto s = parse_sequence_set(c.text);
        REQUIRE(s.has_value() == c.ok);
        if (c.ok) CHECK(s->to_string() == c.canonical);
    }
    auto s = parse_sequence_set("2:4,7:*");
    REQUIRE(s);
    CHECK(!s->contains(1, 10));
    CHECK(s->contains(2, 10));
    CHECK(s->contains(4, 10));
    CHECK(!s->contains(5, 10));
    CHECK(s->contains(7, 10));
    CHECK(s->contains(10, 10));
    CHECK(!s->contains(11, 10));
    auto r = parse_sequence_set("5:2");
    REQUIRE(r);
    CHECK(r->contains(3, 10));
    auto star = parse_sequence_set("*:3");
    REQUIRE(star);
    CHECK(star->contains(2, 2));  // "*:3" with * = 2 is 2:3
}

TEST_CASE("imap response quoting") {
    CHECK(quote_astring("INBOX") == "INBOX");
    CHECK(quote_astring("") == "\"\"");
    CHECK(quote_astring("NIL") == "\"NIL\"");
    CHECK(quote_astring("a b") == "\"a b\"");
    CHECK(quote_astring("a\"b") == "\"a\\\"b\"");
    CHECK(quote_string("x\r\ny") == "{4}\r\nx\r\ny");
    CHECK(quote_nstring(std::nullopt) == "NIL");
}
