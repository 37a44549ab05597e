// The relay decision table, the Received: header and SASL decoding.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/smtp/address.hpp"
#include "common/smtp/received.hpp"
#include "common/smtp/relay.hpp"
#include "common/smtp/sasl.hpp"

using namespace pbx::smtp;

namespace {

// Parses like RCPT TO does, so that the table speaks in wire syntax.
Address rcpt(std::string_view path) {
    auto p = parse_path(path, PathOptions{.allow_postmaster = true});
    REQUIRE(p.ok());
    return p->address;
}

}  // namespace

TEST_CASE("smtp: relay decisions", "[smtp][relay]") {
    Policy untrusted;
    untrusted.local_domains = {"example.com", "Example.NET", "[192.0.2.25]"};
    Policy trusted = untrusted;
    trusted.client_trusted = true;
    Policy pop = untrusted;
    pop.pop_before_smtp = true;
    Policy authed = untrusted;
    authed.authenticated = true;

    using D = RelayDecision;
    struct Case {
        const char* path;
        D untrusted, trusted;
    };
    const std::vector<Case> cases = {
        {"<alice@example.com>", D::Local, D::Local},
        {"<alice@EXAMPLE.com>", D::Local, D::Local},
        {"<carol@example.net>", D::Local, D::Local},
        {"<postmaster>", D::Local, D::Local},
        {"<someone@elsewhere.org>", D::Denied, D::Relay},
        // the percent hack, bang paths and quoted routing, on our domain
        {"<user%elsewhere.org@example.com>", D::Denied, D::Local},
        {"<elsewhere.org!user@example.com>", D::Denied, D::Local},
        {"<\"user@elsewhere.org\"@example.com>", D::Denied, D::Local},
        {"<\"user%elsewhere.org\"@example.com>", D::Denied, D::Local},
        {"<user%example.com@elsewhere.org>", D::Denied, D::Relay},
        // source routes: the route is dropped, only the mailbox counts
        {"<@example.com:user@elsewhere.org>", D::Denied, D::Relay},
        {"<@elsewhere.org:alice@example.com>", D::Local, D::Local},
        // near misses of our names
        {"<alice@sub.example.com>", D::Denied, D::Relay},
        {"<alice@example.com.evil.org>", D::Denied, D::Relay},
        {"<alice@examplecom>", D::Denied, D::Relay},
        // address literals are ours only when listed
        {"<user@[192.0.2.1]>", D::Denied, D::Relay},
        {"<dave@[192.0.2.25]>", D::Local, D::Local},
        {"<user@[IPv6:::1]>", D::Denied, D::Relay},
    };
    for (const auto& c : cases) {
        INFO("rcpt: " << c.path);
        Address a = rcpt(c.path);
        CHECK(classify_recipient(a, untrusted) == c.untrusted);
        CHECK(classify_recipient(a, trusted) == c.trusted);
        CHECK(classify_recipient(a, pop) == c.trusted);
        CHECK(classify_recipient(a, authed) == c.trusted);
    }

    // Addresses the parser refuses, built by hand: still never ours.
    CHECK(classify_recipient(Address{"alice", "example.com."}, untrusted) == D::Denied);
    CHECK(classify_recipient(Address{"alice", ""}, untrusted) == D::Denied);
    CHECK(classify_recipient(Address{"", ""}, trusted) == D::Denied);
    CHECK_FALSE(untrusted.is_local_domain(""));
    CHECK_FALSE(parse_path("<alice@example.com.>", {}).ok());
}

TEST_CASE("smtp: Received header", "[smtp][received]") {
    ReceivedInfo info;
    info.helo = "client.example.org";
    info.client_host = "client.example.org";
    info.client_ip = "198.51.100.7";
    info.by_host = "mx.example.com";
    info.protocol = "ESMTPS";
    info.tls_details = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)";
    info.queue_id = "0A1B2C3D";
    info.recipient = "alice@example.com";
    info.when = 1675760701;  // 2023-02-07 09:05:01 UTC
    info.utc_offset_minutes = 60;
    CHECK(received_header(info) ==
          "Received: from client.example.org (client.example.org [198.51.100.7])\r\n"
          "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
          "\tby mx.example.com (Pillarbox) with ESMTPS id 0A1B2C3D\r\n"
          "\tfor <alice@example.com>;\r\n"
          "\tTue, 7 Feb 2023 10:05:01 +0100\r\n");

    info.tls_details = "TLSv1.3) by evil (x";  // unbalanced: cannot close the comment
    info.recipient = "";
    CHECK(received_header(info).find("(using TLSv1.3? by evil ?x)\r\n") != std::string::npos);
    CHECK(received_header(info).find("for <") == std::string::npos);

    ReceivedInfo plain;
    plain.helo = "evil\r\nX-Injected: yes (x)";
    plain.client_ip = "2001:db8::1";
    plain.by_host = "mx.example.com";
    plain.protocol = "SMTP";
    plain.when = 0;
    plain.utc_offset_minutes = -330;
    CHECK(received_header(plain) ==
          "Received: from evil??X-Injected:?yes??x? (unknown [2001:db8::1])\r\n"
          "\tby mx.example.com (Pillarbox) with SMTP;\r\n"
          "\tWed, 31 Dec 1969 18:30:00 -0530\r\n");

    CHECK(protocol_name(false, false, false, false) == "SMTP");
    CHECK(protocol_name(true, false, false, false) == "ESMTP");
    CHECK(protocol_name(true, false, true, false) == "ESMTPS");
    CHECK(protocol_name(true, false, false, true) == "ESMTPA");
    CHECK(protocol_name(true, false, true, true) == "ESMTPSA");
    CHECK(protocol_name(true, true, true, true) == "UTF8SMTPSA");
    CHECK(protocol_name(true, true, false, false) == "UTF8SMTP");
    CHECK(rfc5322_date(951782400, 0) == "Tue, 29 Feb 2000 00:00:00 +0000");
}

