// Tables for the SMTP parsers: paths, parameters, HELO names, xtext, UTF-8,
// and the two readers (command lines, message text) fed whole and byte by byte.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/smtp/address.hpp"
#include "common/smtp/data_reader.hpp"
#include "common/smtp/line_reader.hpp"
#include "common/smtp/parser.hpp"

using namespace pbx::smtp;

namespace {

struct ValidPath {
    std::string text;
    PathOptions options;
    std::string local, domain;
    size_t consumed;
    bool utf8;
};

struct InvalidPath {
    std::string text;
    PathOptions options;
    AddressError error;
};

const PathOptions kPlain{};
const PathOptions kNull{.allow_null = true};
const PathOptions kPostmaster{.allow_postmaster = true};

}  // namespace

TEST_CASE("smtp: valid paths", "[smtp][address]") {
    const std::string long_local(64, 'a');
    const std::string label(63, 'd');
    // 252 octets: "<u@" + domain + ">" is the longest path, 256 octets
    const std::string long_domain = label + "." + label + "." + label + "." + std::string(60, 'e');
    const std::vector<ValidPath> cases = {
        {"<user@example.com>", kPlain, "user", "example.com", 18, false},
        {"<user@example.com> SIZE=10", kPlain, "user", "example.com", 18, false},
        {"<>", kNull, "", "", 2, false},
        {"<postmaster>", kPostmaster, "postmaster", "", 12, false},
        {"<PostMaster>", kPostmaster, "PostMaster", "", 12, false},
        {"<first.last+tag@sub.example.com>", kPlain, "first.last+tag", "sub.example.com", 32,
         false},
        {"<!#$%&'*+-/=?^_`{|}~@x.org>", kPlain, "!#$%&'*+-/=?^_`{|}~", "x.org", 27, false},
        {"<\"john doe\"@example.com>", kPlain, "\"john doe\"", "example.com", 24, false},
        {"<\"a\\\"b\"@example.com>", kPlain, "\"a\\\"b\"", "example.com", 20, false},
        {"<\"user@evil.org\"@example.com>", kPlain, "\"user@evil.org\"", "example.com", 29, false},
        {"<\"\"@example.com>", kPlain, "\"\"", "example.com", 16, false},
        {"<user@[192.0.2.1]>", kPlain, "user", "[192.0.2.1]", 18, false},
        {"<user@[IPv6:2001:db8::1]>", kPlain, "user", "[IPv6:2001:db8::1]", 25, false},
        {"<user@[x-tag:abc]>", kPlain, "user", "[x-tag:abc]", 18, false},
        {"<@relay.example:user@example.com>", kPlain, "user", "example.com", 33, false},
        {"<@a.example,@b.example:user@c.example>", kPlain, "user", "c.example", 38, false},
        {"<u@x>", kPlain, "u", "x", 5, false},
        {"<u@1.2.3.4>", kPlain, "u", "1.2.3.4", 11, false},  // a domain of digits
        {"<" + long_local + "@x.org>", kPlain, long_local, "x.org", 72, false},
        {"<u@" + long_domain + ">", kPlain, "u", long_domain, 256, false},
        {"<j\xC3\xBCrgen@example.com>", kPlain, "j\xC3\xBCrgen", "example.com", 21, true},
        {"<u@\xE4\xBE\x8B\xE3\x81\x88.jp>", kPlain, "u", "\xE4\xBE\x8B\xE3\x81\x88.jp", 13, true},
        {"<\"\xC3\xA9 x\"@example.com>", kPlain, "\"\xC3\xA9 x\"", "example.com", 20, true},
    };
    for (const auto& c : cases) {
        INFO("path: " << c.text);
        auto r = parse_path(c.text, c.options);
        REQUIRE(r.ok());
        CHECK(r->address.local == c.local);
        CHECK(r->address.domain == c.domain);
        CHECK(r->consumed == c.consumed);
        CHECK(r->utf8 == c.utf8);
    }
}

