// SMTP smuggling, every Limits field, pipelining back-pressure and the
// glue-driven events (pregreet, timeouts, shutdown).
#include "tests/unit/test_smtp_harness.hpp"

using namespace smtp_test;

namespace {

const std::string kEhlo = "EHLO client.example.org\r\n";
const std::string kMail = "MAIL FROM:<sender@example.org>\r\n";
const std::string kRcpt = "RCPT TO:<alice@example.com>\r\n";
const std::string kStart = kEhlo + kMail + kRcpt + "DATA\r\n";
const std::vector<std::string> kStartCodes = {"250", "250 2.1.0", "250 2.1.5", "354"};

std::string escape(std::string_view s) {
    std::string out;
    for (char c : s)
        out += c == '\r' ? std::string("\\r") : c == '\n' ? std::string("\\n") : std::string(1, c);
    return out;
}

std::vector<std::string> with_start(std::vector<std::string> rest) {
    std::vector<std::string> all = kStartCodes;
    all.insert(all.end(), rest.begin(), rest.end());
    return all;
}

}  // namespace

TEST_CASE("smtp smuggling: only CRLF.CRLF ends DATA", "[smtp][smuggling]") {
    // Each variant is followed by a smuggled second transaction. None of it
    // may run: the message is refused at the real end (550 5.6.0), nothing
    // reaches the queue, and the session goes on.
    const std::string smuggled =
        "MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
        "DATA\r\nSmuggled\r\n";
    const std::vector<std::string> variants = {
        "\n.\n",   "\r.\r",       "\r\n.\n",   "\n.\r\n",   "\r.\r\n", "\n.\r",
        "\r\n.\r", "\r\n.\r\r\n", "\n\n.\n\n", "\r\r.\r\r", ".\n",     "\r\n\n.\r\n",
    };
    for (const auto& v : variants) {
        INFO("variant: " << escape(v));
        for (bool split : {false, true}) {
            std::vector<std::string> packets;
            if (split) {
                packets = {kStart, "Subject: x\r\n\r\nbody", v, smuggled, ".\r\n", "NOOP\r\n"};
            } else {
                packets = {kStart + "Subject: x\r\n\r\nbody" + v + smuggled + ".\r\nNOOP\r\n"};
            }
            Run r = run_both(Fixture(Setup::Mta), packets);
            CHECK(r.codes() == with_start({"550 5.6.0", "250 2.0.0"}));
            CHECK(r.count<BeginMessage>() == 1);
            CHECK(r.count<EndMessage>() == 0);
            CHECK(r.count<AbortMessage>() == 1);
            CHECK(r.count<LookupRecipient>() == 1);  // bob was never looked up
        }
    }
}

