// The maildrop format (maildrop/ID, untrusted: written through sendmail by
// any local user): round trip, truncations, the invalid table, writer limits.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/spool/maildrop.hpp"

using namespace pbx::spool;
using std::string;
using std::string_view;

// ---------------------------------------------------------------- maildrop

namespace {

const string kMessage =
    "From: alice@example.net\n"
    "Subject: end\n"
    "\n"
    "end\n"
    "a line with\r\nCRLF and a NUL: " +
    string(1, '\0') + "\n";

Maildrop sample_drop() {
    Maildrop d;
    d.uid = 1000;
    d.time = Seconds(std::chrono::seconds(1700000000));
    d.sender = "alice@example.net";
    d.recipients = {"bob@example.org", "c a r o l+x@example.org"};
    d.message = kMessage;
    return d;
}

}  // namespace

TEST_CASE("maildrop: round trip", "[spool][maildrop]") {
    Maildrop d = sample_drop();
    auto w = write_maildrop(d);
    REQUIRE(w.ok());
    const string head =
        "pillarbox-maildrop 1\nuid: 1000\ntime: 1700000000\nsender: alice@example.net\n"
        "rcpt: bob@example.org\nrcpt: c+20a+20r+20o+20l+2Bx@example.org\nsize: ";
    CHECK(w->substr(0, head.size()) == head);
    auto r = read_maildrop(*w);
    INFO((r.ok() ? "" : r.error().to_string()));
    REQUIRE(r.ok());
    CHECK(r->uid == 1000);
    CHECK(r->time == d.time);
    CHECK(r->sender == d.sender);
    CHECK(r->recipients == d.recipients);
    CHECK(r->message == kMessage);

    // The null sender and an empty message.
    d.sender.clear();
    d.message = {};
    auto w2 = write_maildrop(d);
    REQUIRE(w2.ok());
    CHECK(w2->find("\nsender:\n") != string::npos);
    auto r2 = read_maildrop(*w2);
    REQUIRE(r2.ok());
    CHECK(r2->sender.empty());
    CHECK(r2->message.empty());
}

TEST_CASE("maildrop: every truncation is rejected", "[spool][maildrop]") {
    auto w = write_maildrop(sample_drop());
    REQUIRE(w.ok());
    for (size_t n = 0; n < w->size(); ++n) {
        INFO("prefix of " << n << " octets");
        REQUIRE_FALSE(read_maildrop(string_view(*w).substr(0, n)).ok());
    }
}

namespace {

struct InvalidDrop {
    const char* what;
    string text;
    MaildropErrc code;
    int line;
};

string drop_text(const string& header, const string& message, const string& tail = "end\n") {
    return header + "size: " + std::to_string(message.size()) + "\n" + message + tail;
}

const string kHead = "pillarbox-maildrop 1\nuid: 1000\ntime: 1700000000\nsender: a@b\nrcpt: c@d\n";

}  // namespace

