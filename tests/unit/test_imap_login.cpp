// imapd/login_engine: imap-login's pre-login state machine, fed whole and
// byte by byte: capabilities, STARTTLS, LOGIN (refused before TLS),
// AUTHENTICATE PLAIN with and without SASL-IR, failures, limits.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/smtp/sasl.hpp"
#include "imapd/login_engine.hpp"

using namespace pbx;
using namespace pbx::imap;

namespace {

login::ClientFacts facts(bool tls, bool plaintext = false) {
    login::ClientFacts f;
    f.client_ip = "192.0.2.1";
    f.tls = tls;
    f.starttls_offered = !tls;
    f.plaintext_allowed = plaintext;
    f.hostname = "mail.example.test";
    return f;
}

// Actions as text: replies verbatim, "<STARTTLS>", "<AUTH user pass tag>", "<CLOSE>".
std::string drain(login::Engine& e) {
    std::string out;
    for (auto& a : e.take_actions()) {
        if (auto* r = std::get_if<login::Reply>(&a)) out += r->text;
        if (std::get_if<login::StartTls>(&a)) out += "<STARTTLS>";
        if (auto* au = std::get_if<login::Authenticate>(&a))
            out += "<AUTH " + au->user + " " + au->password + " " + au->login_tag + ">";
        if (std::get_if<login::Close>(&a)) out += "<CLOSE>";
    }
    return out;
}

// Feeds `input` in pieces of `chunk` bytes; returns the actions and how much
// input was left unconsumed (the engine waits).
std::string run(login::Engine& e, std::string_view input, size_t chunk, size_t& left) {
    std::string out, pending;
    size_t pos = 0;
    while (pos < input.size()) {
        size_t n = std::min(chunk, input.size() - pos);
        pending.append(input.substr(pos, n));
        pos += n;
        size_t used = e.feed(pending);
        pending.erase(0, used);
        out += drain(e);
        if (e.waiting() || e.closed()) break;
    }
    left = pending.size() + (input.size() - pos);
    return out;
}

std::string plain(std::string_view authz, std::string_view user, std::string_view pass) {
    std::string raw = std::string(authz) + '\0' + std::string(user) + '\0' + std::string(pass);
    return smtp::sasl::base64_encode(raw);
}

}  // namespace

TEST_CASE("imap-login: greeting and capabilities follow TLS") {
    auto e = make_login_engine(facts(false));
    e->start();
    std::string g = drain(*e);
    CHECK(g.rfind("* OK [CAPABILITY IMAP4rev1 SASL-IR", 0) == 0);
    CHECK(g.find("STARTTLS") != std::string::npos);
    CHECK(g.find("LOGINDISABLED") != std::string::npos);
    CHECK(g.find("AUTH=PLAIN") == std::string::npos);
    auto t = make_login_engine(facts(true));
    t->start();
    g = drain(*t);
    CHECK(g.find("STARTTLS") == std::string::npos);
    CHECK(g.find("AUTH=PLAIN") != std::string::npos);
    CHECK(g.find("LOGINDISABLED") == std::string::npos);
}

