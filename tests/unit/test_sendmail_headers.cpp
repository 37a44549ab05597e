// sendmail(1)'s message side: header sections (folding, limits), RFC 5322
// address lists (valid and invalid tables; every prefix of every case is
// parsed as well, so that a cut anywhere is an error or a result, never a
// read past the input), and the local submission fix-ups of -t.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/smtp/mail_headers.hpp"

using namespace pbx;
using namespace pbx::mail;
using std::string;
using std::string_view;
using Addrs = std::vector<string>;

// ---------------------------------------------------------------- headers

TEST_CASE("headers: fields, folding and where the body starts", "[sendmail][headers]") {
    SECTION("plain, with the empty line") {
        string m = "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n";
        auto h = parse_headers(m);
        REQUIRE(h.ok());
        REQUIRE(h->fields.size() == 2);
        CHECK(h->fields[0].name == "From");
        CHECK(h->fields[0].value == " a@b");
        CHECK(h->fields[0].text == "From: a@b\r\n");
        CHECK(h->has_separator);
        CHECK(m.substr(h->body) == "body\r\n");
        CHECK(m.substr(h->end, 2) == "\r\n");
    }
    SECTION("folded field") {
        string m = "To: a@b,\r\n\tc@d,\r\n  e@f\r\nX: y\r\n\r\n";
        auto h = parse_headers(m);
        REQUIRE(h.ok());
        REQUIRE(h->fields.size() == 2);
        CHECK(h->fields[0].text == "To: a@b,\r\n\tc@d,\r\n  e@f\r\n");
        CHECK(h->fields[0].value == " a@b,\r\n\tc@d,\r\n  e@f");
        CHECK(unfold(h->fields[0].value) == " a@b,\tc@d,  e@f");
    }
    SECTION("obsolete white space before the colon") {
        auto h = parse_headers("Subject : x\r\n\r\n");
        REQUIRE(h.ok());
        REQUIRE(h->fields.size() == 1);
        CHECK(h->fields[0].name == "Subject");
        CHECK(h->fields[0].value == " x");
    }
    SECTION("no header at all") {
        string m = "just a body line\r\nmore\r\n";
        auto h = parse_headers(m);
        REQUIRE(h.ok());
        CHECK(h->fields.empty());
        CHECK(h->body == 0);
        CHECK_FALSE(h->has_separator);
    }
    SECTION("first line indented: body") {
        auto h = parse_headers(" indented\r\n");
        REQUIRE(h.ok());
        CHECK(h->fields.empty());
    }
    SECTION("body without the empty line") {
        string m = "Subject: x\r\nthis is text\r\n";
        auto h = parse_headers(m);
        REQUIRE(h.ok());
        CHECK(h->fields.size() == 1);
        CHECK_FALSE(h->has_separator);
        CHECK(m.substr(h->body) == "this is text\r\n");
    }
    SECTION("headers only, no body") {
        string m = "Subject: x\r\n";
        auto h = parse_headers(m);
        REQUIRE(h.ok());
        CHECK(h->fields.size() == 1);
        CHECK(h->end == m.size());
    }
    SECTION("last line without CRLF") {
        auto h = parse_headers("Subject: x");
        REQUIRE(h.ok());
        REQUIRE(h->fields.size() == 1);
        CHECK(h->fields[0].value == " x");
    }
    SECTION("a bare CR inside a field is part of it") {
        auto h = parse_headers("X: a\rb\r\n\r\n");
        REQUIRE(h.ok());
        REQUIRE(h->fields.size() == 1);
        CHECK(h->fields[0].value == " a\rb");
    }
}

