// imapd/search: the SEARCH program parser and matcher, and the date parsers.
#include <catch2/catch.hpp>

#include <string>

#include "imapd/search.hpp"
#include "imapd/store.hpp"

using namespace pbx::imap;

namespace {

std::vector<Value> args_of(std::string_view line) {
    CommandReader r;
    std::string input = "t SEARCH " + std::string(line) + "\r\n";
    Event ev;
    r.feed(input, ev);
    REQUIRE(ev.kind == Event::Kind::Command);
    return ev.command.args;
}

const std::string kText =
    "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Lunch plans\r\n"
    "Date: Wed, 2 Feb 2022 23:30:00 -0800\r\nX-Tag: blue\r\n\r\nLet us meet at noon.\r\n";

SearchMessage msg(uint32_t seq, uint32_t uid, uint8_t flags) {
    SearchMessage m;
    m.seq = seq;
    m.uid = uid;
    m.flags = flags;
    m.size = kText.size();
    m.internal_days = days_from_civil(2022, 2, 3);
    m.keywords = {"$Work"};
    m.text = [] { return std::string_view(kText); };
    return m;
}

bool match(std::string_view program, const SearchMessage& m) {
    std::string error;
    bool bad_charset = false;
    auto args = args_of(program);
    auto k = parse_search(args, 0, error, bad_charset);
    INFO(program << ": " << error);
    REQUIRE(k);
    return search_match(*k, m, 10, 100);
}

}  // namespace

TEST_CASE("search: keys") {
    auto m = msg(3, 30, kFlagSeen);
    struct C {
        std::string_view program;
        bool result;
    };
    const C cases[] = {
        {"ALL", true},
        {"SEEN", true},
        {"UNSEEN", false},
        {"FLAGGED", false},
        {"UNFLAGGED SEEN", true},
        {"NOT SEEN", false},
        {"OR FLAGGED SEEN", true},
        {"OR FLAGGED DELETED", false},
        {"(SEEN UNDELETED)", true},
        {"FROM alice", true},
        {"FROM ALICE@EXAMPLE", true},
        {"FROM bob", false},
        {"TO bob", true},
        {"SUBJECT lunch", true},
        {"SUBJECT \"lunch plans\"", true},
        {"HEADER X-Tag blue", true},
        {"HEADER X-Tag red", false},
        {"HEADER X-Missing \"\"", false},
        {"BODY noon", true},
        {"BODY Lunch", false},
        {"TEXT Lunch", true},
        {"LARGER 10", true},
        {"SMALLER 10", false},
        {"KEYWORD $work", true},
        {"UNKEYWORD $Work", false},
        {"SINCE 3-Feb-2022", true},
        {"SINCE 4-Feb-2022", false},
        {"BEFORE 3-Feb-2022", false},
        {"ON 3-Feb-2022", true},
        {"SENTON 2-Feb-2022", true},
        {"SENTBEFORE 2-Feb-2022", false},
        {"SENTSINCE 2-Feb-2022", true},
        {"1:3", true},
        {"4:*", false},
        {"*", false},
        {"UID 30", true},
        {"UID 31:*", false},
        {"CHARSET UTF-8 SEEN", true},
        {"NEW", false},
        {"OLD", true},
        {"RECENT", false},
    };
    for (const auto& c : cases) {
        INFO(std::string(c.program));
        CHECK(match(c.program, m) == c.result);
    }
}

TEST_CASE("search: bad programs") {
    for (std::string_view p : {"FOO", "FROM", "LARGER x", "SINCE 2022-02-03", "OR SEEN", "NOT",
                               "UID x", "()", "CHARSET", "\"quoted\""}) {
        INFO(std::string(p));
        std::string error;
        bool bad_charset = false;
        auto args = args_of(p);
        CHECK_FALSE(parse_search(args, 0, error, bad_charset).has_value());
        CHECK(!error.empty());
    }
    std::string error;
    bool bad_charset = false;
    auto args = args_of("CHARSET KOI8-R ALL");
    CHECK_FALSE(parse_search(args, 0, error, bad_charset).has_value());
    CHECK(bad_charset);
    // Deep nesting is refused, not a stack overflow.
    std::string deep;
    for (int i = 0; i < 2000; ++i) deep += "NOT ";
    deep += "ALL";
    args = args_of(deep);
    CHECK_FALSE(parse_search(args, 0, error, bad_charset).has_value());
}

TEST_CASE("search: dates") {
    CHECK(parse_imap_date("1-Feb-1994").value() == days_from_civil(1994, 2, 1));
    CHECK(parse_imap_date("01-feb-1994").value() == days_from_civil(1994, 2, 1));
    CHECK(days_from_civil(1970, 1, 1) == 0);
    CHECK_FALSE(parse_imap_date("1-Foo-1994"));
    CHECK_FALSE(parse_imap_date("1-Feb-94"));
    CHECK(parse_rfc5322_date_days("Tue, 1 Feb 1994 10:00:00 +0100").value() ==
          days_from_civil(1994, 2, 1));
    CHECK(parse_rfc5322_date_days("1 Feb 94 10:00 GMT").value() == days_from_civil(1994, 2, 1));
    CHECK_FALSE(parse_rfc5322_date_days("garbage"));
    CHECK(parse_imap_datetime("01-Jan-1970 01:00:00 +0100").value() == 0);
    CHECK(parse_imap_datetime(" 1-Jan-1970 00:00:10 +0000").value() == 10);
    CHECK_FALSE(parse_imap_datetime("01-Jan-1970 25:00:00 +0000"));
    CHECK_FALSE(parse_imap_datetime("01-Jan-1970"));
}