TEST_CASE("imap-login: command table, whole and byte by byte") {
    struct Case {
        bool tls;
        std::string input;
        std::string expect;
    };
    const std::string ir = plain("", "alice", "demo");
    const Case cases[] = {
        {false, "a NOOP\r\n", "a OK NOOP completed\r\n"},
        {false, "a CAPABILITY\r\n",
         "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE STARTTLS LOGINDISABLED\r\n"
         "a OK Capability completed\r\n"},
        {false, "a LOGIN alice demo\r\n",
         "a NO [PRIVACYREQUIRED] Plaintext login is not allowed without TLS: use STARTTLS "
         "first\r\n"},
        {false, "a AUTHENTICATE PLAIN " + ir + "\r\n",
         "a NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS: use "
         "STARTTLS first\r\n"},
        {false, "a STARTTLS\r\nb LOGIN alice demo\r\n",
         "a OK Begin TLS negotiation now\r\n<STARTTLS>"},
        {true, "a STARTTLS\r\n", "a BAD TLS is already active\r\n"},
        {true, "a LOGIN alice demo\r\n", "<AUTH alice demo a>"},
        {true, "a LOGIN \"al ice\" {4+}\r\nde\"o\r\n", "<AUTH al ice de\"o a>"},
        {true, "a LOGIN {5}\r\nalice {4}\r\ndemo\r\n",
         "+ Ready for literal data\r\n+ Ready for literal data\r\n<AUTH alice demo a>"},
        {true, "t1 AUTHENTICATE PLAIN " + ir + "\r\n", "<AUTH alice demo t1>"},
        {true, "t1 AUTHENTICATE PLAIN\r\n" + ir + "\r\n", "+ \r\n<AUTH alice demo t1>"},
        {true, "t1 authenticate plain\r\n*\r\n", "+ \r\nt1 BAD Authentication cancelled\r\n"},
        {true, "t1 AUTHENTICATE PLAIN !!!!\r\n",
         "t1 BAD Invalid base64 in the authentication data\r\n"},
        {true, "t1 AUTHENTICATE PLAIN " + plain("bob", "alice", "demo") + "\r\n",
         "t1 NO [AUTHORIZATIONFAILED] Logging in as another user is not allowed\r\n"},
        {true, "t1 AUTHENTICATE CRAM-MD5\r\n", "t1 NO Unsupported authentication mechanism\r\n"},
        {true, "a SELECT INBOX\r\n", "a BAD SELECT is not allowed before login\r\n"},
        {true, "a FROB\r\n", "a BAD Unknown command FROB\r\n"},
        {true, "a ID NIL\r\n", "* ID (\"name\" \"Pillarbox\")\r\na OK ID completed\r\n"},
        {true, "a ID (\"name\" \"x\")\r\n",
         "* ID (\"name\" \"Pillarbox\")\r\na OK ID completed\r\n"},
        {true, "a LOGOUT\r\n", "* BYE Logging out\r\na OK Logout completed\r\n<CLOSE>"},
        {true, "a LOGIN alice\r\n", "a BAD Usage: LOGIN user password\r\n"},
        {true, "a LOGIN \"\" demo\r\n", "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"},
        {true, "a APPEND INBOX {10+}\r\n0123456789\r\n",
         "a BAD APPEND is not allowed before login\r\n"},
        {true, "a APPEND INBOX {5000}\r\n",
         "a NO [TOOBIG] Message too large (APPENDLIMIT 4096)\r\n"},
    };
    for (const auto& c : cases) {
        for (size_t chunk : {c.input.size(), size_t{1}, size_t{5}}) {
            INFO(c.input << " chunk " << chunk);
            auto e = make_login_engine(facts(c.tls));
            e->start();
            drain(*e);
            size_t left = 0;
            CHECK(run(*e, c.input, chunk, left) == c.expect);
        }
    }
}

TEST_CASE("imap-login: STARTTLS stops reading; nothing pipelined is used") {
    auto e = make_login_engine(facts(false));
    e->start();
    drain(*e);
    std::string in = "a STARTTLS\r\nb LOGIN alice demo\r\n";
    size_t used = e->feed(in);
    CHECK(used == std::string("a STARTTLS\r\n").size());
    CHECK(e->waiting());
    CHECK(drain(*e) == "a OK Begin TLS negotiation now\r\n<STARTTLS>");
    CHECK(e->feed("b LOGIN alice demo\r\n") == 0);
    e->tls_started();
    CHECK_FALSE(e->waiting());
    CHECK(e->feed("c CAPABILITY\r\n") > 0);
    std::string caps = drain(*e);
    CHECK(caps.find("STARTTLS") == std::string::npos);
    CHECK(caps.find("AUTH=PLAIN") != std::string::npos);
    e->feed("d LOGIN alice demo\r\n");
    CHECK(drain(*e) == "<AUTH alice demo d>");
}

TEST_CASE("imap-login: failures, temporary failures, limits") {
    auto e = make_login_engine(facts(true));
    e->start();
    drain(*e);
    e->feed("a LOGIN alice wrong\r\n");
    CHECK(drain(*e) == "<AUTH alice wrong a>");
    CHECK(e->feed("b NOOP\r\n") == 0);  // waits for the answer
    e->auth_result(login::AuthOutcome::TempFail);
    CHECK(drain(*e) == "a NO [UNAVAILABLE] Temporary authentication failure, try again later\r\n");
    e->feed("b LOGIN alice wrong\r\n");
    drain(*e);
    e->auth_result(login::AuthOutcome::Fail);
    CHECK(drain(*e) == "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    e->feed("c LOGIN alice wrong\r\n");
    drain(*e);
    e->auth_result(login::AuthOutcome::Fail);
    drain(*e);
    e->feed("d LOGIN alice wrong\r\n");
    drain(*e);
    e->auth_result(login::AuthOutcome::Fail);
    std::string last = drain(*e);
    CHECK(last.find("* BYE Too many failed logins") != std::string::npos);
    CHECK(e->closed());
    // Bad commands: the 20th closes.
    auto b = make_login_engine(facts(true));
    b->start();
    drain(*b);
    std::string in;
    for (int i = 0; i < 25; ++i) in += "x FROB\r\n";
    b->feed(in);
    std::string out = drain(*b);
    CHECK(out.find("* BYE Too many bad commands") != std::string::npos);
    CHECK(b->closed());
    // Timeout and shutdown say BYE.
    auto t = make_login_engine(facts(true));
    t->timed_out();
    CHECK(drain(*t) == "* BYE Autologout; idle for too long\r\n<CLOSE>");
}