TEST_CASE("headers: limits", "[sendmail][headers]") {
    HeaderLimits lim;
    lim.max_field_size = 20;
    lim.max_fields = 2;
    lim.max_header_size = 40;
    auto too_long = parse_headers("X: " + string(30, 'a') + "\r\n\r\n", lim);
    REQUIRE_FALSE(too_long.ok());
    CHECK(too_long.error().code == HeaderErrc::FieldTooLong);
    CHECK(too_long.error().line == 1);
    auto folded = parse_headers("X: aaaa\r\n bbbbbbbbbbbbbbbbbbb\r\n\r\n", lim);
    REQUIRE_FALSE(folded.ok());
    CHECK(folded.error().code == HeaderErrc::FieldTooLong);
    CHECK(folded.error().line == 2);
    auto many = parse_headers("A: 1\r\nB: 2\r\nC: 3\r\n\r\n", lim);
    REQUIRE_FALSE(many.ok());
    CHECK(many.error().code == HeaderErrc::TooManyFields);
    lim.max_fields = 100;
    auto big = parse_headers("A: 12345678\r\nB: 12345678\r\nC: 12345678\r\nD: 1\r\n\r\n", lim);
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().code == HeaderErrc::HeaderTooLarge);
    CHECK_THAT(big.error().to_string(), Catch::Contains("line 4"));
}

// ---------------------------------------------------------------- addresses

namespace {

struct ValidAddr {
    string_view text;
    Addrs want;
};

const ValidAddr kValid[] = {
    {"a@b.c", {"a@b.c"}},
    {"root", {"root"}},
    {"  a@b.c  ", {"a@b.c"}},
    {"a@b.c, d@e.f", {"a@b.c", "d@e.f"}},
    {"a@b.c,d@e.f,", {"a@b.c", "d@e.f"}},
    {",,a@b.c,,", {"a@b.c"}},
    {"", {}},
    {"Alice <alice@example.org>", {"alice@example.org"}},
    {"\"Smith, John\" <js@example.org>, x@y", {"js@example.org", "x@y"}},
    {"\"quoted \\\" name\" <q@x>", {"q@x"}},
    {"<bare@angle>", {"bare@angle"}},
    {"a@b.c (Alice)", {"a@b.c"}},
    {"(lead) a@b.c", {"a@b.c"}},
    {"a(in)@(side)b.c", {"a@b.c"}},
    {"a@b.c (nested (comment) here)", {"a@b.c"}},
    {"a@b.c (with \\) escape)", {"a@b.c"}},
    {"Mr. Smith <s@x>", {"s@x"}},
    {"\"odd local\"@x.y", {"\"odd local\"@x.y"}},
    {"first.last@x.y", {"first.last@x.y"}},
    {"a..b@docomo.ne.jp", {"a..b@docomo.ne.jp"}},
    {"u@[192.0.2.1]", {"u@[192.0.2.1]"}},
    {"u@[IPv6:2001:db8::1]", {"u@[IPv6:2001:db8::1]"}},
    {"<@relay.a,@relay.b:u@x.y>", {"u@x.y"}},
    {"undisclosed-recipients:;", {}},
    {"team: a@x, B <b@y>;", {"a@x", "b@y"}},
    {"team: a@x;, c@z", {"a@x", "c@z"}},
    {"c@z, team: a@x;", {"c@z", "a@x"}},
    {"team: a@x", {"a@x"}},
    {"Some Group: ;", {}},
    {"a+tag@x.y", {"a+tag@x.y"}},
    {"j\xc3\xb6rg@b\xc3\xbc.de", {"j\xc3\xb6rg@b\xc3\xbc.de"}},
    {"a@x\r\n\t, b@y", {"a@x", "b@y"}},
};

struct InvalidAddr {
    string_view text;
    AddressErrc code;
};

const InvalidAddr kInvalid[] = {
    {"\"unterminated@x", AddressErrc::UnterminatedQuote},
    {"a@x (open comment", AddressErrc::UnterminatedComment},
    {"a@[1.2.3.4", AddressErrc::UnterminatedLiteral},
    {"Alice <a@x", AddressErrc::UnterminatedAngle},
    {"a@x, <b@y", AddressErrc::UnterminatedAngle},
    {"g1: g2: a@x;;", AddressErrc::NestedGroup},
    {"John Doe", AddressErrc::BadSyntax},
    {"a@", AddressErrc::BadSyntax},
    {"@x", AddressErrc::BadSyntax},
    {"a@b@c", AddressErrc::BadSyntax},
    {"a@b..c", AddressErrc::BadSyntax},
    {"a@b.", AddressErrc::BadSyntax},
    {"a@\"b\"", AddressErrc::BadSyntax},
    {"<>", AddressErrc::BadSyntax},
    {"Alice <a@x> trailing", AddressErrc::BadSyntax},
    {"<a@x> <b@y>", AddressErrc::BadSyntax},
    {"a@x>", AddressErrc::BadSyntax},
    {"<<a@x>>", AddressErrc::BadSyntax},
    {"a@x;", AddressErrc::BadSyntax},
    {"team: a@x; b@y", AddressErrc::BadSyntax},
    {": a@x;", AddressErrc::BadSyntax},
    {"<@route-without-colon a@x>", AddressErrc::BadSyntax},
    {"a@x)", AddressErrc::BadCharacter},
    {"a]@x", AddressErrc::BadCharacter},
    {"a\\b@x", AddressErrc::BadCharacter},
    {string_view("a\0b@x", 5), AddressErrc::BadCharacter},
    {"a\x01@x", AddressErrc::BadCharacter},
};

}  // namespace

