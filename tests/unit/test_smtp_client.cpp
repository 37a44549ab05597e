// The SMTP client state machine (common/smtp/client.hpp) against scripted
// servers: every conversation is a table of server bytes and the exact
// client bytes expected in answer, run with the server's bytes fed whole and
// one byte at a time; replies, bodies and hostile servers included.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "common/smtp/client.hpp"

using namespace pbx::smtp::client;
using pbx::smtp::BodyType;
using pbx::smtp::DsnRet;

namespace {

// ---- the reply reader -------------------------------------------------

struct ReplyCase {
    const char* input;
    int code;  // 0: an error is expected
    std::vector<std::string> lines;
};

const ReplyCase kReplies[] = {
    {"220 mx.example.net ESMTP\r\n", 220, {"mx.example.net ESMTP"}},
    {"250\r\n", 250, {""}},
    {"250 ok\n", 250, {"ok"}},  // bare LF tolerated from servers
    {"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n", 250, {"mx", "PIPELINING", "SIZE 100"}},
    {"550 5.1.1 <b@x>: unknown\r\n", 550, {"5.1.1 <b@x>: unknown"}},
    {"abc hello\r\n", 0, {}},
    {"2500 x\r\n", 0, {}},
    {"25\r\n", 0, {}},
    {"650 no\r\n", 0, {}},
    {"199 no\r\n", 0, {}},
    {"260 no\r\n", 0, {}},
    {"250-a\r\n251 b\r\n", 0, {}},
    {"250_x\r\n", 0, {}},
};

std::vector<ReplyReader::Step> read_all(std::string_view input, bool bytewise,
                                        ReplyLimits limits = {}) {
    ReplyReader r(limits);
    std::vector<ReplyReader::Step> out;
    auto feed = [&](std::string_view in) {
        while (!in.empty()) {
            auto st = r.next(in);
            in.remove_prefix(st.consumed);
            if (st.status != ReplyReader::Status::NeedMore) out.push_back(st);
            if (st.status == ReplyReader::Status::Error) return false;
        }
        return true;
    };
    if (bytewise) {
        for (char c : input)
            if (!feed(std::string_view(&c, 1))) break;
    } else {
        feed(input);
    }
    return out;
}

TEST_CASE("reply reader: valid and invalid replies, whole and byte by byte") {
    for (bool bytewise : {false, true}) {
        for (const auto& c : kReplies) {
            INFO(c.input << (bytewise ? " (bytewise)" : ""));
            auto steps = read_all(c.input, bytewise);
            REQUIRE(steps.size() == 1);
            if (c.code == 0) {
                CHECK(steps[0].status == ReplyReader::Status::Error);
                CHECK(!steps[0].error.empty());
            } else {
                REQUIRE(steps[0].status == ReplyReader::Status::Reply);
                CHECK(steps[0].reply.code == c.code);
                CHECK(steps[0].reply.lines == c.lines);
            }
        }
    }
}

TEST_CASE("reply reader: limits on line length and line count") {
    ReplyLimits lim{64, 3};
    for (bool bytewise : {false, true}) {
        auto steps = read_all("250 " + std::string(100, 'x') + "\r\n", bytewise, lim);
        REQUIRE(steps.size() == 1);
        CHECK(steps[0].status == ReplyReader::Status::Error);
        CHECK_THAT(steps[0].error, Catch::Contains("longer than 64"));
        // Without any line end at all: refused once the limit is reached.
        steps = read_all(std::string(1000, '2'), bytewise, lim);
        REQUIRE(steps.size() == 1);
        CHECK(steps[0].status == ReplyReader::Status::Error);
        steps = read_all("250-a\r\n250-b\r\n250-c\r\n250 d\r\n", bytewise, lim);
        REQUIRE(steps.size() == 1);
        CHECK_THAT(steps[0].error, Catch::Contains("3 lines"));
    }
}

TEST_CASE("reply: enhanced codes and the one-line form") {
    Reply r{550, {"5.1.1 <b@x>: unknown", "5.1.1 try later\x01"}};
    CHECK(r.enhanced() == "5.1.1");
    CHECK(r.dsn() == "5.1.1");
    CHECK(r.one_line() == "550 5.1.1 <b@x>: unknown try later?");
    Reply plain{451, {"busy"}};
    CHECK(plain.enhanced() == "");
    CHECK(plain.dsn() == "4.0.0");
    Reply wrong_class{450, {"5.1.1 mismatched"}};
    CHECK(wrong_class.enhanced() == "");
    Reply longr{250, {std::string(2000, 'a')}};
    CHECK(longr.one_line().size() == 512);
}

TEST_CASE("EHLO keywords") {
    Reply r{250,
            {"mx hello", "PIPELINING", "SIZE 1000", "8BITMIME", "smtputf8", "DSN", "CHUNKING",
             "STARTTLS", "AUTH=LOGIN", "AUTH PLAIN CRAM-MD5", "ENHANCEDSTATUSCODES"}};
    Extensions e = parse_ehlo(r);
    CHECK(e.esmtp);
    CHECK(e.pipelining);
    CHECK(e.size);
    CHECK(e.size_limit == 1000);
    CHECK(e.eightbitmime);
    CHECK(e.smtputf8);
    CHECK(e.dsn);
    CHECK(e.chunking);
    CHECK(e.starttls);
    CHECK(e.auth_plain);
    CHECK(e.auth_login);
    Extensions none = parse_ehlo(Reply{250, {"mx", "SIZE"}});
    CHECK(none.size);
    CHECK(none.size_limit == 0);
    CHECK(!none.pipelining);
}

// ---- the body ---------------------------------------------------------

struct BodyCase {
    std::string in;
    std::string stuffed;  // DATA form
    std::string plain;    // BDAT form
};

const BodyCase kBodies[] = {
    {"", ".\r\n", ""},
    {"a", "a\r\n.\r\n", "a\r\n"},
    {"a\r\n", "a\r\n.\r\n", "a\r\n"},
    {".a\r\n", "..a\r\n.\r\n", ".a\r\n"},
    {"x\r\n.\r\n", "x\r\n..\r\n.\r\n", "x\r\n.\r\n"},
    {"a\nb\n.c\n", "a\r\nb\r\n..c\r\n.\r\n", "a\r\nb\r\n.c\r\n"},
    {"x\r", "x\r\n.\r\n", "x\r\n"},
    {"a\rb\r\n", "a\rb\r\n.\r\n", "a\rb\r\n"},
    {"a.b\r\n..\r\n", "a.b\r\n...\r\n.\r\n", "a.b\r\n..\r\n"},
};

std::string write_body(std::string_view text, bool stuff, size_t chunk) {
    BodyWriter w(text, stuff);
    std::string out;
    for (int guard = 0; guard < 100000; ++guard) {
        std::string piece = w.next(chunk);
        if (piece.empty()) break;
        out += piece;
    }
    CHECK(w.done());
    return out;
}

TEST_CASE("body: CRLF line ends, dot-stuffing, any chunk size") {
    for (const auto& c : kBodies) {
        INFO("input: " << c.in);
        for (size_t chunk : {1, 2, 3, 7, 4096}) {
            CHECK(write_body(c.in, true, chunk) == c.stuffed);
            CHECK(write_body(c.in, false, chunk) == c.plain);
        }
        CHECK(BodyWriter::normalized_size(c.in) == c.plain.size());
    }
}

// ---- conversations --------------------------------------------------------

struct Script {
    std::vector<std::pair<std::string, std::string>> turns;  // server bytes, client bytes
};

// Runs the session against the script. Results are collected by kind.
struct Run {
    Session s;
    std::string sent;
    std::map<size_t, RcptDone> results;
    std::vector<HostFailed> failures;
    int ready = 0;
    int done = 0;
    int starttls = 0;
    bool closed = false;