TEST_CASE("maildrop: invalid table", "[spool][maildrop]") {
    using M = MaildropErrc;
    const string msg = "Subject: x\n\nhi\n";
    const InvalidDrop cases[] = {
        {"empty", "", M::BadVersion, 1},
        {"bad magic", "pillarbox-envelope 1\n", M::BadVersion, 1},
        {"version 2", "pillarbox-maildrop 2\n", M::UnsupportedVersion, 1},
        {"header only", "pillarbox-maildrop 1\n", M::MissingKey, 2},
        {"unknown key", "pillarbox-maildrop 1\nuid: 1\nfrom: a\n", M::UnknownKey, 3},
        {"out of order", "pillarbox-maildrop 1\ntime: 1\nuid: 1\n", M::MissingKey, 2},
        {"duplicate uid", "pillarbox-maildrop 1\nuid: 1\nuid: 1\n", M::DuplicateKey, 3},
        {"duplicate after rcpt", kHead + "sender: x\n", M::DuplicateKey, 6},
        {"no recipients", drop_text("pillarbox-maildrop 1\nuid: 1\ntime: 1\nsender:\n", msg),
         M::NoRecipients, 5},
        {"ends after rcpt", kHead, M::MissingKey, 6},
        {"uid not a number", "pillarbox-maildrop 1\nuid: -1\n", M::BadValue, 2},
        {"uid overflow", "pillarbox-maildrop 1\nuid: 4294967296\n", M::BadValue, 2},
        {"time bad", "pillarbox-maildrop 1\nuid: 1\ntime: 01\n", M::BadValue, 3},
        {"sender bad xtext", "pillarbox-maildrop 1\nuid: 1\ntime: 1\nsender: a b\n", M::BadValue,
         4},
        {"sender encoded LF", "pillarbox-maildrop 1\nuid: 1\ntime: 1\nsender: a+0A\n", M::BadValue,
         4},
        {"rcpt empty", "pillarbox-maildrop 1\nuid: 1\ntime: 1\nsender:\nrcpt:\n", M::BadValue, 5},
        {"rcpt non-canonical", "pillarbox-maildrop 1\nuid: 1\ntime: 1\nsender:\nrcpt: +61\n",
         M::BadValue, 5},
        {"no space", "pillarbox-maildrop 1\nuid:1\n", M::BadLine, 2},
        {"CR in header", "pillarbox-maildrop 1\r\n", M::CarriageReturn, 1},
        {"NUL in header", string("pillarbox-maildrop 1\nuid: 1\0\n", 29), M::NulByte, 2},
        {"line too long", "pillarbox-maildrop 1\nuid: " + string(5000, '1') + "\n", M::LineTooLong,
         2},
        {"size not a number", kHead + "size: 12k\n", M::BadValue, 6},
        {"size over limit", kHead + "size: 52428801\n", M::MessageTooLarge, 6},
        {"size huge", kHead + "size: 18446744073709551615\n", M::MessageTooLarge, 6},
        {"size overflow", kHead + "size: 18446744073709551616\n", M::BadValue, 6},
        {"truncated message", kHead + "size: 100\nshort\n", M::Truncated, 7},
        {"missing end", drop_text(kHead, msg, ""), M::MissingEnd, 10},
        {"end unterminated", drop_text(kHead, msg, "end"), M::UnterminatedLine, 10},
        {"wrong end", drop_text(kHead, msg, "END\n"), M::MissingEnd, 10},
        {"data after end", drop_text(kHead, msg, "end\nmore"), M::TrailingData, 11},
        {"size too small", kHead + "size: 3\n" + msg + "end\n", M::MissingEnd, 7},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        auto r = read_maildrop(c.text);
        REQUIRE_FALSE(r.ok());
        INFO(r.error().to_string());
        CHECK(r.error().code == c.code);
        CHECK(r.error().line == c.line);
    }
    MaildropLimits two;
    two.max_recipients = 1;
    auto r = read_maildrop(drop_text(kHead + "rcpt: e@f\n", msg), two);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == MaildropErrc::TooManyRecipients);
    CHECK(r.error().line == 6);
}

TEST_CASE("maildrop: the writer enforces the limits", "[spool][maildrop]") {
    auto code = [](const Maildrop& d, const MaildropLimits& l = {}) {
        auto w = write_maildrop(d, l);
        REQUIRE_FALSE(w.ok());
        return w.error().code;
    };
    Maildrop d = sample_drop();
    d.recipients.clear();
    CHECK(code(d) == MaildropErrc::NoRecipients);
    d = sample_drop();
    d.recipients.push_back("");
    CHECK(code(d) == MaildropErrc::BadValue);
    d = sample_drop();
    d.sender = "a\nb";
    CHECK(code(d) == MaildropErrc::BadValue);
    d = sample_drop();
    MaildropLimits small;
    small.max_message_size = 10;
    CHECK(code(d, small) == MaildropErrc::MessageTooLarge);
    small = {};
    small.max_recipients = 1;
    CHECK(code(d, small) == MaildropErrc::TooManyRecipients);
}