TEST_CASE("addresses: valid lists", "[sendmail][address]") {
    for (const auto& c : kValid) {
        INFO("input: " << c.text);
        auto r = parse_address_list(c.text);
        INFO((r.ok() ? string() : r.error().to_string()));
        REQUIRE(r.ok());
        CHECK(*r == c.want);
    }
}

TEST_CASE("addresses: invalid lists", "[sendmail][address]") {
    for (const auto& c : kInvalid) {
        INFO("input: " << c.text);
        auto r = parse_address_list(c.text);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == c.code);
        CHECK(r.error().offset <= c.text.size());
        CHECK_FALSE(r.error().to_string().empty());
    }
}

TEST_CASE("addresses: every prefix of every case is handled", "[sendmail][address]") {
    // The parser is not incremental; feeding prefixes is its byte-by-byte
    // test: a cut anywhere must give a result or an error (ASan watches for
    // reads past the end, each prefix is a fresh allocation of exact size).
    auto all_prefixes = [](string_view text) {
        for (size_t n = 0; n <= text.size(); ++n) {
            std::vector<char> exact(text.begin(), text.begin() + static_cast<long>(n));
            (void)parse_address_list(string_view(exact.data(), exact.size()));
        }
    };
    for (const auto& c : kValid) all_prefixes(c.text);
    for (const auto& c : kInvalid) all_prefixes(c.text);
}

TEST_CASE("addresses: limits", "[sendmail][address]") {
    AddressLimits lim;
    lim.max_addresses = 2;
    auto many = parse_address_list("a@x, b@x, c@x", lim);
    REQUIRE_FALSE(many.ok());
    CHECK(many.error().code == AddressErrc::TooManyAddresses);
    lim.max_address_length = 5;
    auto longer = parse_address_list("abc@xyz", lim);
    REQUIRE_FALSE(longer.ok());
    CHECK(longer.error().code == AddressErrc::AddressTooLong);
    lim.max_comment_depth = 2;
    CHECK(parse_address_list("a@x ((ok))", lim).ok());
    auto deep = parse_address_list("a@x (((too deep)))", lim);
    REQUIRE_FALSE(deep.ok());
    CHECK(deep.error().code == AddressErrc::CommentTooDeep);
    // The default depth limit stops a pathological comment.
    string evil(100000, '(');
    auto e = parse_address_list(evil);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == AddressErrc::CommentTooDeep);
}

// ---------------------------------------------------------------- fix-ups

namespace {

PrepareInput input(bool t, std::vector<string> args = {}) {
    PrepareInput in;
    in.extract_recipients = t;
    in.arg_recipients = std::move(args);
    in.from_address = "alice@mail.example.test";
    in.date = "Thu, 01 Jan 2026 00:00:00 +0000";
    in.message_id = "<id@mail.example.test>";
    return in;
}

const string kAdded =
    "From: alice@mail.example.test\r\n"
    "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    "Message-ID: <id@mail.example.test>\r\n";

}  // namespace