    explicit Run(Settings st) : s(std::move(st)) {}

    void pump() {
        for (auto& a : s.take_actions()) {
            if (auto* x = std::get_if<Send>(&a)) {
                sent += x->bytes;
            } else if (std::holds_alternative<SendBody>(a)) {
                for (std::string piece = s.next_body(5); !piece.empty(); piece = s.next_body(5))
                    sent += piece;
            } else if (auto* r = std::get_if<RcptDone>(&a)) {
                CHECK(results.count(r->index) == 0);
                results[r->index] = *r;
            } else if (auto* h = std::get_if<HostFailed>(&a)) {
                failures.push_back(*h);
            } else if (std::holds_alternative<Ready>(a)) {
                ++ready;
            } else if (std::holds_alternative<TransactionDone>(a)) {
                ++done;
            } else if (std::holds_alternative<StartTls>(a)) {
                ++starttls;
            } else if (std::holds_alternative<Close>(a)) {
                closed = true;
            }
        }
    }
    void server(std::string_view bytes, bool bytewise) {
        if (bytewise) {
            for (char c : bytes) {
                s.feed(std::string_view(&c, 1));
                pump();
            }
        } else {
            s.feed(bytes);
            pump();
        }
    }
    std::string take() {
        std::string out;
        out.swap(sent);
        return out;
    }
};

Transaction basic_tx(std::string_view text) {
    Transaction t;
    t.sender = "alice@example.test";
    t.recipients = {{"bob@example.net", 0, ""}, {"carol@example.net", 0, ""}};
    t.size = text.size();
    t.text = text;
    return t;
}

void converse(Run& r, const std::vector<std::pair<std::string, std::string>>& turns,
              bool bytewise) {
    for (const auto& [server, client] : turns) {
        INFO("server sent: " << server);
        r.server(server, bytewise);
        CHECK(r.take() == client);
    }
}

const std::string kGreet = "220 mx.example.net ESMTP\r\n";

}  // namespace