TEST_CASE("smtp: invalid paths", "[smtp][address]") {
    const std::string label(63, 'd');
    const std::string domain_256 = label + "." + label + "." + label + "." + std::string(64, 'e');
    const std::string domain_250 = label + "." + label + "." + label + "." + std::string(58, 'e');
    const std::vector<InvalidPath> cases = {
        {"", kPlain, AddressError::Syntax},
        {"user@example.com", kPlain, AddressError::Syntax},
        {"<user@example.com", kPlain, AddressError::Syntax},
        {"<>", kPlain, AddressError::Syntax},
        {"<postmaster>", kPlain, AddressError::Syntax},
        {"<user>", kPostmaster, AddressError::Syntax},
        {"<\"postmaster\">", kPostmaster, AddressError::Syntax},
        {"<@example.com>", kPlain, AddressError::Syntax},
        {"<user@>", kPlain, AddressError::Syntax},
        {"<user@@example.com>", kPlain, AddressError::Syntax},
        {"<user@example.com.>", kPlain, AddressError::Syntax},  // trailing dot
        {"<user@.example.com>", kPlain, AddressError::Syntax},
        {"<user@exa..mple.com>", kPlain, AddressError::Syntax},
        {"<user@-example.com>", kPlain, AddressError::Syntax},
        {"<user@example-.com>", kPlain, AddressError::Syntax},
        {"<user@exa_mple.com>", kPlain, AddressError::Syntax},
        {"<.user@example.com>", kPlain, AddressError::Syntax},
        {"<user.@example.com>", kPlain, AddressError::Syntax},
        {"<us..er@example.com>", kPlain, AddressError::Syntax},
        {"<us er@example.com>", kPlain, AddressError::Syntax},
        {"<user@exa mple.com>", kPlain, AddressError::Syntax},
        {"<\"unterminated@example.com>", kPlain, AddressError::Syntax},
        {"<\"a\tb\"@example.com>", kPlain, AddressError::Syntax},
        {"<\"a\\\x01\"@example.com>", kPlain, AddressError::Syntax},
        {std::string("<a\0b@example.com>", 17), kPlain, AddressError::Syntax},
        {"<user@[300.1.1.1]>", kPlain, AddressError::Syntax},
        {"<user@[1.2.3]>", kPlain, AddressError::Syntax},
        {"<user@[1.2.3.4.5]>", kPlain, AddressError::Syntax},
        {"<user@[IPv6:zz::1]>", kPlain, AddressError::Syntax},
        {"<user@[IPv6:1::2::3]>", kPlain, AddressError::Syntax},
        {"<user@[192.0.2.1>", kPlain, AddressError::Syntax},
        {"<user@[]>", kPlain, AddressError::Syntax},
        {"<user@[tag:]>", kPlain, AddressError::Syntax},
        {"<@a.example:>", kPlain, AddressError::Syntax},
        {"<@a.example,b.example:u@c.example>", kPlain, AddressError::Syntax},
        {"<@a..example:u@c.example>", kPlain, AddressError::Syntax},
        {"<@:u@c.example>", kPlain, AddressError::Syntax},
        {"<u@c.example>>", kPlain, AddressError::Syntax},               // parses; ">" left over
        {"<j\xC3\x28rgen@example.com>", kPlain, AddressError::Syntax},  // bad UTF-8
        {"<j\xC0\xAFrgen@example.com>", kPlain, AddressError::Syntax},  // overlong
        {"<\xED\xA0\x80@example.com>", kPlain, AddressError::Syntax},   // surrogate
        {"<" + std::string(65, 'a') + "@x.org>", kPlain, AddressError::LocalPartTooLong},
        {"<u@" + domain_256 + ">", kPlain, AddressError::DomainTooLong},
        {"<" + std::string(10, 'a') + "@" + domain_250 + ">", kPlain, AddressError::PathTooLong},
    };
    for (const auto& c : cases) {
        INFO("path: " << c.text);
        auto r = parse_path(c.text, c.options);
        if (c.text == "<u@c.example>>") {
            REQUIRE(r.ok());  // the caller sees the stray ">" as a bad parameter
            CHECK(r->consumed == 13);
            continue;
        }
        REQUIRE_FALSE(r.ok());
        CHECK(r.error() == c.error);
    }
}

TEST_CASE("smtp: HELO names", "[smtp][address]") {
    for (const char* ok : {"client.example.org", "localhost", "my_host", "DESKTOP-1A2B",
                           "[192.0.2.1]", "[IPv6:::1]", "a.b"}) {
        INFO(ok);
        CHECK(valid_helo(ok));
    }
    for (const char* bad :
         {"", "a..b", ".a", "a.", "a b", "[1.2.3]", "host!", "h\xC3\xA9", "a\tb", "[::1]"}) {
        INFO(bad);
        CHECK_FALSE(valid_helo(bad));
    }
    CHECK_FALSE(valid_helo(std::string(256, 'a')));
}

