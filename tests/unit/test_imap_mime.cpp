// imapd/mime: structure, ENVELOPE, BODYSTRUCTURE and BODY[section] of a
// nested multipart message, byte-exact.
#include <catch2/catch.hpp>

#include <string>

#include "imapd/mime.hpp"

using namespace pbx::imap;

namespace {

const std::string kMultipart =
    "From: Alice Example <alice@example.test>\r\n"
    "To: bob@example.test, \"Carol, C.\" <carol@example.test>\r\n"
    "Cc: friends: dave@example.test, <erin@example.test>;\r\n"
    "Subject: Test\r\n"
    " folded\r\n"
    "Date: Tue, 1 Feb 2022 10:00:00 +0100\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--XX\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello\r\n"
    "world\r\n"
    "--XX\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "Subject: inner\r\n"
    "From: x@y.test\r\n"
    "\r\n"
    "inner body\r\n"
    "--XX\r\n"
    "Content-Type: multipart/alternative; boundary=YY\r\n"
    "\r\n"
    "--YY\r\n"
    "Content-Type: text/html\r\n"
    "Content-Disposition: inline; filename=\"a.html\"\r\n"
    "\r\n"
    "<p>hi</p>\r\n"
    "--YY--\r\n"
    "--XX--\r\n"
    "epilogue\r\n";

}  // namespace

TEST_CASE("mime: sections of a nested multipart message") {
    MimePart root = parse_mime(kMultipart);
    REQUIRE(root.multipart());
    REQUIRE(root.children.size() == 3);
    auto sec = [&](std::string_view s) { return body_section(kMultipart, root, s).value(); };
    CHECK(sec("") == kMultipart);
    CHECK(sec("1") == "Hello\r\nworld");
    CHECK(sec("1.MIME") == "Content-Type: text/plain; charset=utf-8\r\n\r\n");
    CHECK(sec("2") == "Subject: inner\r\nFrom: x@y.test\r\n\r\ninner body");
    CHECK(sec("2.HEADER") == "Subject: inner\r\nFrom: x@y.test\r\n\r\n");
    CHECK(sec("2.TEXT") == "inner body");
    CHECK(sec("2.1") == "inner body");
    CHECK(sec("3.1") == "<p>hi</p>");
    CHECK(sec("4").empty());
    CHECK(sec("1.2").empty());
    CHECK(sec("HEADER.FIELDS (SUBJECT date)") ==
          "Subject: Test\r\n folded\r\nDate: Tue, 1 Feb 2022 10:00:00 +0100\r\n\r\n");
    CHECK(sec("HEADER.FIELDS.NOT (From To Cc Subject Date Message-ID MIME-Version)") ==
          "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n");
    CHECK(sec("TEXT").substr(0, 10) == "preamble\r\n");
    CHECK(sec("HEADER").size() == kMultipart.find("\r\n\r\n") + 4);
    CHECK_FALSE(body_section(kMultipart, root, "1.").has_value());
    CHECK_FALSE(body_section(kMultipart, root, "MIME").has_value());
    CHECK_FALSE(body_section(kMultipart, root, "HEADER.FIELDS").has_value());
}

TEST_CASE("mime: envelope and bodystructure") {
    MimePart root = parse_mime(kMultipart);
    CHECK(envelope(kMultipart, root) ==
          "(\"Tue, 1 Feb 2022 10:00:00 +0100\" \"Test folded\" "
          "((\"Alice Example\" NIL \"alice\" \"example.test\")) "
          "((\"Alice Example\" NIL \"alice\" \"example.test\")) "
          "((\"Alice Example\" NIL \"alice\" \"example.test\")) "
          "((NIL NIL \"bob\" \"example.test\")(\"Carol, C.\" NIL \"carol\" \"example.test\")) "
          "((NIL NIL \"friends\" NIL)(NIL NIL \"dave\" \"example.test\")(NIL NIL \"erin\" "
          "\"example.test\")(NIL NIL NIL NIL)) NIL NIL \"<m1@example.test>\")");
    CHECK(bodystructure(kMultipart, root, false) ==
          "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 2)"
          "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 44 "
          "(NIL \"inner\" ((NIL NIL \"x\" \"y.test\")) ((NIL NIL \"x\" \"y.test\")) "
          "((NIL NIL \"x\" \"y.test\")) NIL NIL NIL NIL NIL) "
          "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 1) 4)"
          "((\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 9 1) \"ALTERNATIVE\") \"MIXED\")");
    std::string ext = bodystructure(kMultipart, root, true);
    CHECK(ext.find("(\"INLINE\" (\"FILENAME\" \"a.html\"))") != std::string::npos);
    CHECK(ext.find("\"MIXED\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)") != std::string::npos);
}

TEST_CASE("mime: simple, headerless and broken messages") {
    std::string simple = "Subject: x\r\n\r\nbody\r\n";
    MimePart r = parse_mime(simple);
    CHECK(body_section(simple, r, "1").value() == "body\r\n");
    CHECK(body_section(simple, r, "TEXT").value() == "body\r\n");
    CHECK(bodystructure(simple, r, false) ==
          "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 6 1)");
    std::string nohdr = "\r\nbody";
    r = parse_mime(nohdr);
    CHECK(body_section(nohdr, r, "HEADER").value() == "\r\n");
    CHECK(body_section(nohdr, r, "TEXT").value() == "body");
    std::string onlyhdr = "Subject: x";
    r = parse_mime(onlyhdr);
    CHECK(body_section(onlyhdr, r, "TEXT").value().empty());
    // A multipart without its boundary: one empty text part, no crash.
    std::string broken = "Content-Type: multipart/mixed; boundary=Q\r\n\r\nno parts here\r\n";
    r = parse_mime(broken);
    REQUIRE(r.children.size() == 1);
    CHECK(bodystructure(broken, r, false).find("\"MIXED\")") != std::string::npos);
    // Deep nesting is cut off at the limit.
    std::string deep;
    for (int i = 0; i < 50; ++i) deep += "Content-Type: message/rfc822\r\n\r\n";
    deep += "x";
    r = parse_mime(deep);
    CHECK(!bodystructure(deep, r, true).empty());
}

TEST_CASE("mime: CRLF conversion") {
    CHECK(to_crlf("a\nb\r\nc\n") == "a\r\nb\r\nc\r\n");
    CHECK(crlf_size("a\nb\r\nc\n") == 9);
    CHECK(to_crlf("\n") == "\r\n");
    CHECK(header_field("A: 1\r\nB: two\r\n  lines\r\n\r\n", "b").value() == "two  lines");
}