TEST_CASE("plain SMTP: EHLO, MAIL, RCPT one by one, DATA with dot-stuffing") {
    for (bool bytewise : {false, true}) {
        std::string text = "Subject: x\r\n\r\n.leading dot\r\nend";
        Settings st;
        st.helo_name = "mail.example.test";
        Run r(st);
        converse(r,
                 {{kGreet, "EHLO mail.example.test\r\n"},
                  {"250-mx.example.net\r\n250 8BITMIME\r\n", ""}},
                 bytewise);
        REQUIRE(r.ready == 1);
        Transaction t = basic_tx(text);
        t.body = BodyType::EightBitMime;
        t.ret = DsnRet::Full;  // no DSN offered: not sent
        r.s.start(t);
        r.pump();
        CHECK(r.take() == "MAIL FROM:<alice@example.test> BODY=8BITMIME\r\n");
        converse(r,
                 {{"250 2.1.0 ok\r\n", "RCPT TO:<bob@example.net>\r\n"},
                  {"250 2.1.5 ok\r\n", "RCPT TO:<carol@example.net>\r\n"},
                  {"550 5.1.1 <carol@example.net>: no such user\r\n", "DATA\r\n"},
                  {"354 go\r\n", "Subject: x\r\n\r\n..leading dot\r\nend\r\n.\r\n"},
                  {"250 2.0.0 Ok: queued as ABC\r\n", ""}},
                 bytewise);
        REQUIRE(r.results.size() == 2);
        CHECK(r.results[0].verdict == Verdict::Sent);
        CHECK(r.results[0].reply ==
              "250 2.0.0 Ok: queued as ABC (in reply to end of DATA command)");
        CHECK(r.results[0].dsn == "2.0.0");
        CHECK(r.results[1].verdict == Verdict::Failed);
        CHECK(r.results[1].dsn == "5.1.1");
        CHECK_THAT(r.results[1].reply,
                   Catch::Contains("no such user (in reply to RCPT TO command)"));
        CHECK(r.done == 1);
        CHECK(r.ready == 2);  // reusable at once
        r.s.quit();
        r.pump();
        CHECK(r.take() == "QUIT\r\n");
        r.server("221 bye\r\n", bytewise);
        CHECK(r.closed);
        CHECK(r.failures.empty());
    }
}