TEST_CASE("smtp: xtext and UTF-8", "[smtp][address]") {
    CHECK(*xtext_decode("abc+2Bdef") == "abc+def");
    CHECK(*xtext_decode("rfc822+3Bx") == "rfc822;x");
    CHECK(*xtext_decode("") == "");
    for (const char* bad : {"a+2b", "a+2", "a+", "a=b", "a b", "a\x7F", "\xC3\xA9"}) {
        INFO(bad);
        CHECK_FALSE(xtext_decode(bad).ok());
    }
    CHECK(xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d");
    CHECK(*xtext_decode(xtext_encode(std::string("\0\r\n\xff", 4))) ==
          std::string("\0\r\n\xff", 4));

    CHECK(valid_utf8("plain"));
    CHECK(valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
    for (const char* bad : {"\x80", "\xC3", "\xC1\xBF", "\xE0\x80\xAF", "\xED\xA0\x80",
                            "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80", "\xC3\x28"}) {
        INFO(bad);
        CHECK_FALSE(valid_utf8(bad));
    }
}

TEST_CASE("smtp: MAIL arguments", "[smtp][parser]") {
    const MailOptions esmtp{true, false};
    auto r =
        parse_mail("FROM:<a@b.org> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=id+2B1 SMTPUTF8", esmtp);
    REQUIRE(r.ok());
    CHECK(r->from.str() == "a@b.org");
    CHECK(r->size == 1000u);
    CHECK(r->body == BodyType::EightBitMime);
    CHECK(r->ret == DsnRet::Hdrs);
    CHECK(r->envid == "id+1");
    CHECK(r->smtputf8);

    r = parse_mail("from: <>", esmtp);  // lower case, space after the colon
    REQUIRE(r.ok());
    CHECK(r->from.is_null());
    r = parse_mail("FROM:<a@b.org>  body=7bit ret=full", esmtp);
    REQUIRE(r.ok());
    CHECK(r->body == BodyType::SevenBit);
    CHECK(r->ret == DsnRet::Full);
    r = parse_mail("FROM:<a@b.org> AUTH=<>", MailOptions{true, true});
    REQUIRE(r.ok());
    CHECK(*r->auth == "<>");
    r = parse_mail("FROM:<\xC3\xA9@b.org> SMTPUTF8", esmtp);
    REQUIRE(r.ok());

    struct Bad {
        std::string args;
        MailOptions options;
        ArgError error;
    };
    const std::vector<Bad> bad = {
        {"FROM:a@b.org", esmtp, ArgError::Syntax},
        {"TO:<a@b.org>", esmtp, ArgError::Syntax},
        {"FROM:", esmtp, ArgError::Syntax},
        {"FROM<a@b.org>", esmtp, ArgError::Syntax},
        {"FROM:<a@@b.org>", esmtp, ArgError::BadAddress},
        {"FROM:<a@b.org>SIZE=1", esmtp, ArgError::Syntax},
        {"FROM:<a@b.org> SIZE=abc", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> SIZE=", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> SIZE", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> SIZE=123456789012345678901", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> SIZE=1 SIZE=2", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> BODY=BINARYMIME", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> RET=BOTH", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> RET=FULL RET=HDRS", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> ENVID=a+zz", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> ENVID=", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> ENVID=" + std::string(101, 'x'), esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> SMTPUTF8=yes", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> AUTH=<>", esmtp, ArgError::BadParameter},  // AUTH not offered
        {"FROM:<a@b.org> X-FOO=1", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> =1", esmtp, ArgError::BadParameter},
        {"FROM:<a@b.org> SIZE=10", MailOptions{false, false}, ArgError::BadParameter},
        {"FROM:<a@b.org> >", esmtp, ArgError::BadParameter},
        {"FROM:<\xC3\xA9@b.org>", esmtp, ArgError::Utf8NotAllowed},
        {"FROM:<a@b.org> ENVID=\xC3\xA9", esmtp, ArgError::BadParameter},
        {"FROM:<" + std::string(65, 'x') + "@b.org>", esmtp, ArgError::LocalPartTooLong},
    };
    for (const auto& b : bad) {
        INFO("MAIL " << b.args);
        auto res = parse_mail(b.args, b.options);
        REQUIRE_FALSE(res.ok());
        CHECK(res.error().kind == b.error);
    }
}

TEST_CASE("smtp: RCPT arguments and DSN", "[smtp][parser]") {
    const RcptOptions esmtp{true, false};
    auto r =
        parse_rcpt("TO:<a@b.org> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;a+2Bx@b.org", esmtp);
    REQUIRE(r.ok());
    CHECK(r->notify == (kNotifySuccess | kNotifyFailure | kNotifyDelay));
    CHECK(r->orcpt_type == "rfc822");
    CHECK(r->orcpt == "a+x@b.org");
    r = parse_rcpt("TO:<postmaster> NOTIFY=never", esmtp);
    REQUIRE(r.ok());
    CHECK(r->to.str() == "postmaster");
    CHECK(r->notify == kNotifyNever);
    r = parse_rcpt("TO:<\xC3\xA9@b.org> ORCPT=utf-8;\xC3\xA9@b.org", RcptOptions{true, true});
    REQUIRE(r.ok());
    CHECK(r->orcpt == "\xC3\xA9@b.org");

    struct Bad {
        std::string args;
        RcptOptions options;
        ArgError error;
    };
    const std::vector<Bad> bad = {
        {"TO:a@b.org", esmtp, ArgError::Syntax},
        {"FROM:<a@b.org>", esmtp, ArgError::Syntax},
        {"TO:<>", esmtp, ArgError::BadAddress},
        {"TO:<a@b.org> NOTIFY=NEVER,SUCCESS", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> NOTIFY=SUCCESS,SUCCESS", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> NOTIFY=SOMETIMES", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> NOTIFY=", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> NOTIFY=SUCCESS,", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> ORCPT=a@b.org", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> ORCPT=;a@b.org", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> ORCPT=rfc822;", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> ORCPT=rfc822;a+0Ab", esmtp, ArgError::BadParameter},    // decodes to LF
        {"TO:<a@b.org> ORCPT=utf-8;\xC3\xA9", esmtp, ArgError::BadParameter},  // no SMTPUTF8
        {"TO:<a@b.org> SIZE=1", esmtp, ArgError::BadParameter},
        {"TO:<a@b.org> NOTIFY=NEVER", RcptOptions{false, false}, ArgError::BadParameter},
        {"TO:<\xC3\xA9@b.org>", esmtp, ArgError::Utf8NotAllowed},
    };
    for (const auto& b : bad) {
        INFO("RCPT " << b.args);
        auto res = parse_rcpt(b.args, b.options);
        REQUIRE_FALSE(res.ok());
        CHECK(res.error().kind == b.error);
    }
    std::string long_orcpt = "TO:<a@b.org> ORCPT=rfc822;" + std::string(495, 'x');
    CHECK_FALSE(parse_rcpt(long_orcpt, esmtp).ok());
}

TEST_CASE("smtp: BDAT, AUTH and command splitting", "[smtp][parser]") {
    CHECK(parse_bdat("0")->size == 0);
    CHECK(parse_bdat("123 LAST")->last);
    CHECK(parse_bdat("123 last")->size == 123);
    CHECK(parse_bdat("9999999999999999999")->size == 9999999999999999999ull);
    for (const char* bad :
         {"", "LAST", "-1", "1 2", "1 LASTX", "1  LAST", "99999999999999999999", "0x10", " 1"}) {
        INFO(bad);
        CHECK_FALSE(parse_bdat(bad).ok());
    }
    auto a = parse_auth("PLAIN dGVzdA==");
    REQUIRE(a.ok());
    CHECK(a->mechanism == "PLAIN");
    CHECK(*a->initial_response == "dGVzdA==");
    CHECK_FALSE(parse_auth("PLAIN")->initial_response);
    CHECK_FALSE(parse_auth("").ok());
    CHECK_FALSE(parse_auth("PLAIN a b").ok());

    auto cl = split_command("MAIL FROM:<a@b>  ");
    CHECK(cl.verb == "MAIL");
    CHECK(cl.args == "FROM:<a@b>");
    cl = split_command("QUIT");
    CHECK(cl.verb == "QUIT");
    CHECK(cl.args.empty());
    CHECK(has_control_characters(std::string("NO\0OP", 5)));
    CHECK(has_control_characters("NOOP\t"));
    CHECK_FALSE(has_control_characters("MAIL FROM:<\xC3\xA9@b.org>"));
}

// ---- the command line reader -----------------------------------------------

namespace {

// Runs a LineReader over `input`, whole or byte by byte, and renders every
// non-NeedMore result as "L:<line>", "long", "lf", "cr" ("Discarded" is
// silent); the buffer is managed like the engine does.
std::vector<std::string> read_lines(std::string_view input, size_t limit, bool bytewise) {
    LineReader reader;
    std::string buffer;
    std::vector<std::string> out;
    auto pump = [&] {
        while (true) {
            LineResult r = reader.next(buffer, limit);
            if (r.status == LineStatus::NeedMore) return;
            REQUIRE(r.consumed > 0);
            REQUIRE(r.consumed <= buffer.size());
            switch (r.status) {
                case LineStatus::Line:
                    out.push_back("L:" + std::string(r.line));
                    break;
                case LineStatus::TooLong:
                    out.push_back("long");
                    break;
                case LineStatus::BareLf:
                    out.push_back("lf");
                    break;
                case LineStatus::BareCr:
                    out.push_back("cr");
                    break;
                default:
                    break;
            }
            buffer.erase(0, r.consumed);
        }
    };
    if (bytewise) {
        for (char c : input) {
            buffer += c;
            pump();
        }
    } else {
        buffer = input;
        pump();
    }
    return out;
}

}  // namespace

TEST_CASE("smtp: command line reader", "[smtp][reader]") {
    struct Case {
        std::string input;
        size_t limit;
        std::vector<std::string> expected;
    };
    const std::string max_line = std::string(14, 'x') + "\r\n";  // 16 with CRLF
    const std::vector<Case> cases = {
        {"NOOP\r\n", 16, {"L:NOOP"}},
        {"NOOP\r\nQUIT\r\n", 16, {"L:NOOP", "L:QUIT"}},
        {"\r\n", 16, {"L:"}},
        {"NOOP", 16, {}},
        {"NOOP\r", 16, {}},
        {max_line, 16, {"L:" + std::string(14, 'x')}},
        {std::string(15, 'x') + "\r\nNOOP\r\n", 16, {"long", "L:NOOP"}},
        {std::string(40, 'x') + "\r\nNOOP\r\n", 16, {"long", "L:NOOP"}},
        {std::string(15, 'x') + "\r", 16, {"long"}},
        {std::string(40, 'x') + "\nMAIL\r\nNOOP\r\n", 16, {"long", "lf", "L:NOOP"}},
        {"NOOP\nMAIL FROM:<a@b>\r\nQUIT\r\n", 64, {"lf", "L:QUIT"}},
        {"NOOP\nA\nB\r\nQUIT\r\n", 64, {"lf", "lf", "L:QUIT"}},
        {"\nQUIT\r\n", 64, {"lf"}},
        {"\n\r\nQUIT\r\n", 64, {"lf", "L:QUIT"}},
        {"NOOP\rMAIL FROM:<a@b>\r\nQUIT\r\n", 64, {"cr", "L:QUIT"}},
        {"NOOP\r\r\nQUIT\r\n", 64, {"cr", "L:QUIT"}},
        {"\rQUIT\r\n", 64, {"cr"}},
        {"DATA\r\n.\n", 64, {"L:DATA", "lf"}},
    };
    for (const auto& c : cases) {
        INFO("input: " << c.input);
        CHECK(read_lines(c.input, c.limit, false) == c.expected);
        CHECK(read_lines(c.input, c.limit, true) == c.expected);
    }
}

// ---- the message text reader -----------------------------------------------

namespace {

struct DataResult {
    std::string text;
    size_t consumed = 0;
    bool done = false;
    uint8_t problems = 0;
    bool operator==(const DataResult&) const = default;
};

DataResult read_data(std::string_view input, DataReader::Mode mode, size_t line_limit,
                     uint64_t size_limit, bool bytewise) {
    DataReader reader(mode, line_limit, size_limit);
    DataResult r;
    if (bytewise) {
        for (size_t i = 0; i < input.size() && !reader.done(); ++i) {
            r.consumed += reader.feed(input.substr(i, 1), r.text);
        }
    } else {
        r.consumed = reader.feed(input, r.text);
    }
    r.done = reader.done();
    r.problems = reader.problems();
    return r;
}

}  // namespace

TEST_CASE("smtp: DATA reader, dot mode", "[smtp][reader]") {
    struct Case {
        std::string input;
        DataResult expected;
    };
    const std::string tail = "MAIL FROM:<evil@x.org>\r\n";
    const std::vector<Case> cases = {
        {".\r\n", {"", 3, true, 0}},
        {"a\r\n.\r\n", {"a\r\n", 6, true, 0}},
        {"a\r\n.\r\n" + tail, {"a\r\n", 6, true, 0}},
        {"..\r\n.\r\n", {".\r\n", 7, true, 0}},
        {"..x\r\n.y\r\n.\r\n", {".x\r\ny\r\n", 12, true, 0}},
        {"a\r\n..\r\n\r\n.\r\n", {"a\r\n.\r\n\r\n", 12, true, 0}},
        {"a\r\n", {"a\r\n", 3, false, 0}},
        {"a\r\n.", {"a\r\n", 4, false, 0}},
        {"a\r\n.\r", {"a\r\n", 5, false, 0}},
        // smuggling variants: none of them ends the message
        {"a\n.\n" + tail, {"a", 4 + tail.size(), false, kProblemBareLf}},
        {"a\r.\r" + tail, {"a", 4 + tail.size(), false, kProblemBareCr}},
        {"a\r\n.\n" + tail, {"a\r\n", 5 + tail.size(), false, kProblemBareLf}},
        {"a\n.\r\n" + tail, {"a", 5 + tail.size(), false, kProblemBareLf}},
        {"a\r.\r\n" + tail, {"a", 5 + tail.size(), false, kProblemBareCr}},
        {"a\r\n.\rb\r\n", {"a\r\n", 8, false, kProblemBareCr}},
        // "a\n.\r\n" is one line holding a bare LF; the next line "." does
        // end the data, which is then refused for the bare LF.
        {"a\n.\r\n.\r\n", {"a", 8, true, kProblemBareLf}},
    };
    for (const auto& c : cases) {
        INFO("input: " << c.input);
        DataResult whole = read_data(c.input, DataReader::Mode::Dot, 1000, 0, false);
        DataResult bytes = read_data(c.input, DataReader::Mode::Dot, 1000, 0, true);
        CHECK(whole == bytes);
        CHECK(whole.text == c.expected.text);
        CHECK(whole.consumed == c.expected.consumed);
        CHECK(whole.done == c.expected.done);
        CHECK(whole.problems == c.expected.problems);
    }
}

TEST_CASE("smtp: DATA reader limits and raw mode", "[smtp][reader]") {
    // text line limit: 10 octets with CRLF
    std::string ok_line = std::string(8, 'x') + "\r\n.\r\n";
    CHECK(read_data(ok_line, DataReader::Mode::Dot, 10, 0, false).problems == 0);
    std::string long_line = std::string(9, 'x') + "\r\n.\r\n";
    DataResult r = read_data(long_line, DataReader::Mode::Dot, 10, 0, false);
    CHECK(r.done);
    CHECK(r.problems == kProblemLineTooLong);
    CHECK(r.text == std::string(9, 'x') + "\r");  // output stops at the limit
    CHECK(read_data(long_line, DataReader::Mode::Dot, 10, 0, true) == r);
    // a stuffed dot does not count
    CHECK(read_data("." + ok_line, DataReader::Mode::Dot, 10, 0, false).problems == 0);

    // message size: 10 octets
    std::string body = "12345678\r\n.\r\n";
    CHECK(read_data(body, DataReader::Mode::Dot, 1000, 10, false).problems == 0);
    std::string big = "123456789\r\nmore\r\n.\r\n";
    r = read_data(big, DataReader::Mode::Dot, 1000, 10, false);
    CHECK(r.done);  // keeps reading to the end
    CHECK(r.problems == kProblemTooBig);
    CHECK(r.text == "123456789\r");
    CHECK(read_data(big, DataReader::Mode::Dot, 1000, 10, true) == r);

    // raw mode: no dot handling, no end
    r = read_data("a\r\n.\r\nb", DataReader::Mode::Raw, 1000, 0, false);
    CHECK(r.text == "a\r\n.\r\nb");
    CHECK_FALSE(r.done);
    CHECK(r.consumed == 7);
    CHECK(read_data("a\nb", DataReader::Mode::Raw, 1000, 0, false).problems == kProblemBareLf);

    DataReader raw(DataReader::Mode::Raw, 1000, 0);
    std::string out;
    (void)raw.feed("abc\r", out);
    CHECK(raw.mid_line());
    raw.finish_raw();
    CHECK(raw.problems() == kProblemBareCr);
}
