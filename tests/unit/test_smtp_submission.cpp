// The submission policy of the one SMTP engine (submitd: AUTH required,
// senders and relayed recipients vetted by the glue) and every SASL error,
// as tables of sessions fed whole and one byte at a time.
#include "common/smtp/submission_filter.hpp"
#include "tests/unit/test_smtp_harness.hpp"

using namespace smtp_test;

namespace {

const std::string kEhlo = "EHLO client.example.org\r\n";
const std::string kOwnMail = "MAIL FROM:<user@example.com>\r\n";
const std::string kBody = "Subject: test\r\n\r\nHello\r\n.\r\n";
// PLAIN "\0user\0pass"
const std::string kAuthPlain = "AUTH PLAIN AHVzZXIAcGFzcw==\r\n";
const std::string kAuthed = kEhlo + kAuthPlain;

}  // namespace

TEST_CASE("submission: AUTH required, senders and relays vetted", "[smtp][submission]") {
    check_sessions({
        {"MAIL before AUTH is refused, RCPT has no transaction",
         Setup::Submit,
         {kEhlo, kOwnMail, "RCPT TO:<x@elsewhere.org>\r\n", "DATA\r\n"},
         {"250", "530 5.7.0", "503 5.5.1", "503 5.5.1"}},
        {"own sender, a relayed and a local recipient, queued",
         Setup::Submit,
         {kEhlo, kAuthPlain, kOwnMail, "RCPT TO:<x@elsewhere.org>\r\n",
          "RCPT TO:<alice@example.com>\r\n", "DATA\r\n", kBody},
         {"250", "235 2.7.0", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"}},
        {"a sender the user does not own: 553, and no transaction",
         Setup::Submit,
         {kAuthed, "MAIL FROM:<boss@example.com>\r\n", "RCPT TO:<x@elsewhere.org>\r\n", kOwnMail,
          "RCPT TO:<x@elsewhere.org>\r\n"},
         {"250", "235 2.7.0", "553 5.7.1", "503 5.5.1", "250 2.1.0", "250 2.1.5"}},
        {"the null sender, a temporary failure, a rate limit",
         Setup::Submit,
         {kAuthed, "MAIL FROM:<>\r\n", "RSET\r\n", "MAIL FROM:<tempfail@example.com>\r\n",
          "MAIL FROM:<busy@example.com>\r\n"},
         {"250", "235 2.7.0", "250 2.1.0", "250 2.0.0", "451 4.3.0", "450 4.7.1"}},
        {"recipients over the hourly limit get 450, others go on",
         Setup::Submit,
         {kAuthed, kOwnMail, "RCPT TO:<ratelimited@elsewhere.org>\r\n",
          "RCPT TO:<y@elsewhere.org>\r\n", "RCPT TO:<nobody@example.com>\r\n"},
         {"250", "235 2.7.0", "250 2.1.0", "450 4.7.1", "250 2.1.5", "550 5.1.1"}},
        {"everything pipelined in one packet",
         Setup::Submit,
         {kAuthed + kOwnMail + "RCPT TO:<x@elsewhere.org>\r\nDATA\r\n" + kBody + "QUIT\r\n"},
         {"250", "235 2.7.0", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0", "close"}},
        {"without AUTH nothing relays, not even to our own domain",
         Setup::Submit,
         {kEhlo, "MAIL FROM:<user@example.com> AUTH=<>\r\n"},
         {"250", "530 5.7.0"}},
    });

    // The vetting outputs name what is vetted.
    Driver d{Fixture(Setup::Submit)};
    Run r = d.run(
        {kAuthed, kOwnMail, "RCPT TO:<X@Elsewhere.org>\r\n", "RCPT TO:<alice@example.com>\r\n"},
        false);
    CHECK(std::find(r.events.begin(), r.events.end(), "S:user@example.com") != r.events.end());
    CHECK(std::find(r.events.begin(), r.events.end(), "V:X@Elsewhere.org") != r.events.end());
    CHECK(std::find(r.events.begin(), r.events.end(), "L:alice@example.com") != r.events.end());
}

TEST_CASE("submission: recipients per message", "[smtp][submission][limits]") {
    Fixture f(Setup::Submit);
    f.limits.max_recipients = 2;
    Run r = run_both(
        f, {kAuthed, kOwnMail, "RCPT TO:<a@elsewhere.org>\r\n", "RCPT TO:<b@elsewhere.org>\r\n",
            "RCPT TO:<c@elsewhere.org>\r\n", "DATA\r\n", kBody});
    CHECK(r.codes() == std::vector<std::string>{"250", "235 2.7.0", "250 2.1.0", "250 2.1.5",
                                                "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"});
}

TEST_CASE("submission: every SASL error", "[smtp][submission][sasl]") {
    check_sessions({
        {"bad base64 as initial response and as continuation: 501 5.5.2",
         Setup::Submit,
         {kEhlo, "AUTH PLAIN AHVzZXIAcGFzcw=\r\n", "AUTH PLAIN not-base64\r\n", "AUTH PLAIN\r\n",
          "AHVzZXIAcGFzcw=!\r\n", "AUTH LOGIN\r\n", "dXNlcg\r\n", "AUTH LOGIN\r\n", "dXNlcg==\r\n",
          "cGFz=3M\r\n", kAuthPlain},
         {"250", "501 5.5.2", "501 5.5.2", "334", "501 5.5.2", "334", "501 5.5.2", "334", "334",
          "501 5.5.2", "235 2.7.0"}},
        {"bits hidden by the padding must be zero",
         Setup::Submit,
         {kEhlo, "AUTH PLAIN AHVzZXIAcGFzcx==\r\n"},
         {"250", "501 5.5.2"}},
        {"* cancels at every step: 501",
         Setup::Submit,
         {kEhlo, "AUTH PLAIN\r\n", "*\r\n", "AUTH LOGIN\r\n", "*\r\n", "AUTH LOGIN\r\n",
          "dXNlcg==\r\n", "*\r\n", "AUTH LOGIN dXNlcg==\r\n", "*\r\n"},
         {"250", "334", "501 5.0.0", "334", "501 5.0.0", "334", "334", "501 5.0.0", "334",
          "501 5.0.0"}},
        {"bad credentials: 535 5.7.8, then a good try works",
         Setup::Submit,
         {kEhlo, "AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n", "AUTH LOGIN\r\n", "dXNlcg==\r\n",
          "d3Jvbmc=\r\n", "AUTH PLAIN AG5vYm9keQBwYXNz\r\n", kAuthPlain},
         {"250", "535 5.7.8", "334", "334", "535 5.7.8", "535 5.7.8", "235 2.7.0"}},
        {"AUTH twice: 503",
         Setup::Submit,
         {kAuthed, kAuthPlain, "AUTH LOGIN\r\n"},
         {"250", "235 2.7.0", "503 5.5.1", "503 5.5.1"}},
        {"decodes, but is not PLAIN or LOGIN: 501 5.5.2",
         Setup::Submit,
         // "userpass" (no NUL), "\0user" (one NUL), "\0\0pass" (empty user),
         // LOGIN with an empty user name, invalid UTF-8 in PLAIN
         {kEhlo, "AUTH PLAIN dXNlcnBhc3M=\r\n", "AUTH PLAIN AHVzZXI=\r\n",
          "AUTH PLAIN AABwYXNz\r\n", "AUTH LOGIN =\r\n", "AUTH PLAIN AP91c2VyAHBhc3M=\r\n"},
         {"250", "501 5.5.2", "501 5.5.2", "501 5.5.2", "501 5.5.2", "501 5.5.2"}},
        {"an empty PLAIN initial response is malformed; what follows is a command",
         Setup::Submit,
         {kEhlo, "AUTH PLAIN =\r\n", "AHVzZXIAcGFzcw==\r\n"},
         {"250", "501 5.5.2", "500 5.5.2"}},
        {"unknown mechanism, missing mechanism, extra arguments",
         Setup::Submit,
         {kEhlo, "AUTH CRAM-MD5\r\n", "AUTH\r\n", "AUTH PLAIN a b\r\n", "AUTH SCRAM-SHA-1 x\r\n"},
         {"250", "504 5.5.4", "501 5.5.4", "501 5.5.4", "504 5.5.4"}},
        {"AUTH inside a transaction: 503; temporary failure: 454",
         Setup::Submit,
         {kEhlo, "AUTH PLAIN AHRlbXB1c2VyAHBhc3M=\r\n", kAuthPlain, kOwnMail, kAuthPlain},
         {"250", "454 4.7.0", "235 2.7.0", "250 2.1.0", "503 5.5.1"}},
        {"AUTH before TLS on 587: not offered, 538 5.7.11",
         Setup::MsaPlain,
         {kEhlo, kAuthPlain, "AUTH LOGIN\r\n"},
         {"250", "538 5.7.11", "538 5.7.11"}},
        {"AUTH before EHLO or after HELO: 503",
         Setup::Submit,
         {kAuthPlain, "HELO client.example.org\r\n", kAuthPlain},
         {"503 5.5.1", "250", "503 5.5.1"}},
    });
}

TEST_CASE("submission: over-long SASL lines are refused", "[smtp][submission][sasl][limits]") {
    Fixture f(Setup::Submit);
    f.limits.sasl_line_limit = 1000;
    Run r = run_both(f, {kEhlo, "AUTH PLAIN\r\n", std::string(1200, 'A') + "\r\n", "AUTH LOGIN\r\n",
                         "dXNlcg==\r\n", std::string(5000, 'A') + "\r\n",
                         "AUTH PLAIN " + std::string(1200, 'A') + "\r\n", kAuthPlain});
    CHECK(r.codes() == std::vector<std::string>{"250", "334", "500 5.5.6", "334", "334",
                                                "500 5.5.6", "500 5.5.2", "235 2.7.0"});
    // Nothing of the long lines reached the glue as credentials.
    CHECK(r.count<Authenticate>() == 1);
}

TEST_CASE("submission: the glue's message verdict with its own code", "[smtp][submission]") {
    Fixture f(Setup::Submit);
    Engine e(f.limits, f.policy, f.session);
    e.feed(kEhlo + kAuthPlain);
    (void)e.take_output();
    REQUIRE(e.auth_result(AuthResult::success("user")));
    e.feed(kOwnMail);
    REQUIRE(e.sender_result(SenderResult::accept()));
    e.feed("RCPT TO:<x@elsewhere.org>\r\n");
    REQUIRE(e.recipient_result(RecipientResult::found("x@elsewhere.org")));
    e.feed("DATA\r\n" + kBody);
    (void)e.take_output();
    CHECK_FALSE(e.sender_result(SenderResult::accept()));  // nothing pending
    REQUIRE(e.message_result(MessageResult::perm_fail(
        "<boss@example.com>: From: address not owned by user", "5.7.1", 553)));
    auto out = e.take_output();
    REQUIRE(out.size() == 1);
    CHECK(std::get<Reply>(out[0]).text ==
          "553 5.7.1 <boss@example.com>: From: address not owned by user\r\n");
    // A code outside 550..559 falls back to 554.
    e.feed(kOwnMail);
    REQUIRE(e.sender_result(SenderResult::accept()));
    e.feed("RCPT TO:<x@elsewhere.org>\r\n");
    REQUIRE(e.recipient_result(RecipientResult::found("x@elsewhere.org")));
    e.feed("DATA\r\n" + kBody);
    (void)e.take_output();
    REQUIRE(e.message_result(MessageResult::perm_fail("no", "5.7.1", 250)));
    out = e.take_output();
    REQUIRE(out.size() == 1);
    CHECK(std::get<Reply>(out[0]).text == "554 5.7.1 no\r\n");
}

// ---- the RFC 6409 §8 fix-ups and the From: collection -----------------------

namespace {

struct Filtered {
    std::string text;
    std::vector<std::string> from;
    SubmissionFilter::Problem problem;
};

Filtered filter(std::string_view message, bool bytewise, size_t max_header = 256 * 1024) {
    SubmissionFilter::Options o;
    o.date = "Thu, 26 Nov 2026 01:02:03 +0000";
    o.message_id = "<id@mail.example.com>";
    o.max_header = max_header;
    o.max_from = 3;
    SubmissionFilter f(o);
    std::string out;
    if (bytewise) {
        for (char c : message) out += f.feed(std::string_view(&c, 1));
    } else {
        out += f.feed(message);
    }
    out += f.finish();
    CHECK(f.header_done());
    return {out, f.from(), f.problem()};
}

}  // namespace

TEST_CASE("submission filter: Date and Message-ID added when missing", "[smtp][submission]") {
    using P = SubmissionFilter::Problem;
    const std::string kDate = "Date: Thu, 26 Nov 2026 01:02:03 +0000\r\n";
    const std::string kId = "Message-ID: <id@mail.example.com>\r\n";
    struct Case {
        std::string in, out;
        std::vector<std::string> from;
        P problem = P::None;
    };
    const Case cases[] = {
        {"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n",
         "From: a@b.example\r\nSubject: x\r\n" + kDate + kId + "\r\nbody\r\n",
         {"a@b.example"}},
        {"From: A <a@b.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
         "Message-Id: <x@y>\r\n\r\nbody\r\n",
         "From: A <a@b.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
         "Message-Id: <x@y>\r\n\r\nbody\r\n",
         {"a@b.example"}},
        {"date : x\r\n\r\n", "date : x\r\n" + kId + "\r\n", {}},
        // Folded From: with a group and a comment; two addresses.
        {"From: (me) a@b.example,\r\n Group: c@d.example;\r\n\r\n.\r\n",
         "From: (me) a@b.example,\r\n Group: c@d.example;\r\n" + kDate + kId + "\r\n.\r\n",
         {"a@b.example", "c@d.example"}},
        // Two From: fields: both count.
        {"From: a@b.example\r\nFrom: c@d.example\r\n\r\n",
         "From: a@b.example\r\nFrom: c@d.example\r\n" + kDate + kId + "\r\n",
         {"a@b.example", "c@d.example"}},
        // No header at all: the fields go before the empty line.
        {"\r\nbody only\r\n", kDate + kId + "\r\nbody only\r\n", {}},
        // Header fields only, the last without CRLF.
        {"Subject: x", "Subject: x\r\n" + kDate + kId, {}},
        // Body without the empty line: the fields go before it.
        {"Subject: x\r\nnot a field\r\n", "Subject: x\r\n" + kDate + kId + "not a field\r\n", {}},
        // Body bytes that look like headers stay untouched.
        {"Subject: x\r\n\r\nFrom: evil@x.example\r\n\r\n",
         "Subject: x\r\n" + kDate + kId + "\r\nFrom: evil@x.example\r\n\r\n",
         {}},
        {"From: <a@b.example\r\n\r\n",
         "From: <a@b.example\r\n" + kDate + kId + "\r\n",
         {},
         P::BadFrom},
        {"From: a@x.example, b@x.example, c@x.example, d@x.example\r\n\r\n",
         "From: a@x.example, b@x.example, c@x.example, d@x.example\r\n" + kDate + kId + "\r\n",
         {"a@x.example", "b@x.example", "c@x.example"},
         P::TooManyFrom},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        for (bool bytewise : {false, true}) {
            Filtered f = filter(c.in, bytewise);
            CHECK(f.text == c.out);
            CHECK(f.from == c.from);
            CHECK(f.problem == c.problem);
        }
    }
}

TEST_CASE("submission filter: the held header section is bounded", "[smtp][submission]") {
    std::string big = "From: a@b.example\r\n";
    while (big.size() < 3000) big += "X-Filler: 0123456789012345678901234567890123456789\r\n";
    // Within the bound: fixed up; beyond it: passed through and flagged.
    Filtered ok = filter(big + "\r\nbody\r\n", true, 4096);
    CHECK(ok.problem == SubmissionFilter::Problem::None);
    CHECK(ok.text.find("Message-ID: <id@mail.example.com>\r\n\r\nbody") != std::string::npos);
    std::string huge = big + big;
    Filtered bad = filter(huge + "\r\nbody\r\n", true, 4096);
    CHECK(bad.problem == SubmissionFilter::Problem::HeaderTooLarge);
    CHECK(bad.text == huge + "\r\nbody\r\n");
}