TEST_CASE("HELO when EHLO is refused; then no ESMTP parameters") {
    for (bool bytewise : {false, true}) {
        std::string text = "x\r\n";
        Run r(Settings{});
        converse(r,
                 {{kGreet, "EHLO localhost\r\n"},
                  {"502 5.5.1 what?\r\n", "HELO localhost\r\n"},
                  {"250 hi\r\n", ""}},
                 bytewise);
        REQUIRE(r.ready == 1);
        Transaction t = basic_tx(text);
        t.recipients.resize(1);
        t.recipients[0].notify = pbx::smtp::kNotifySuccess;
        t.recipients[0].orcpt = "rfc822;bob@example.net";
        r.s.start(t);
        r.pump();
        CHECK(r.take() == "MAIL FROM:<alice@example.test>\r\n");
        converse(r,
                 {{"250 ok\r\n", "RCPT TO:<bob@example.net>\r\n"},
                  {"250 ok\r\n", "DATA\r\n"},
                  {"354 go\r\n", "x\r\n.\r\n"},
                  {"250 queued\r\n", ""}},
                 bytewise);
        CHECK(r.results[0].verdict == Verdict::Sent);
        CHECK(r.results[0].dsn == "2.0.0");
    }
}

TEST_CASE("PIPELINING, SIZE, DSN: one write for MAIL, RCPTs and DATA") {
    for (bool bytewise : {false, true}) {
        std::string text = "hello\r\n";
        Run r(Settings{});
        converse(
            r,
            {{kGreet, "EHLO localhost\r\n"},
             {"250-mx\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-DSN\r\n250 8BITMIME\r\n", ""}},
            bytewise);
        Transaction t = basic_tx(text);
        t.ret = DsnRet::Hdrs;
        t.envid = "id+1=x";
        t.recipients[0].notify = pbx::smtp::kNotifySuccess | pbx::smtp::kNotifyFailure;
        t.recipients[0].orcpt = "rfc822;Bob+x@example.net";
        t.recipients[1].notify = pbx::smtp::kNotifyNever;
        r.s.start(t);
        r.pump();
        CHECK(
            r.take() ==
            "MAIL FROM:<alice@example.test> SIZE=7 RET=HDRS ENVID=id+2B1+3Dx\r\n"
            "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@example.net\r\n"
            "RCPT TO:<carol@example.net> NOTIFY=NEVER\r\n"
            "DATA\r\n");
        converse(r,
                 {{"250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n354 go\r\n", "hello\r\n.\r\n"},
                  {"250 2.0.0 queued\r\n", ""}},
                 bytewise);
        CHECK(r.results[0].verdict == Verdict::Sent);
        CHECK(r.results[1].verdict == Verdict::Deferred);
        CHECK(r.results[1].dsn == "4.3.0");
    }
}

TEST_CASE("PIPELINING: every recipient refused, DATA refused, RSET before reuse") {
    for (bool bytewise : {false, true}) {
        std::string text = "x\r\n";
        Run r(Settings{});
        converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 PIPELINING\r\n", ""}},
                 bytewise);
        r.s.start(basic_tx(text));
        r.pump();
        r.take();
        converse(r,
                 {{"250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
                   "RSET\r\n"},
                  {"250 ok\r\n", ""}},
                 bytewise);
        CHECK(r.results.size() == 2);
        CHECK(r.results[0].verdict == Verdict::Failed);
        CHECK(r.ready == 2);
        // A broken server that says 354 anyway gets an empty message.
        r.s.start(basic_tx(text));
        r.pump();
        r.take();
        r.results.clear();
        converse(r,
                 {{"250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n354 go\r\n", ".\r\n"},
                  {"554 5.5.1 no valid recipients\r\n", "RSET\r\n"},
                  {"250 ok\r\n", ""}},
                 bytewise);
        CHECK(r.results.size() == 2);
        CHECK(r.results[1].verdict == Verdict::Failed);
        CHECK(r.ready == 3);
    }
}