TEST_CASE("prepare: -t takes To, Cc and Bcc and removes Bcc", "[sendmail][prepare]") {
    string m =
        "To: Bob <bob@example.org>, carol\r\n"
        "Cc: dave@example.org\r\n"
        "Bcc: eve@example.org,\r\n"
        " frank@example.org\r\n"
        "Subject: hi\r\n"
        "\r\n"
        "Bcc: in the body stays\r\n";
    auto p = prepare_message(m, input(true));
    REQUIRE(p.ok());
    CHECK(p->recipients == Addrs{"bob@example.org", "carol", "dave@example.org", "eve@example.org",
                                 "frank@example.org"});
    CHECK(p->message ==
          "To: Bob <bob@example.org>, carol\r\n"
          "Cc: dave@example.org\r\n"
          "Subject: hi\r\n" +
              kAdded +
              "\r\n"
              "Bcc: in the body stays\r\n");
}

TEST_CASE("prepare: recipient arguments are added to -t's, duplicates once",
          "[sendmail][prepare]") {
    string m = "To: a@x, b@x\r\n\r\nbody\r\n";
    auto p = prepare_message(m, input(true, {"c@x, a@x", "Dee <d@x>"}));
    REQUIRE(p.ok());
    CHECK(p->recipients == Addrs{"c@x", "a@x", "d@x", "b@x"});
}

TEST_CASE("prepare: without -t the headers are not recipients", "[sendmail][prepare]") {
    string m = "To: a@x\r\nBcc: hidden@x\r\n\r\nbody\r\n";
    auto p = prepare_message(m, input(false, {"root"}));
    REQUIRE(p.ok());
    CHECK(p->recipients == Addrs{"root"});
    // Bcc: is removed even without -t: it would show the blind recipients.
    CHECK(p->message.find("hidden") == string::npos);
}

TEST_CASE("prepare: Resent- fields win with -t", "[sendmail][prepare]") {
    string m =
        "To: original@x\r\n"
        "Resent-To: new@x\r\n"
        "Resent-Bcc: blind@x\r\n"
        "\r\n";
    auto p = prepare_message(m, input(true));
    REQUIRE(p.ok());
    CHECK(p->recipients == Addrs{"new@x", "blind@x"});
    CHECK(p->message.find("Resent-Bcc") == string::npos);
    CHECK(p->message.find("To: original@x\r\n") != string::npos);
}

TEST_CASE("prepare: existing From, Date and Message-ID are kept", "[sendmail][prepare]") {
    string m =
        "from: Someone <s@x>\r\n"
        "DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        "Message-Id: <keep@x>\r\n"
        "\r\n"
        "b\r\n";
    auto p = prepare_message(m, input(false, {"r@x"}));
    REQUIRE(p.ok());
    CHECK(p->message == m);
}

