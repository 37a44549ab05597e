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

TEST_CASE("search: decoding for BODY, TEXT and HEADER") {
    CHECK(decode_base64("R3LDvMOfZQ==") ==
          "Gr\xc3\xbc\xc3\x9f"
          "e");
    CHECK(decode_base64("R3L\r\nDvMOf ZQ") ==
          "Gr\xc3\xbc\xc3\x9f"
          "e");  // lenient
    CHECK(decode_quoted_printable("caf=E9 =\r\nau lait=3D ok =ZZ") == "caf\xe9 au lait= ok =ZZ");
    CHECK(charset_to_utf8("caf\xe9", "ISO-8859-1") == "caf\xc3\xa9");
    CHECK(charset_to_utf8("caf\xe9", "x-no-such-charset") == "caf\xe9");
    CHECK(decode_header_value("=?UTF-8?B?R3LDvMOfZQ==?= =?ISO-8859-1?Q?_aus_K=F6ln?= !") ==
          "Gr\xc3\xbc\xc3\x9f"
          "e aus K\xc3\xb6ln !");
    CHECK(decode_header_value("plain =?bogus") == "plain =?bogus");
    CHECK(fold_case("GR\xc3\x9c\xc3\x9f"
                    "E \xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91") ==
          "gr\xc3\xbc\xc3\x9f"
          "e \xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1");
    CHECK(fold_case("bad \xff\xfe bytes") == "bad \xff\xfe bytes");

    static const std::string multipart =
        "From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.test>\r\n"
        "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Ein Caf=E9 in der Stra=DFe, sehr sch=\r\noen.\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        "PHA+TWVldGluZyBhdCA8Yj5ub29uPC9iPjwvcD4=\r\n"  // <p>Meeting at <b>noon</b></p>
        "--b1\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        "c2VjcmV0d29yZA==\r\n"  // "secretword": an attachment, not searched
        "--b1\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        "Subject: inner =?UTF-8?Q?r=C3=A9sum=C3=A9?=\r\n\r\n"
        "forwarded text\r\n"
        "--b1--\r\n";
    SearchMessage m;
    m.seq = 1;
    m.uid = 1;
    m.text = [] { return std::string_view(multipart); };
    auto key = [](SearchKey::Op op, std::string field, std::string text) {
        SearchKey k;
        k.op = op;
        k.field = std::move(field);
        k.text = std::move(text);
        return k;
    };
    using Op = SearchKey::Op;
    struct C {
        SearchKey k;
        bool result;
    };
    const C cases[] = {
        {key(Op::Body, "", "caf\xc3\xa9"), true},  // QP + Latin-1
        {key(Op::Body, "", "STRASSE"), false},     // no ß → ss folding
        {key(Op::Body, "",
             "stra\xc3\x9f"
             "e"),
         true},                                           // ß as written
        {key(Op::Body, "", "sehr schoen"), true},         // soft line break
        {key(Op::Body, "", "meeting at <B>NOON"), true},  // base64 HTML part
        {key(Op::Body, "", "secretword"), false},         // attachment
        {key(Op::Body, "", "c2VjcmV0d29yZA"), false},     // nor its base64
        {key(Op::Body, "", "forwarded text"), true},      // attached message
        {key(Op::Body, "", "R3LDvMOfZQ"), false},         // encoded header
        {key(Op::Header, "Subject",
             "GR\xc3\x9c\xc3\x9f"
             "E"),
         true},  // encoded-word, folded
        {key(Op::Header, "subject", "gr\xc3\xbc"), true},
        {key(Op::Header, "From", "j\xc3\xb6rg"), true},
        {key(Op::Header, "To", ""), false},  // no such field
        {key(Op::Header, "", "joerg@EXAMPLE"), true},
        {key(Op::Text, "", "J\xc3\x96RG"), true},
        {key(Op::Text, "", "r\xc3\xa9sum\xc3\xa9"), true},  // inner message header
        {key(Op::Text, "", "noon"), true},
    };
    for (const auto& c : cases) {
        INFO(c.k.field << " " << c.k.text);
        CHECK(search_match(c.k, m, 1, 1) == c.result);
    }
}

TEST_CASE("search: SUBJECT, FROM, TO, CC, BCC from the cached fields, as from the message") {
    static const std::string text =
        "From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.test>\r\n"
        "To: Bob <bob@example.test>,\r\n  carol@example.test\r\n"
        "Cc: =?UTF-8?Q?Z=C3=BCrich?= team <zh@example.test>\r\n"
        "Subject: =?UTF-8?B?R3LDvMOfZQ==?= and\r\n more\r\n"
        "X-Subject: decoy\r\n"
        "Subject: second subject\r\n"
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: "
        "x@inner.test\r\n\r\nhi\r\n"
        "--b--\r\n";
    const std::string fields = cached_search_fields(text, parse_mime(text));
    // Only the five fields, decoded and folded, in order; not the inner
    // message's, not X-Subject.
    CHECK(fields ==
          "from: j\xc3\xb6rg <joerg@example.test>\n"
          "to: bob <bob@example.test>,  carol@example.test\n"
          "cc: z\xc3\xbcrich team <zh@example.test>\n"
          "subject: gr\xc3\xbc\xc3\x9f"
          "e and more\n"
          "subject: second subject\n");
    CHECK(cached_search_fields("", parse_mime("")).empty());
    CHECK(is_cached_search_field("SUBJECT"));
    CHECK(is_cached_search_field("Bcc"));
    CHECK_FALSE(is_cached_search_field("X-Subject"));
    CHECK_FALSE(is_cached_search_field(""));

    SearchMessage plain;
    plain.text = [] { return std::string_view(text); };
    int reads = 0;
    SearchMessage cached;
    cached.fields = &fields;
    cached.text = [&reads] {
        ++reads;
        return std::string_view(text);
    };
    const char* programs[] = {
        "SUBJECT \"GR\xc3\x9c\xc3\x9f"
        "E AND\"",
        "SUBJECT \"second\"",
        "SUBJECT \"inner\"",
        "SUBJECT \"decoy\"",
        "FROM \"J\xc3\xb6rg\"",
        "FROM \"inner.test\"",
        "TO carol",
        "TO \"bob <bob@\"",
        "CC \"z\xc3\x9crich\"",
        "BCC x",
        "OR SUBJECT nope FROM joerg",
        "NOT TO carol",
        "SUBJECT \"\"",
        "BCC \"\"",
    };
    for (const char* p : programs) {
        INFO(p);
        CHECK(match(p, cached) == match(p, plain));
    }
    CHECK(reads == 0);  // the cached fields answered, the message was not read
    CHECK(match("HEADER X-Subject decoy", cached));  // any other field: from the message
    CHECK(reads > 0);
}