TEST_CASE("CHUNKING: BDAT with the exact size, after the RCPT replies") {
    for (bool bytewise : {false, true}) {
        std::string text = "a\n.b\n";  // normalized: "a\r\n.b\r\n", 7 bytes, no stuffing
        Run r(Settings{});
        converse(
            r,
            {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n", ""}},
            bytewise);
        r.s.start(basic_tx(text));
        r.pump();
        CHECK(r.take() ==
              "MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.net>\r\n"
              "RCPT TO:<carol@example.net>\r\n");
        converse(r,
                 {{"250 ok\r\n250 ok\r\n250 ok\r\n", "BDAT 7 LAST\r\na\r\n.b\r\n"},
                  {"250 2.0.0 queued\r\n", ""}},
                 bytewise);
        CHECK(r.results[0].verdict == Verdict::Sent);
        CHECK(r.results[1].verdict == Verdict::Sent);
        CHECK_THAT(r.results[1].reply, Catch::Contains("in reply to BDAT"));
    }
}

TEST_CASE("MAIL FROM: 4xx tries the next host, 5xx fails every recipient") {
    for (bool bytewise : {false, true}) {
        std::string text = "x\r\n";
        // 4xx: this host will not take the message now; nothing is decided,
        // the next MX may (as Postfix). Not the whole host's fault: message_only.
        Run r(Settings{});
        converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n", ""}}, bytewise);
        r.s.start(basic_tx(text));
        r.pump();
        r.take();
        converse(r, {{"451 4.7.1 greylisted\r\n", "QUIT\r\n"}}, bytewise);
        CHECK(r.results.empty());
        REQUIRE(r.failures.size() == 1);
        CHECK(r.failures[0].message_only);
        CHECK_FALSE(r.failures[0].retry_without_tls);
        CHECK(r.failures[0].reason == "451 4.7.1 greylisted (in reply to MAIL FROM command)");
        CHECK(r.closed);
        // 421: the host is closing; a host failure like a 4xx greeting.
        Run c(Settings{});
        converse(c, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 PIPELINING\r\n", ""}},
                 bytewise);
        c.s.start(basic_tx(text));
        c.pump();
        c.take();
        converse(c, {{"421 4.3.2 shutting down\r\n", "QUIT\r\n"}}, bytewise);
        CHECK(c.results.empty());
        REQUIRE(c.failures.size() == 1);
        CHECK_FALSE(c.failures[0].message_only);
        // 5xx: every recipient fails with the reply; the session is reusable.
        Run f(Settings{});
        converse(f, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n", ""}}, bytewise);
        f.s.start(basic_tx(text));
        f.pump();
        f.take();
        converse(f, {{"553 5.7.1 sender refused\r\n", "RSET\r\n"}, {"250 ok\r\n", ""}}, bytewise);
        CHECK(f.results[0].verdict == Verdict::Failed);
        CHECK(f.results[1].verdict == Verdict::Failed);
        CHECK(f.results[0].dsn == "5.7.1");
        CHECK(f.failures.empty());
        CHECK(f.ready == 2);
    }
}

TEST_CASE("RCPT TO: a 4xx defers that recipient only; 421 hands the rest to the next host") {
    for (bool bytewise : {false, true}) {
        std::string text = "x\r\n";
        Transaction t = basic_tx(text);
        t.recipients.push_back({"dave@example.net", 0, ""});
        // One by one: 450 for bob, the others delivered on this host.
        Run r(Settings{});
        converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n", ""}}, bytewise);
        r.s.start(t);
        r.pump();
        r.take();
        converse(r,
                 {{"250 ok\r\n", "RCPT TO:<bob@example.net>\r\n"},
                  {"450 4.2.1 mailbox busy\r\n", "RCPT TO:<carol@example.net>\r\n"},
                  {"250 ok\r\n", "RCPT TO:<dave@example.net>\r\n"},
                  {"250 ok\r\n", "DATA\r\n"},
                  {"354 go\r\n", "x\r\n.\r\n"},
                  {"250 2.0.0 queued\r\n", ""}},
                 bytewise);
        CHECK(r.results[0].verdict == Verdict::Deferred);
        CHECK(r.results[0].dsn == "4.2.1");
        CHECK(r.results[1].verdict == Verdict::Sent);
        CHECK(r.results[2].verdict == Verdict::Sent);
        CHECK(r.failures.empty());
        // Pipelined: 550 for the first, then 421: the first keeps its
        // result, the other two have none (the next host gets them).
        Run p(Settings{});
        converse(p, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 PIPELINING\r\n", ""}},
                 bytewise);
        p.s.start(t);
        p.pump();
        p.take();
        converse(p, {{"250 ok\r\n550 5.1.1 no\r\n421 4.3.2 closing\r\n", "QUIT\r\n"}}, bytewise);
        REQUIRE(p.results.size() == 1);
        CHECK(p.results[0].verdict == Verdict::Failed);
        REQUIRE(p.failures.size() == 1);
        CHECK_FALSE(p.failures[0].message_only);
        CHECK_THAT(p.failures[0].reason, Catch::Contains("in reply to RCPT TO"));
        CHECK(p.closed);
        // 421 to DATA after accepted recipients: nothing sent, next host.
        Run d(Settings{});
        converse(d, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 PIPELINING\r\n", ""}},
                 bytewise);
        d.s.start(t);
        d.pump();
        d.take();
        converse(d, {{"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n421 4.3.2 closing\r\n", "QUIT\r\n"}},
                 bytewise);
        CHECK(d.results.empty());
        REQUIRE(d.failures.size() == 1);
    }
}

TEST_CASE("STARTTLS at level may, then EHLO again; AUTH only over TLS") {
    for (bool bytewise : {false, true}) {
        Settings st;
        st.credentials = std::make_pair(std::string("user"), std::string("secret"));
        Run r(st);
        converse(r,
                 {{kGreet, "EHLO localhost\r\n"},
                  {"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n", "STARTTLS\r\n"},
                  {"220 go ahead\r\n", ""}},
                 bytewise);
        CHECK(r.starttls == 1);
        r.s.tls_done(TlsOutcome{true, false, "self-signed"});
        r.pump();
        CHECK(r.take() == "EHLO localhost\r\n");
        converse(r,
                 {{"250-mx\r\n250 AUTH PLAIN LOGIN\r\n", "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"},
                  {"235 2.7.0 ok\r\n", ""}},
                 bytewise);
        CHECK(r.ready == 1);
        CHECK(r.s.tls_active());
        CHECK(r.s.authenticated());
    }
}

TEST_CASE("AUTH LOGIN when PLAIN is not offered; a refusal fails the host") {
    for (bool bytewise : {false, true}) {
        Settings st;
        st.credentials = std::make_pair(std::string("user"), std::string("secret"));
        Run r(st);
        converse(r,
                 {{kGreet, "EHLO localhost\r\n"},
                  {"250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
                  {"220 go\r\n", ""}},
                 bytewise);
        r.s.tls_done(TlsOutcome{true, true, ""});
        r.pump();
        r.take();
        converse(r,
                 {{"250-mx\r\n250 AUTH LOGIN\r\n", "AUTH LOGIN\r\n"},
                  {"334 VXNlcm5hbWU6\r\n", "dXNlcg==\r\n"},
                  {"334 UGFzc3dvcmQ6\r\n", "c2VjcmV0\r\n"},
                  {"535 5.7.8 bad credentials\r\n", "QUIT\r\n"}},
                 bytewise);
        REQUIRE(r.failures.size() == 1);
        CHECK_THAT(r.failures[0].reason, Catch::StartsWith("5.7.0 authentication failed: 535"));
        CHECK(r.closed);
        CHECK(r.ready == 0);
    }
}

TEST_CASE("credentials are never sent without TLS") {
    Settings st;
    st.credentials = std::make_pair(std::string("user"), std::string("secret"));
    Run r(st);
    converse(r,
             {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 AUTH PLAIN LOGIN\r\n", "QUIT\r\n"}},
             false);
    REQUIRE(r.failures.size() == 1);
    CHECK_THAT(r.failures[0].reason, Catch::StartsWith("4.7.0 not sending credentials"));
    // Nor when STARTTLS is refused.
    Run r2(st);
    converse(r2,
             {{kGreet, "EHLO localhost\r\n"},
              {"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", "STARTTLS\r\n"},
              {"454 4.7.0 TLS not available\r\n", "QUIT\r\n"}},
             false);
    REQUIRE(r2.failures.size() == 1);
    CHECK_THAT(r2.failures[0].reason, Catch::Contains("454 4.7.0 TLS not available"));
}

TEST_CASE("TLS levels: encrypt without STARTTLS, verify with a bad certificate, failed handshake") {
    Settings enc;
    enc.tls = TlsLevel::Encrypt;
    Run r(enc);
    converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n", "QUIT\r\n"}}, false);
    REQUIRE(r.failures.size() == 1);
    CHECK(r.failures[0].reason == "4.7.4 TLS is required, but the host did not offer STARTTLS");

    Settings ver;
    ver.tls = TlsLevel::Verify;
    Run v(ver);
    converse(v,
             {{kGreet, "EHLO localhost\r\n"},
              {"250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
              {"220 go\r\n", ""}},
             false);
    v.s.tls_done(TlsOutcome{true, false, "hostname mismatch"});
    v.pump();
    CHECK(v.take() == "QUIT\r\n");
    REQUIRE(v.failures.size() == 1);
    CHECK(v.failures[0].reason == "4.7.5 server certificate not verified: hostname mismatch");
    CHECK(!v.failures[0].retry_without_tls);

    Run m(Settings{});  // level may
    converse(m,
             {{kGreet, "EHLO localhost\r\n"},
              {"250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
              {"220 go\r\n", ""}},
             false);
    m.s.tls_done(TlsOutcome{false, false, "wrong version number"});
    m.pump();
    CHECK(m.take() == "");  // nothing more on a broken TLS connection
    REQUIRE(m.failures.size() == 1);
    CHECK(m.failures[0].retry_without_tls);
    CHECK(m.closed);

    Settings none;
    none.tls = TlsLevel::None;
    Run n(none);
    converse(n, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 STARTTLS\r\n", ""}}, false);
    CHECK(n.ready == 1);
}

TEST_CASE("session-level failures: greeting, EHLO 4xx") {
    for (bool bytewise : {false, true}) {
        Run r(Settings{});
        converse(r, {{"421 4.3.2 busy\r\n", "QUIT\r\n"}}, bytewise);
        REQUIRE(r.failures.size() == 1);
        CHECK(r.failures[0].reason == "421 4.3.2 busy (in the greeting)");
        Run e(Settings{});
        converse(e, {{kGreet, "EHLO localhost\r\n"}, {"451 not now\r\n", "QUIT\r\n"}}, bytewise);
        REQUIRE(e.failures.size() == 1);
        CHECK(e.failures[0].reason == "451 not now (in reply to EHLO command)");
    }
}

TEST_CASE("SMTPUTF8 and SIZE: refused before anything is sent") {
    std::string text = "x\r\n";
    Run r(Settings{});
    converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 SIZE 2\r\n", ""}}, false);
    Transaction t = basic_tx(text);
    t.smtputf8 = true;
    r.s.start(t);
    r.pump();
    CHECK(r.take() == "");
    CHECK(r.results[0].verdict == Verdict::Failed);
    CHECK(r.results[0].dsn == "5.6.7");
    CHECK_THAT(r.results[0].reply, Catch::Contains("SMTPUTF8 is required"));
    CHECK(r.ready == 2);
    r.results.clear();
    r.s.start(basic_tx(text));  // 3 bytes > SIZE 2
    r.pump();
    CHECK(r.take() == "");
    CHECK(r.results[1].verdict == Verdict::Failed);
    CHECK(r.results[1].dsn == "5.3.4");
}

TEST_CASE("SMTPUTF8 offered: the parameter is sent") {
    std::string text = "x\r\n";
    Run r(Settings{});
    converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n250 SMTPUTF8\r\n", ""}}, false);
    Transaction t = basic_tx(text);
    t.smtputf8 = true;
    t.sender = "jörg@example.test";
    r.s.start(t);
    r.pump();
    CHECK(r.take() == "MAIL FROM:<jörg@example.test> SMTPUTF8\r\n");
}

TEST_CASE("hostile servers: long lines, bad codes, unsolicited replies") {
    struct Hostile {
        std::vector<std::pair<std::string, std::string>> turns;
        const char* reason;
    };
    std::vector<Hostile> cases = {
        {{{"220 " + std::string(5000, 'x') + "\r\n", ""}}, "longer than 2048"},
        {{{"22O hello\r\n", ""}}, "bad reply code"},
        {{{kGreet, "EHLO localhost\r\n"}, {"250-mx\r\n220 x\r\n", ""}}, "inside a 250 reply"},
        {{{kGreet, "EHLO localhost\r\n"}, {std::string(20000, '2'), ""}}, "longer than"},
        {{{kGreet, "EHLO localhost\r\n"},
          {"250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
          {"220 go\r\n250 smuggled\r\n", ""}},
         "unexpected reply"},
    };
    for (bool bytewise : {false, true}) {
        for (const auto& c : cases) {
            Run r(Settings{});
            converse(r, c.turns, bytewise);
            REQUIRE(r.failures.size() == 1);
            CHECK_THAT(r.failures[0].reason, Catch::StartsWith("4.4.2"));
            CHECK_THAT(r.failures[0].reason, Catch::Contains(c.reason));
            CHECK(r.closed);
            // Nothing more happens, whatever else arrives.
            r.server("250 more\r\n", bytewise);
            CHECK(r.take() == "");
            CHECK(r.failures.size() == 1);
        }
    }
    // An unsolicited reply on an idle session: it is closed (nothing to fail).
    Run idle(Settings{});
    converse(idle, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n250 unasked\r\n", ""}}, false);
    CHECK(idle.ready == 1);
    CHECK(idle.closed);
    CHECK(idle.failures.empty());
    // An EHLO reply with too many lines.
    std::string many = "250-mx\r\n";
    for (int i = 0; i < 200; ++i) many += "250-X" + std::to_string(i) + "\r\n";
    many += "250 end\r\n";
    Run r(Settings{});
    converse(r, {{kGreet, "EHLO localhost\r\n"}, {many, ""}}, false);
    REQUIRE(r.failures.size() == 1);
    CHECK_THAT(r.failures[0].reason, Catch::Contains("100 lines"));
}

TEST_CASE("a server that drops the connection: before and after the end of the message") {
    std::string text = "body\r\n";
    // Mid-DATA: nothing can have been delivered, the rest may go elsewhere.
    Run r(Settings{});
    converse(r, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n", ""}}, false);
    r.s.start(basic_tx(text));
    r.pump();
    r.take();
    converse(r,
             {{"250 ok\r\n", "RCPT TO:<bob@example.net>\r\n"},
              {"550 5.1.1 no\r\n", "RCPT TO:<carol@example.net>\r\n"},
              {"250 ok\r\n", "DATA\r\n"}},
             false);
    CHECK(r.s.phase() == Phase::DataInit);
    r.s.lost("connection reset by peer");
    r.pump();
    REQUIRE(r.failures.size() == 1);
    CHECK_THAT(r.failures[0].reason, Catch::Contains("lost connection while waiting for DATA"));
    CHECK(r.results.size() == 1);  // carol's 550 stands; bob has no result
    CHECK(r.closed);

    // After the final dot: deferred here, never tried elsewhere.
    Run d(Settings{});
    converse(d, {{kGreet, "EHLO localhost\r\n"}, {"250 mx\r\n", ""}}, false);
    Transaction t = basic_tx(text);
    t.recipients.resize(1);
    d.s.start(t);
    d.pump();
    d.take();
    converse(d,
             {{"250 ok\r\n", "RCPT TO:<bob@example.net>\r\n"},
              {"250 ok\r\n", "DATA\r\n"},
              {"354 go\r\n", "body\r\n.\r\n"}},
             false);
    CHECK(d.s.phase() == Phase::DataDone);
    d.s.timed_out();
    d.pump();
    CHECK(d.failures.empty());
    REQUIRE(d.results.size() == 1);
    CHECK(d.results[0].verdict == Verdict::Deferred);
    CHECK_THAT(d.results[0].reply, Catch::Contains("timed out"));
    CHECK(d.done == 1);
}

TEST_CASE("phases follow RFC 5321 4.5.3.2") {
    std::string text = "x\r\n";
    Run r(Settings{});
    CHECK(r.s.phase() == Phase::Greeting);
    converse(r, {{kGreet, "EHLO localhost\r\n"}}, false);
    CHECK(r.s.phase() == Phase::Command);
    converse(r, {{"250 mx\r\n", ""}}, false);
    CHECK(r.s.phase() == Phase::Idle);
    Transaction t = basic_tx(text);
    t.recipients.resize(1);
    r.s.start(t);
    r.pump();
    r.take();
    CHECK(r.s.phase() == Phase::Command);
    converse(r, {{"250 ok\r\n", "RCPT TO:<bob@example.net>\r\n"}, {"250 ok\r\n", "DATA\r\n"}},
             false);
    CHECK(r.s.phase() == Phase::DataInit);
}
