// Whole SMTP sessions through the engine: every case is fed as written and
// one byte at a time, and both runs must produce the same outputs.
#include "tests/unit/test_smtp_harness.hpp"

using namespace smtp_test;

namespace {

const std::string kEhlo = "EHLO client.example.org\r\n";
const std::string kMail = "MAIL FROM:<sender@example.org>\r\n";
const std::string kRcpt = "RCPT TO:<alice@example.com>\r\n";
const std::string kBody = "Subject: test\r\n\r\nHello\r\n.\r\n";
const std::string kQuit = "QUIT\r\n";

// PLAIN "\0user\0pass"
const std::string kAuthPlain = "AUTH PLAIN AHVzZXIAcGFzcw==\r\n";

}  // namespace

TEST_CASE("smtp engine: valid sessions", "[smtp][engine]") {
    check_sessions({
        {"one message, command by command",
         Setup::Mta,
         {kEhlo, kMail, kRcpt, "DATA\r\n", kBody, kQuit},
         {"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0", "close"}},
        {"HELO",
         Setup::Mta,
         {"HELO client.example.org\r\n", kMail, kRcpt, "DATA\r\n", kBody, kQuit},
         {"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0", "close"}},
        {"everything pipelined in one packet",
         Setup::Mta,
         {kEhlo + kMail + kRcpt + "RCPT TO:<bob@example.com>\r\nDATA\r\n" + kBody + kQuit},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0", "close"}},
        {"two messages in one session",
         Setup::Mta,
         {kEhlo, kMail + kRcpt + "DATA\r\n", kBody, kMail + kRcpt + "DATA\r\n", kBody, kQuit},
         {"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "250 2.1.0", "250 2.1.5", "354",
          "250 2.0.0", "221 2.0.0", "close"}},
        {"null sender, postmaster without domain",
         Setup::Mta,
         {kEhlo, "MAIL FROM:<>\r\n", "RCPT TO:<postmaster>\r\n",
          "RCPT TO:<Postmaster@Example.COM>\r\n", "DATA\r\n", kBody},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"}},
        {"case-insensitive verbs and domains",
         Setup::Mta,
         {"ehlo client.example.org\r\nmail from:<a@b.org>\r\nrcpt to:<alice@EXAMPLE.COM>\r\n"
          "Rcpt To:<carol@example.NET>\r\ndata\r\n" +
          kBody},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"}},
        {"RSET keeps EHLO, NOOP, VRFY, HELP, EXPN",
         Setup::Mta,
         {kEhlo, kMail, "RSET\r\n", "NOOP\r\n", "NOOP anything\r\n", "VRFY alice\r\n", "HELP\r\n",
          "EXPN staff\r\n", kMail, kRcpt},
         {"250", "250 2.1.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "252 2.5.0", "214 2.0.0",
          "502 5.5.1", "250 2.1.0", "250 2.1.5"}},
        {"commands allowed before EHLO",
         Setup::Mta,
         {"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nQUIT\r\n"},
         {"250 2.0.0", "250 2.0.0", "252 2.5.0", "214 2.0.0", "221 2.0.0", "close"}},
        {"EHLO again resets the transaction",
         Setup::Mta,
         {kEhlo, kMail, kRcpt, kEhlo, "DATA\r\n", kMail},
         {"250", "250 2.1.0", "250 2.1.5", "250", "503 5.5.1", "250 2.1.0"}},
        {"address literal HELO and recipient",
         Setup::Mta,
         {"EHLO [198.51.100.7]\r\n", kMail, "RCPT TO:<dave@[192.0.2.25]>\r\n"},
         {"250", "250 2.1.0", "250 2.1.5"}},
        {"ESMTP parameters",
         Setup::Mta,
         {kEhlo, "MAIL FROM:<a@b.org> SIZE=1000 BODY=8BITMIME\r\n", kRcpt, "RSET\r\n",
          "MAIL FROM:<a@b.org> BODY=7BIT RET=HDRS ENVID=QQ+2B1\r\n",
          "RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.com\r\n",
          "RCPT TO:<bob@example.com> NOTIFY=NEVER\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.1.5"}},
        {"SMTPUTF8",
         Setup::Mta,
         {kEhlo, "MAIL FROM:<j\xC3\xBCrgen@example.org> SMTPUTF8\r\n",
          "RCPT TO:<\xC3\xA9l\xC3\xA8ve@elsewhere.org>\r\n", kRcpt, "DATA\r\n", kBody},
         {"250", "250 2.1.0", "554 5.7.1", "250 2.1.5", "354", "250 2.0.0"}},
        {"trusted client relays",
         Setup::Trusted,
         {kEhlo, kMail, "RCPT TO:<someone@elsewhere.org>\r\n", kRcpt, "DATA\r\n", kBody},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"}},
        {"BDAT",
         Setup::Mta,
         {kEhlo, kMail, kRcpt, "BDAT 15\r\nSubject: test\r\n", "BDAT 7 LAST\r\n\r\nHello", kQuit},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "221 2.0.0", "close"}},
        {"BDAT pipelined with its data",
         Setup::Mta,
         {kEhlo + kMail + kRcpt + "BDAT 3\r\nab\nBDAT 0\r\nBDAT 3 LAST\r\nc\r\n" + kQuit},
         {"250", "250 2.1.0", "250 2.1.5", "550 5.6.0", "503 5.5.1", "503 5.5.1", "221 2.0.0",
          "close"}},
        {"BDAT 0 LAST",
         Setup::Mta,
         {kEhlo, kMail, kRcpt, "BDAT 4\r\nab\r\n", "BDAT 0 LAST\r\n", kMail},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.1.0"}},
        {"BDAT chunk holding command text",
         Setup::Mta,
         {kEhlo, kMail, kRcpt, "BDAT 21 LAST\r\nRSET\r\n.\r\nQUIT\r\nNOOP\r\n", "NOOP\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0"}},
        {"RSET during BDAT aborts the message",
         Setup::Mta,
         {kEhlo, kMail, kRcpt, "BDAT 4\r\nab\r\n", "RSET\r\n", "BDAT 1 LAST\r\nx", kMail},
         {"250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "503 5.5.1", "250 2.1.0"}},
    });
}

TEST_CASE("smtp engine: invalid sessions", "[smtp][engine]") {
    check_sessions({
        {"sequence errors",
         Setup::Mta,
         {kMail, kRcpt, "DATA\r\n", kEhlo, kRcpt, "DATA\r\n", kMail, kMail, "DATA\r\n"},
         {"503 5.5.1", "503 5.5.1", "503 5.5.1", "250", "503 5.5.1", "503 5.5.1", "250 2.1.0",
          "503 5.5.1", "554 5.5.1"}},
        {"unknown and malformed commands",
         Setup::Mta,
         {"FOO\r\n", "\r\n", " NOOP\r\n", std::string("NO\0OP\r\n", 7), "MAILFROM:<a@b.org>\r\n",
          "TURN\r\n", "NOOP\r\n"},
         {"500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2",
          "250 2.0.0"}},
        {"EHLO/HELO arguments",
         Setup::Mta,
         {"EHLO\r\n", "HELO\r\n", "EHLO bad..name\r\n", "EHLO two words\r\n",
          "EHLO h\xC3\xA9.example\r\n", kMail},
         {"501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4", "503 5.5.1"}},
        {"MAIL syntax and addresses",
         Setup::Mta,
         {kEhlo, "MAIL FROM:sender@example.org\r\n", "MAIL TO:<a@b.org>\r\n",
          "MAIL FROM:<a@@b.org>\r\n", "MAIL FROM:<a@b.org.>\r\n",
          "MAIL FROM:<" + std::string(65, 'x') + "@b.org>\r\n",
          "MAIL FROM:<" + std::string(60, 'x') + "@" + std::string(63, 'd') + "." +
              std::string(63, 'd') + "." + std::string(63, 'd') + "." + std::string(63, 'd') +
              ">\r\n",
          "MAIL FROM:<\xC3\xA9@b.org>\r\n", "MAIL FROM:<a@b.org>\r\n"},
         {"250", "501 5.5.4", "501 5.5.4", "501 5.1.7", "501 5.1.7", "553 5.1.7", "501 5.1.7",
          "553 5.6.7", "250 2.1.0"}},
        {"MAIL parameters",
         Setup::Mta,
         {kEhlo, "MAIL FROM:<a@b.org> FOO=BAR\r\n", "MAIL FROM:<a@b.org> SIZE=abc\r\n",
          "MAIL FROM:<a@b.org> BODY=BINARYMIME\r\n", "MAIL FROM:<a@b.org> RET=NEVER\r\n",
          "MAIL FROM:<a@b.org> ENVID=x ENVID=y\r\n", "MAIL FROM:<a@b.org> AUTH=<>\r\n",
          "MAIL FROM:<a@b.org> SIZE=52428801\r\n", "MAIL FROM:<a@b.org> SIZE=52428800\r\n"},
         {"250", "555 5.5.4", "555 5.5.4", "555 5.5.4", "555 5.5.4", "555 5.5.4", "555 5.5.4",
          "552 5.3.4", "250 2.1.0"}},
        {"parameters after HELO",
         Setup::Mta,
         {"HELO client.example.org\r\n", "MAIL FROM:<a@b.org> SIZE=10\r\n", kMail,
          "RCPT TO:<alice@example.com> NOTIFY=NEVER\r\n", kRcpt},
         {"250", "555 5.5.4", "250 2.1.0", "555 5.5.4", "250 2.1.5"}},
        {"RCPT errors",
         Setup::Mta,
         {kEhlo, kMail, "RCPT TO:alice@example.com\r\n", "RCPT TO:<alice@@example.com>\r\n",
          "RCPT TO:<>\r\n", "RCPT TO:<\xC3\xA9@example.com>\r\n",
          "RCPT TO:<alice@example.com> NOTIFY=NEVER,DELAY\r\n",
          "RCPT TO:<alice@example.com> ORCPT=alice\r\n", "RCPT TO:<nobody@example.com>\r\n",
          "RCPT TO:<tempfail@example.com>\r\n", "RCPT TO:<x@elsewhere.org>\r\n", "DATA\r\n"},
         {"250", "250 2.1.0", "501 5.5.4", "501 5.1.3", "501 5.1.3", "553 5.6.7", "555 5.5.4",
          "555 5.5.4", "550 5.1.1", "451 4.3.0", "554 5.7.1", "554 5.5.1"}},
        {"arguments where none belong",
         Setup::Mta,
         {kEhlo, "RSET now\r\n", "QUIT now\r\n", "VRFY\r\n", kMail, kRcpt, "DATA now\r\n",
          "STARTTLS now\r\n"},
         {"250", "501 5.5.4", "501 5.5.4", "501 5.5.4", "250 2.1.0", "250 2.1.5", "501 5.5.4",
          "503 5.5.1"}},
        {"BDAT errors",
         Setup::Mta,
         {"BDAT 3\r\nabc", kEhlo, "BDAT 3\r\nabc", kMail, "BDAT 3\r\nabc", kRcpt, "BDAT 3\r\nabc",
          "DATA\r\n", "BDAT 3 LAST\r\nabc", "NOOP\r\n", "BDAT x\r\nNOOP\r\n"},
         {"503 5.5.1", "250", "503 5.5.1", "250 2.1.0", "554 5.5.1", "250 2.1.5", "250 2.0.0",
          "503 5.5.1", "250 2.0.0", "250 2.0.0", "501 5.5.4", "close"}},
        {"BDAT after HELO",
         Setup::Mta,
         {"HELO client.example.org\r\n", kMail, kRcpt, "BDAT 2 LAST\r\nab", "NOOP\r\n"},
         {"250", "250 2.1.0", "250 2.1.5", "503 5.5.1", "250 2.0.0"}},
        {"DATA after HELO-less RSET",
         Setup::Mta,
         {"RSET\r\n", "DATA\r\n", "BDAT 1\r\nx", "NOOP\r\n"},
         {"250 2.0.0", "503 5.5.1", "503 5.5.1", "250 2.0.0"}},
        {"QUIT ends everything",
         Setup::Mta,
         {kEhlo + kQuit + kMail + "NOOP\r\n", "NOOP\r\n"},
         {"250", "221 2.0.0", "close"}},
    });
}

TEST_CASE("smtp engine: envelope contents", "[smtp][engine]") {
    Fixture f(Setup::Mta);
    Run r =
        run_both(f, {kEhlo, "MAIL FROM:<a@b.org> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1\r\n",
                     "RCPT TO:<Alice@Example.com> NOTIFY=SUCCESS,DELAY "
                     "ORCPT=rfc822;alice+2Bx@example.com\r\n",
                     "RCPT TO:<postmaster>\r\n", "DATA\r\n", "a\r\n..b\r\n.\r\n"});
    REQUIRE(r.last_envelope() != nullptr);
    const Envelope& e = *r.last_envelope();
    CHECK(e.helo == "client.example.org");
    CHECK(e.client_ip == "198.51.100.7");
    CHECK(e.client_host == "client.example.org");
    CHECK(e.protocol == "ESMTP");
    CHECK_FALSE(e.tls);
    CHECK(e.auth_user.empty());
    CHECK(e.mail_from == "a@b.org");
    CHECK(e.body == BodyType::EightBitMime);
    CHECK_FALSE(e.smtputf8);
    CHECK(e.size_declared == 1000u);
    CHECK(e.ret == DsnRet::Hdrs);
    CHECK(e.envid == "QQ+1");
    REQUIRE(e.recipients.size() == 2);
    CHECK(e.recipients[0].address == "Alice@Example.com");
    CHECK(e.recipients[0].canonical == "alice@example.com");
    CHECK(e.recipients[0].notify == (kNotifySuccess | kNotifyDelay));
    CHECK(e.recipients[0].orcpt_type == "rfc822");
    CHECK(e.recipients[0].orcpt == "alice+x@example.com");
    CHECK(e.recipients[1].address == "postmaster");
    CHECK(e.recipients[1].notify == 0);
    CHECK(e.recipients[1].orcpt.empty());
    CHECK(r.last_message() == "a\r\n.b\r\n");
    CHECK(r.events.back() == "R:250 2.0.0 Ok: queued as Q1\r\n");
    CHECK(std::find(r.events.begin(), r.events.end(), "L:Alice@Example.com") != r.events.end());
    CHECK(std::find(r.events.begin(), r.events.end(), "L:postmaster") != r.events.end());
}

TEST_CASE("smtp engine: EHLO advertisement", "[smtp][engine]") {
    Fixture f(Setup::Mta);
    Driver d(f);
    CHECK(d.engine().greeting() == "220 mx.example.com ESMTP Pillarbox\r\n");
    Run r = d.run({kEhlo}, false);
    REQUIRE(r.events.size() == 1);
    CHECK(r.events[0] ==
          "R:250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
          "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250-DSN\r\n"
          "250 CHUNKING\r\n");

    Fixture msa(Setup::Msa);
    msa.limits.message_size_limit = 0;
    Driver d2(msa);
    r = d2.run({kEhlo}, false);
    CHECK(r.events[0] ==
          "R:250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
          "250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n250-SMTPUTF8\r\n250-DSN\r\n"
          "250 CHUNKING\r\n");

    // AUTH is hidden before TLS when it needs TLS.
    Driver d3(Fixture(Setup::MsaPlain));
    r = d3.run({kEhlo}, false);
    CHECK(r.events[0].find("AUTH") == std::string::npos);
    CHECK(r.events[0].find("STARTTLS") != std::string::npos);
}

TEST_CASE("smtp engine: AUTH", "[smtp][engine][auth]") {
    check_sessions({
        {"MSA: AUTH PLAIN with initial response, then relay",
         Setup::Msa,
         {kEhlo, kMail, kAuthPlain, kMail, "RCPT TO:<someone@elsewhere.org>\r\n", "DATA\r\n",
          kBody},
         {"250", "530 5.7.0", "235 2.7.0", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}},
        {"AUTH PLAIN with a continuation",
         Setup::Msa,
         {kEhlo, "AUTH PLAIN\r\n", "AHVzZXIAcGFzcw==\r\n", kMail},
         {"250", "334", "235 2.7.0", "250 2.1.0"}},
        {"AUTH LOGIN",
         Setup::Msa,
         {kEhlo, "AUTH LOGIN\r\n", "dXNlcg==\r\n", "cGFzcw==\r\n", kMail},
         {"250", "334", "334", "235 2.7.0", "250 2.1.0"}},
        {"AUTH LOGIN with the user name as initial response",
         Setup::Msa,
         {kEhlo + "AUTH LOGIN dXNlcg==\r\n" + "cGFzcw==\r\n" + kMail},
         {"250", "334", "235 2.7.0", "250 2.1.0"}},
        {"cancel, bad base64, bad PLAIN, wrong password, temp failure",
         Setup::Msa,
         {kEhlo, "AUTH LOGIN\r\n", "*\r\n", "AUTH PLAIN\r\n", "not base64!\r\n", "AUTH PLAIN =\r\n",
          "AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n", "AUTH PLAIN AHRlbXB1c2VyAHBhc3M=\r\n", kMail},
         {"250", "334", "501 5.0.0", "334", "501 5.5.2", "501 5.5.2", "535 5.7.8", "454 4.7.0",
          "530 5.7.0"}},
        {"AUTH twice, unknown mechanism, syntax, before EHLO, in a transaction",
         Setup::Msa,
         {"AUTH PLAIN\r\n", kEhlo, "AUTH CRAM-MD5\r\n", "AUTH\r\n", "AUTH PLAIN a b\r\n",
          kAuthPlain, kAuthPlain, kMail, kAuthPlain},
         {"503 5.5.1", "250", "504 5.5.4", "501 5.5.4", "501 5.5.4", "235 2.7.0", "503 5.5.1",
          "250 2.1.0", "503 5.5.1"}},
        {"AUTH after HELO",
         Setup::Msa,
         {"HELO client.example.org\r\n", kAuthPlain},
         {"250", "503 5.5.1"}},
        {"AUTH not offered on the MTA",
         Setup::Mta,
         {kEhlo, kAuthPlain, kMail},
         {"250", "503 5.5.1", "250 2.1.0"}},
        {"AUTH needs TLS; STARTTLS, then AUTH",
         Setup::MsaPlain,
         {kEhlo, kAuthPlain, kMail, "STARTTLS\r\n", kEhlo, kMail, kAuthPlain, kMail},
         {"250", "538 5.7.11", "530 5.7.0", "220 2.0.0", "250", "530 5.7.0", "235 2.7.0",
          "250 2.1.0"}},
        {"MTA with AUTH after TLS: authenticated client relays",
         Setup::MtaAuth,
         {kEhlo, "STARTTLS\r\n", kEhlo, kMail, "RCPT TO:<x@elsewhere.org>\r\n", kAuthPlain,
          "RSET\r\n", kAuthPlain, kMail, "RCPT TO:<x@elsewhere.org>\r\n"},
         {"250", "220 2.0.0", "250", "250 2.1.0", "554 5.7.1", "503 5.5.1", "250 2.0.0",
          "235 2.7.0", "250 2.1.0", "250 2.1.5"}},
        {"an AUTH line may be longer than a command line",
         Setup::Msa,
         {kEhlo, "AUTH PLAIN " + std::string(600, 'A') + "\r\n", "AUTH PLAIN\r\n",
          std::string(700, 'A') + "\r\n"},
         {"250", "501 5.5.2", "334", "501 5.5.2"}},
    });

    // The credentials reach the glue decoded; the session records the user.
    Fixture f(Setup::Msa);
    Driver d(f);
    Run r = d.run({kEhlo, "AUTH PLAIN YWRtaW4AdXNlcgBwYXNz\r\n", kMail, kRcpt, "DATA\r\n", kBody},
                  false);
    CHECK(std::find(r.events.begin(), r.events.end(), "U:PLAIN:admin:user:pass") != r.events.end());
    CHECK(d.engine().authenticated());
    CHECK(d.engine().auth_user() == "user");
    REQUIRE(r.last_envelope() != nullptr);
    CHECK(r.last_envelope()->auth_user == "user");
    CHECK(r.last_envelope()->protocol == "ESMTPSA");
    CHECK(r.last_envelope()->tls);
    CHECK(r.last_envelope()->tls_details ==
          "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");
}

TEST_CASE("smtp engine: STARTTLS", "[smtp][engine][tls]") {
    check_sessions({
        {"STARTTLS resets to before EHLO",
         Setup::Mta,
         {kEhlo, "STARTTLS\r\n", kMail, kEhlo, "STARTTLS\r\n", kMail},
         {"250", "220 2.0.0", "503 5.5.1", "250", "503 5.5.1", "250 2.1.0"}},
        {"STARTTLS sequencing and syntax",
         Setup::Mta,
         {"STARTTLS\r\n", kEhlo, "STARTTLS now\r\n", kMail, "STARTTLS\r\n", "RSET\r\n"},
         {"503 5.5.1", "250", "501 5.5.4", "250 2.1.0", "503 5.5.1", "250 2.0.0"}},
        {"STARTTLS not offered", Setup::Msa, {kEhlo, "STARTTLS\r\n"}, {"250", "502 5.5.1"}},
        // The injection (CVE-2011-0411): commands in the STARTTLS packet
        // must not run inside TLS. After the handshake the client has to
        // say EHLO again, so a smuggled MAIL would show up as 250 2.1.0.
        {"commands pipelined after STARTTLS are discarded",
         Setup::Mta,
         {kEhlo, "STARTTLS\r\n" + kEhlo + kMail + kRcpt, kMail, kEhlo, kMail},
         {"250", "220 2.0.0", "503 5.5.1", "250", "250 2.1.0"}},
        {"even a partial line after STARTTLS is discarded",
         Setup::Mta,
         {kEhlo, "STARTTLS\r\nMAIL FROM:<a@b.org>", "\r\n", kEhlo},
         {"250", "220 2.0.0", "500 5.5.2", "250"}},
    });

    Fixture f(Setup::Mta);
    Driver d(f);
    Run r = d.run({kEhlo, "STARTTLS\r\nMAIL FROM:<a@b>\r\n", kEhlo}, false);
    CHECK(r.events[1] == "R:220 2.0.0 Ready to start TLS\r\n");
    CHECK(r.events[2] == "T");
    CHECK(r.events[3] == "D:17");  // the pipelined bytes, reported for the log
    CHECK(d.engine().tls_active());
    CHECK(r.events[4].find("STARTTLS") == std::string::npos);  // not offered twice
    CHECK(r.count<LookupRecipient>() == 0);
}