TEST_CASE("smtp smuggling: bare CR/LF in commands never run a command", "[smtp][smuggling]") {
    check_sessions({
        {"bare LF ends nothing",
         Setup::Mta,
         {kEhlo, "NOOP\nMAIL FROM:<a@b.org>\r\n", "RCPT TO:<alice@example.com>\r\n"},
         {"250", "500 5.5.2", "503 5.5.1"}},
        {"every bare LF is answered, nothing after it runs",
         Setup::Mta,
         {kEhlo + "MAIL FROM:<a@b.org>\nRCPT TO:<alice@example.com>\nDATA\n" + "NOOP\r\n",
          "NOOP\r\n"},
         // the first NOOP's CRLF ends the refused line; the second NOOP runs
         {"250", "500 5.5.2", "500 5.5.2", "500 5.5.2", "250 2.0.0"}},
        {"bare CR inside a line",
         Setup::Mta,
         {kEhlo, "NOOP\rMAIL FROM:<a@b.org>\r\n", "RSET\r\r\n", "\rQUIT\r\n", kMail},
         {"250", "500 5.5.2", "500 5.5.2", "500 5.5.2", "250 2.1.0"}},
        {"bare LF after DATA is refused, data never starts",
         Setup::Mta,
         {kEhlo + kMail + kRcpt + "DATA\n" + "Subject: x\r\n.\r\n", "NOOP\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "500 5.5.2", "500 5.5.2", "250 2.0.0"}},
        {"dot-stuffing round trip",
         Setup::Mta,
         {kStart + "..\r\n...x\r\n.\r\n"},
         with_start({"250 2.0.0"})},
        {"bare LF in a BDAT chunk fails the message",
         Setup::Mta,
         {kEhlo + kMail + kRcpt + "BDAT 7 LAST\r\na\n.\nb\r\n", "NOOP\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "550 5.6.0", "250 2.0.0"}},
        {"bare CR at the end of the last BDAT chunk",
         Setup::Mta,
         {kEhlo + kMail + kRcpt + "BDAT 2\r\na\r", "BDAT 1 LAST\r\nb", "NOOP\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "550 5.6.0", "250 2.0.0"}},
        {"CR and LF split across BDAT chunks is a CRLF",
         Setup::Mta,
         {kEhlo + kMail + kRcpt + "BDAT 2\r\na\r", "BDAT 1 LAST\r\n\n", "NOOP\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
    });

    Run r = run_both(Fixture(Setup::Mta), {kStart + "..\r\n...x\r\n.\r\n"});
    CHECK(r.last_message() == ".\r\n..x\r\n");
    r = run_both(Fixture(Setup::Mta), {kEhlo + kMail + kRcpt + "BDAT 3 LAST\r\na.b"});
    CHECK(r.last_message() == "a.b\r\n");  // the queue gets a final CRLF
    r = run_both(Fixture(Setup::Mta), {kEhlo + kMail + kRcpt + "BDAT 0 LAST\r\n"});
    CHECK(r.last_message().empty());
    CHECK(r.count<EndMessage>() == 1);
}

TEST_CASE("smtp limits: command line length", "[smtp][limits]") {
    // "NOOP " + filler + CRLF: exactly 512 octets passes, 513 does not, and
    // after a long line the session goes on.
    const std::string ok = "NOOP " + std::string(505, 'x') + "\r\n";
    const std::string too_long = "NOOP " + std::string(506, 'x') + "\r\n";
    REQUIRE(ok.size() == 512);
    check_sessions({
        {"512 octets", Setup::Mta, {ok}, {"250 2.0.0"}},
        {"513 octets", Setup::Mta, {too_long, "NOOP\r\n"}, {"500 5.5.2", "250 2.0.0"}},
        {"very long line with a command inside",
         Setup::Mta,
         {std::string(2000, 'x') + "\r\nQUIT\r\n" + std::string(1000, 'y') + "\r\n", "NOOP\r\n"},
         {"500 5.5.2", "221 2.0.0", "close"}},
        {"long line tail with a fake CRLF split",
         Setup::Mta,
         {std::string(600, 'x') + "\r", "MAIL FROM:<a@b.org>\r\n", "NOOP\r\n"},
         {"500 5.5.2", "250 2.0.0"}},
    });

    Fixture f(Setup::Mta);
    f.limits.line_limit = 64;
    Run r = run_both(f, {"NOOP " + std::string(57, 'x') + "\r\n",
                         "NOOP " + std::string(58, 'x') + "\r\n", kEhlo});
    CHECK(r.codes() == std::vector<std::string>{"250 2.0.0", "500 5.5.2", "250"});
}

TEST_CASE("smtp limits: text line length", "[smtp][limits]") {
    Fixture f(Setup::Mta);
    f.limits.text_line_limit = 100;
    const std::string line98 = std::string(98, 'x') + "\r\n";  // 100 with CRLF
    const std::string line99 = std::string(99, 'x') + "\r\n";
    Run r = run_both(
        f, {kStart, line98 + ".\r\n", kMail + kRcpt + "DATA\r\n", line99 + ".\r\n", "NOOP\r\n"});
    CHECK(r.codes() ==
          with_start({"250 2.0.0", "250 2.1.0", "250 2.1.5", "354", "550 5.6.0", "250 2.0.0"}));
    CHECK(r.events[r.events.size() - 2] ==
          "R:550 5.6.0 Error: message line longer than 100 octets\r\n");
    // default: 64 KiB lines pass
    r = run_both(Fixture(Setup::Mta), {kStart + std::string(60000, 'y') + "\r\n.\r\n"});
    CHECK(r.codes() == with_start({"250 2.0.0"}));
}

TEST_CASE("smtp limits: recipients per message", "[smtp][limits]") {
    Fixture f(Setup::Mta);
    f.limits.max_recipients = 2;
    Run r = run_both(f, {kEhlo + kMail + kRcpt + "RCPT TO:<bob@example.com>\r\n" + kRcpt +
                         "DATA\r\n" + "x\r\n.\r\n" + kMail + kRcpt});
    CHECK(r.codes() == std::vector<std::string>{"250", "250 2.1.0", "250 2.1.5", "250 2.1.5",
                                                "452 4.5.3", "354", "250 2.0.0", "250 2.1.0",
                                                "250 2.1.5"});
    REQUIRE(r.last_envelope() != nullptr);
    CHECK(r.last_envelope()->recipients.size() == 2);
}

TEST_CASE("smtp limits: message size", "[smtp][limits]") {
    Fixture f(Setup::Mta);
    f.limits.message_size_limit = 100;
    f.limits.chunk_size = 16;
    const std::string fits = std::string(98, 'a') + "\r\n";  // 100 octets
    const std::string big = std::string(60, 'b') + "\r\n" + std::string(60, 'c') + "\r\n";
    Run r = run_both(f, {kEhlo, "MAIL FROM:<a@b.org> SIZE=101\r\n",
                         "MAIL FROM:<a@b.org> SIZE=100\r\n", kRcpt, "DATA\r\n", fits + ".\r\n"});
    CHECK(r.codes() == std::vector<std::string>{"250", "552 5.3.4", "250 2.1.0", "250 2.1.5", "354",
                                                "250 2.0.0"});
    CHECK(r.last_message() == fits);
    CHECK(r.count<MessageChunk>() == 7);  // 16-octet chunks, the last one shorter

    // Declared small, sent big: read to the end, then 552; the session goes on.
    r = run_both(f, {kEhlo + "MAIL FROM:<a@b.org> SIZE=10\r\n" + kRcpt + "DATA\r\n", big,
                     "more\r\n.\r\n", "NOOP\r\n"});
    CHECK(r.codes() == std::vector<std::string>{"250", "250 2.1.0", "250 2.1.5", "354", "552 5.3.4",
                                                "250 2.0.0"});
    CHECK(r.count<AbortMessage>() == 1);
    CHECK(r.count<EndMessage>() == 0);
    // Aborted before the limit was crossed: at most 100 octets went out.
    size_t sent = 0;
    for (const auto& o : r.outputs) {
        if (const auto* c = std::get_if<MessageChunk>(&o)) sent += c->bytes.size();
    }
    CHECK(sent <= 100);

    // BDAT: the chunk that crosses the limit fails the transaction.
    r = run_both(f, {kEhlo + kMail + kRcpt + "BDAT 60\r\n" + std::string(60, 'x'),
                     "BDAT 60 LAST\r\n" + std::string(60, 'y'), kMail});
    CHECK(r.codes() == std::vector<std::string>{"250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                                "552 5.3.4", "250 2.1.0"});
}

TEST_CASE("smtp limits: bad commands", "[smtp][limits]") {
    Fixture f(Setup::Mta);
    f.limits.max_bad_commands = 3;
    Run r = run_both(f, {"FOO\r\n", "MAIL FROM:<a@b.org>\r\n", "NOOP\r\n", "BAR\r\nNOOP\r\n"});
    CHECK(r.codes() == std::vector<std::string>{"500 5.5.2", "503 5.5.1", "250 2.0.0", "500 5.5.2",
                                                "421 4.7.0", "close"});
    // Policy answers (too many recipients, temporary failures) do not count;
    // relay attempts and unknown users do (address harvesting).
    f.limits.max_recipients = 1;
    r = run_both(f, {kEhlo + kMail + "RCPT TO:<tempfail@example.com>\r\n" + kRcpt + kRcpt + kRcpt +
                     "RSET\r\n" + kMail + "RCPT TO:<x@y.org>\r\nRCPT TO:<nobody@example.com>\r\n" +
                     "RCPT TO:<nobody@example.com>\r\n" + "NOOP\r\n"});
    CHECK(r.codes() == std::vector<std::string>{"250", "250 2.1.0", "451 4.3.0", "250 2.1.5",
                                                "452 4.5.3", "452 4.5.3", "250 2.0.0", "250 2.1.0",
                                                "554 5.7.1", "550 5.1.1", "550 5.1.1", "421 4.7.0",
                                                "close"});
}

TEST_CASE("smtp limits: SASL line", "[smtp][limits]") {
    Fixture f(Setup::Msa);
    f.limits.sasl_line_limit = 1000;
    Run r = run_both(f, {"EHLO c.example\r\n", "AUTH PLAIN\r\n", std::string(1200, 'A') + "\r\n",
                         "AUTH PLAIN " + std::string(1200, 'A') + "\r\n", "NOOP\r\n"});
    CHECK(r.codes() ==
          std::vector<std::string>{"250", "334", "500 5.5.6", "500 5.5.2", "250 2.0.0"});
}

TEST_CASE("smtp limits: pipelined input while waiting", "[smtp][limits][pipelining]") {
    Fixture f(Setup::Mta);
    f.limits.max_pending_input = 64;
    Engine e(f.limits, f.policy, f.session);
    CHECK_FALSE(e.recipient_result(RecipientResult::unknown()));  // nothing pending yet
    const std::string batch = kEhlo + kMail + kRcpt;
    CHECK(e.feed(batch) == batch.size());
    auto out = e.take_output();
    REQUIRE(out.size() == 3);
    CHECK(std::holds_alternative<LookupRecipient>(out[2]));
    CHECK(e.phase() == Phase::Waiting);

    // The engine holds at most 64 octets until the lookup is answered.
    const std::string more =
        "RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: pipelining test\r\n\r\nHello\r\n.\r\n";
    REQUIRE(more.size() > 64);
    CHECK(e.wants_input());
    size_t taken = e.feed(more);
    CHECK(taken == 64);
    CHECK_FALSE(e.wants_input());
    CHECK(e.feed(std::string_view(more).substr(taken)) == 0);
    CHECK(e.take_output().empty());  // nothing runs ahead of the answer

    CHECK(e.recipient_result(RecipientResult::found("alice@example.com")));
    out = e.take_output();
    REQUIRE(out.size() == 2);
    CHECK(render(out[0]) == "R:250 2.1.5 Ok\r\n");
    CHECK(render(out[1]) == "L:bob@example.com");
    CHECK(e.recipient_result(RecipientResult::found("bob@example.com")));
    CHECK(e.wants_input());
    CHECK(e.feed(std::string_view(more).substr(taken)) == more.size() - taken);
    out = e.take_output();
    std::vector<std::string> ev;
    for (const auto& o : out) ev.push_back(render(o));
    CHECK(ev == std::vector<std::string>{"R:250 2.1.5 Ok\r\n",
                                         "B:<sender@example.org> ESMTP "
                                         "alice@example.com=alice@example.com "
                                         "bob@example.com=bob@example.com",
                                         "R:354 End data with <CR><LF>.<CR><LF>\r\n",
                                         "C:Subject: pipelining test\r\n\r\nHello\r\n", "E"});
    CHECK(e.phase() == Phase::Waiting);
    CHECK(e.message_result(MessageResult::temp_fail("")));
    CHECK(render(e.take_output().at(0)).substr(0, 12) == "R:451 4.3.0 ");
    CHECK(e.phase() == Phase::Command);

    CHECK_FALSE(e.message_result(MessageResult::queued("X")));
    CHECK_FALSE(e.auth_result(AuthResult::success("x")));
    CHECK_FALSE(e.tls_started(TlsInfo{}));
}

TEST_CASE("smtp engine: phases, results and glue events", "[smtp][engine]") {
    Fixture f(Setup::Mta);
    {
        Engine e(f.limits, f.policy, f.session);
        CHECK(e.phase() == Phase::Command);
        (void)e.feed(kStart);
        (void)e.take_output();
        CHECK(e.phase() == Phase::Waiting);  // RCPT lookup
        e.recipient_result(RecipientResult::found("alice@example.com"));
        (void)e.take_output();
        CHECK(e.phase() == Phase::Data);
        e.timed_out();
        auto out = e.take_output();
        REQUIRE(out.size() == 3);
        CHECK(render(out[0]) == "R:421 4.4.2 mx.example.com Error: timeout exceeded\r\n");
        CHECK(std::holds_alternative<AbortMessage>(out[1]));
        CHECK(std::holds_alternative<Close>(out[2]));
        CHECK(e.closed());
        CHECK_FALSE(e.wants_input());
        CHECK(e.feed("NOOP\r\n") == 6);
        CHECK(e.take_output().empty());
    }
    {
        Engine e(f.limits, f.policy, f.session);
        e.client_spoke_early();
        auto out = e.take_output();
        REQUIRE(out.size() == 2);
        CHECK(render(out[0]) ==
              "R:554 5.7.1 mx.example.com Error: client sent data before greeting\r\n");
        CHECK(std::holds_alternative<Close>(out[1]));
    }
    {
        Engine e(f.limits, f.policy, f.session);
        e.shutting_down();
        CHECK(render(e.take_output().at(0)).substr(0, 12) == "R:421 4.3.2 ");
    }
    {
        // Permanent and temporary queue failures, and the reply text from the glue
        // cannot break the reply line.
        Engine e(f.limits, f.policy, f.session);
        (void)e.feed(kStart);
        e.recipient_result(RecipientResult::found("alice@example.com"));
        (void)e.feed("x\r\n.\r\n");
        (void)e.take_output();
        CHECK(e.message_result(MessageResult::perm_fail("Error: content\r\nrejected", "5.7.1")));
        CHECK(render(e.take_output().at(0)) == "R:554 5.7.1 Error: content??rejected\r\n");
        (void)e.feed(kMail + kRcpt + "DATA\r\n");
        e.recipient_result(RecipientResult::found("alice@example.com"));
        (void)e.feed("x\r\n.\r\n");
        (void)e.take_output();
        CHECK(e.message_result(MessageResult::temp_fail("Queue busy")));
        CHECK(render(e.take_output().at(0)) == "R:451 4.3.0 Queue busy\r\n");
    }
}