TEST_CASE("prepare: message shapes", "[sendmail][prepare]") {
    struct Case {
        string_view name;
        string in;
        string out;
    };
    const Case cases[] = {
        {"empty message", "", kAdded},
        {"body only", "hello\r\n", kAdded + "\r\nhello\r\n"},
        {"headers only", "Subject: s\r\n", "Subject: s\r\n" + kAdded},
        {"body without separator", "Subject: s\r\nhello\r\n",
         "Subject: s\r\n" + kAdded + "\r\nhello\r\n"},
        {"mbox From_ line dropped",
         "From alice Thu Jan  1 00:00:00 2026\r\nSubject: s\r\n\r\nb\r\n",
         "Subject: s\r\n" + kAdded + "\r\nb\r\n"},
        {"only a From_ line", "From alice", kAdded},
        {"'From:' is a header, not a From_ line", "From: x@y\r\n\r\nb\r\n",
         "From: x@y\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
         "Message-ID: <id@mail.example.test>\r\n\r\nb\r\n"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        auto p = prepare_message(c.in, input(false, {"r@x"}));
        REQUIRE(p.ok());
        CHECK(p->message == c.out);
    }
}

TEST_CASE("prepare: errors", "[sendmail][prepare]") {
    auto none = prepare_message("Subject: s\r\n\r\n", input(true));
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().code == PrepareErrc::NoRecipients);

    auto bad_hdr = prepare_message("To: \"open\r\n\r\n", input(true));
    REQUIRE_FALSE(bad_hdr.ok());
    CHECK(bad_hdr.error().code == PrepareErrc::Address);
    CHECK_THAT(bad_hdr.error().text, Catch::StartsWith("To: header: unterminated quoted"));

    auto bad_arg = prepare_message("", input(false, {"John Doe"}));
    REQUIRE_FALSE(bad_arg.ok());
    CHECK(bad_arg.error().code == PrepareErrc::Address);
    CHECK_THAT(bad_arg.error().text, Catch::StartsWith("recipient 'John Doe'"));

    PrepareInput few = input(true);
    few.address_limits.max_addresses = 2;
    auto many = prepare_message("To: a@x, b@x\r\nCc: c@x\r\n\r\n", few);
    REQUIRE_FALSE(many.ok());
    CHECK(many.error().code == PrepareErrc::TooManyRecipients);

    PrepareInput small = input(false, {"r@x"});
    small.header_limits.max_field_size = 10;
    auto big = prepare_message("Subject: " + string(50, 's') + "\r\n\r\n", small);
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().code == PrepareErrc::Header);
}

TEST_CASE("fix_up_headers: what -bs applies", "[sendmail][prepare]") {
    auto f = fix_up_headers("From alice\r\nBcc: x@y\r\nSubject: s\r\n\r\nb\r\n", input(false));
    REQUIRE(f.ok());
    // No From_ handling here: in SMTP that line is just a body line.
    CHECK(*f == kAdded + "\r\nFrom alice\r\nBcc: x@y\r\nSubject: s\r\n\r\nb\r\n");
    auto g = fix_up_headers("Bcc: x@y\r\nSubject: s\r\n\r\nb\r\n", input(false));
    REQUIRE(g.ok());
    CHECK(*g == "Subject: s\r\n" + kAdded + "\r\nb\r\n");
}

TEST_CASE("format_from, format_date, make_message_id", "[sendmail][prepare]") {
    CHECK(format_from("", "a@x") == "a@x");
    CHECK(format_from("   ", "a@x") == "a@x");
    CHECK(format_from("Full Name", "a@x") == "\"Full Name\" <a@x>");
    CHECK(format_from(" Cron Daemon ", "a@x") == "\"Cron Daemon\" <a@x>");
    CHECK(format_from("O\"Brien \\ co", "a@x") == "\"O\\\"Brien \\\\ co\" <a@x>");
    CHECK(format_from("tab\there\x7f", "a@x") == "\"tabhere\" <a@x>");
    CHECK(format_from("J\xc3\xb6rg", "a@x") == "=?UTF-8?B?SsO2cmc=?= <a@x>");
    // Long non-ASCII names: several encoded words, none splitting a character.
    string name;
    for (int i = 0; i < 40; ++i) name += "\xc3\xa9";
    string f = format_from(name, "a@x");
    CHECK(f.find("?= =?UTF-8?B?") != string::npos);
    for (size_t pos = 0; (pos = f.find("=?UTF-8?B?", pos)) != string::npos; ++pos) {
        size_t end = f.find("?=", pos + 10);
        REQUIRE(end != string::npos);
        CHECK(end + 2 - pos <= 75);
    }

    CHECK(format_date(0, 0) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(format_date(1700000000, 60) == "Tue, 14 Nov 2023 23:13:20 +0100");
    CHECK(format_date(1700000000, -330) == "Tue, 14 Nov 2023 16:43:20 -0530");

    CHECK(make_message_id(1700000000, 0x1234abcdULL, 42, "mail.example.test") ==
          "<20231114221320.000000001234abcd.42@mail.example.test>");
}