TEST_CASE("smtp: base64 and SASL PLAIN/LOGIN", "[smtp][sasl]") {
    using namespace pbx::smtp::sasl;
    struct B64 {
        std::string plain, encoded;
    };
    for (const auto& c : std::vector<B64>{{"", ""},
                                          {"f", "Zg=="},
                                          {"fo", "Zm8="},
                                          {"foo", "Zm9v"},
                                          {"foob", "Zm9vYg=="},
                                          {std::string("\0user\0pass", 10), "AHVzZXIAcGFzcw=="},
                                          {"\xff\xfe", "//4="}}) {
        INFO(c.encoded);
        CHECK(base64_encode(c.plain) == c.encoded);
        auto d = base64_decode(c.encoded);
        REQUIRE(d.ok());
        CHECK(*d == c.plain);
    }
    for (const char* bad : {"Zg", "Zg=", "Zg===", "=Zg=", "Zm9v=", "Z===", "Zh==", "Zm9=", "Zm 9v",
                            "Zm9v\r", "Zm-v", "Zg==Zg==", "*"}) {
        INFO(bad);
        CHECK_FALSE(base64_decode(bad).ok());
    }

    auto c = decode_plain(std::string("\0user\0pass", 10));
    REQUIRE(c.ok());
    CHECK(c->authzid.empty());
    CHECK(c->authcid == "user");
    CHECK(c->password == "pass");
    c = decode_plain(std::string("admin\0user\0pass", 15));
    REQUIRE(c.ok());
    CHECK(c->authzid == "admin");
    for (const auto& bad : {std::string("userpass"), std::string("\0user", 5),
                            std::string("\0\0pass", 6), std::string("\0user\0", 6),
                            std::string("\0user\0pa\0ss", 11), std::string("\0us\xff\0pass", 9)}) {
        CHECK_FALSE(decode_plain(bad).ok());
    }

    CHECK(parse_mechanism("plain") == Mechanism::Plain);
    CHECK(parse_mechanism("LOGIN") == Mechanism::Login);
    CHECK_FALSE(parse_mechanism("CRAM-MD5"));

    using K = Exchange::Step::Kind;
    Exchange plain(Mechanism::Plain);
    auto s = plain.start(std::nullopt);
    CHECK(s.kind == K::Challenge);
    CHECK(s.challenge.empty());
    s = plain.respond("AHVzZXIAcGFzcw==");
    CHECK(s.kind == K::Done);
    CHECK(plain.credentials().authcid == "user");

    Exchange login(Mechanism::Login);
    s = login.start(std::nullopt);
    CHECK(s.kind == K::Challenge);
    CHECK(s.challenge == "VXNlcm5hbWU6");
    s = login.respond("dXNlcg==");
    CHECK(s.kind == K::Challenge);
    CHECK(s.challenge == "UGFzc3dvcmQ6");
    s = login.respond("cGFzcw==");
    CHECK(s.kind == K::Done);
    CHECK(login.credentials().password == "pass");

    Exchange login_ir(Mechanism::Login);
    CHECK(login_ir.start(std::string_view("dXNlcg==")).kind == K::Challenge);

    Exchange cancel(Mechanism::Login);
    (void)cancel.start(std::nullopt);
    s = cancel.respond("*");
    CHECK(s.kind == K::Failed);
    CHECK(s.error == SaslError::Cancelled);
    Exchange bad64(Mechanism::Plain);
    s = bad64.start(std::string_view("!!!!"));
    CHECK(s.error == SaslError::BadBase64);
    Exchange empty(Mechanism::Plain);
    s = empty.start(std::string_view("="));
    CHECK(s.kind == K::Failed);
    CHECK(s.error == SaslError::Malformed);
}
