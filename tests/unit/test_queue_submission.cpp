// Who may submit what (queue-manager/submission.hpp), maildrop conversion
// (pickup.hpp), the Received: line (received.hpp) and routing (delivery.hpp).
#include "common/ipc/queue_msgs.hpp"
#include "queue-manager/delivery.hpp"
#include "queue-manager/pickup.hpp"
#include "queue-manager/received.hpp"
#include "queue-manager/submission.hpp"
#include "test_queue_common.hpp"

using namespace pbx;
using namespace pbx::qm;
namespace qp = pbx::ipc::queue;

namespace {

SubmitPolicy policy() {
    SubmitPolicy p;
    p.myhostname = "mail.example.test";
    p.domains = {"example.test", "other.test"};
    p.trusted_users = {"list"};
    p.user_name = [](uid_t uid) -> std::optional<std::string> {
        switch (uid) {
            case 0:
                return "root";
            case 1000:
                return "alice";
            case 1001:
                return "bob";
            case 1002:
                return "list";
            default:
                return std::nullopt;
        }
    };
    return p;
}

ipc::Message begin_msg(std::string_view origin, std::string_view sender) {
    ipc::Message m = ipc::Message::named(qp::kProtocol, "begin");
    m.set_str("origin", origin);
    m.set_str("sender", sender);
    m.set_str("protocol", "ESMTPSA");
    m.set_str("client_address", "192.0.2.7");
    m.set_str("client_hostname", "client.example.net");
    m.set_str("helo", "[192.0.2.7]");
    m.set_str("tls", "TLSv1.3 TLS_AES_128_GCM_SHA256");
    m.set_str("auth_user", "alice");
    return m;
}

}  // namespace

TEST_CASE("submission: a local user's sender", "[queue][submission]") {
    struct Row {
        uid_t uid;
        const char* sender;
        const char* stored;  // nullptr: refused
    };
    const Row table[] = {
        {1000, "alice", "alice@mail.example.test"},
        {1000, "alice@mail.example.test", "alice@mail.example.test"},
        {1000, "alice@MAIL.Example.Test", "alice@MAIL.Example.Test"},
        {1000, "alice@example.test", "alice@example.test"},  // the first domain
        {1000, "alice@other.test", nullptr},                 // not the first
        {1000, "Alice@example.test", nullptr},               // local parts are exact
        {1000, "bob@example.test", nullptr},
        {1000, "", nullptr},  // the null sender is refused too
        {1000, "alice@evil.example", nullptr},
        {1000, "alice@example.test@evil", nullptr},
        {1001, "bob", "bob@mail.example.test"},
        {1002, "anyone@anywhere.example", "anyone@anywhere.example"},  // trusted_users
        {1002, "", ""},
        {4242, "x@example.test", nullptr},  // no passwd entry
    };
    SubmitPolicy p = policy();
    for (const Row& r : table) {
        INFO("uid " << r.uid << " sender <" << r.sender << ">");
        auto s = check_local_sender(r.sender, r.uid, p);
        if (r.stored) {
            REQUIRE(s.ok());
            CHECK(*s == r.stored);
        } else {
            REQUIRE_FALSE(s.ok());
            CHECK_FALSE(s.error().temporary);
            CHECK(s.error().text.rfind("5.7.1 ", 0) == 0);
        }
    }
}

TEST_CASE("submission: trusted peers keep their fields, users get a local envelope",
          "[queue][submission]") {
    SubmitPolicy p = policy();
    SECTION("smtpd") {
        auto env = envelope_from_begin(begin_msg("smtp", "someone@remote.example"),
                                       Submitter{101, ipc::Program::Smtpd}, p);
        REQUIRE(env.ok());
        CHECK(env->origin == spool::Origin::Smtp);
        CHECK(env->sender == "someone@remote.example");
        CHECK(env->client_address == "192.0.2.7");
        CHECK(env->helo == "[192.0.2.7]");
        CHECK(env->protocol == "ESMTPSA");
        CHECK(env->tls == "TLSv1.3 TLS_AES_128_GCM_SHA256");
        CHECK(env->auth_user == "alice");
        CHECK(env->origin_uid == 0);
    }
    SECTION("a local user claiming to be smtpd gets none of it") {
        auto env = envelope_from_begin(begin_msg("smtp", "alice"),
                                       Submitter{1000, ipc::Program::AnyUser}, p);
        REQUIRE(env.ok());
        CHECK(env->origin == spool::Origin::Sendmail);
        CHECK(env->origin_uid == 1000);
        CHECK(env->protocol == "local");
        CHECK(env->sender == "alice@mail.example.test");
        CHECK(env->client_address.empty());
        CHECK(env->helo.empty());
        CHECK(env->tls.empty());
        CHECK(env->auth_user.empty());
    }
    SECTION("a local user with a forged sender is refused") {
        auto env = envelope_from_begin(begin_msg("smtp", "ceo@example.test"),
                                       Submitter{1000, ipc::Program::AnyUser}, p);
        REQUIRE_FALSE(env.ok());
        CHECK(env.error().text.rfind("5.7.1", 0) == 0);
    }
    SECTION("root: trusted, any sender") {
        auto env = envelope_from_begin(begin_msg("sendmail", "daemon"),
                                       Submitter{0, ipc::Program::Root}, p);
        REQUIRE(env.ok());
        CHECK(env->origin == spool::Origin::Sendmail);
        CHECK(env->sender == "daemon@mail.example.test");
    }
    SECTION("bad fields") {
        Submitter smtpd{101, ipc::Program::Smtpd};
        CHECK_FALSE(envelope_from_begin(begin_msg("carrier-pigeon", "a@b"), smtpd, p).ok());
        auto m = begin_msg("smtp", "a@b");
        m.set_str("helo", "evil\r\nX-Injected: yes");
        CHECK_FALSE(envelope_from_begin(m, smtpd, p).ok());
        auto m2 = begin_msg("smtp", std::string(2000, 'a'));
        CHECK_FALSE(envelope_from_begin(m2, smtpd, p).ok());
        auto m3 = begin_msg("smtp", "a@b");
        m3.set_str("body", "9BIT");
        CHECK_FALSE(envelope_from_begin(m3, smtpd, p).ok());
        auto m4 = begin_msg("smtp", "a@b");
        m4.set_str("body", "8bitmime");
        m4.set_str("ret", "HDRS");
        m4.set_str("envid", "abc");
        auto ok = envelope_from_begin(m4, smtpd, p);
        REQUIRE(ok.ok());
        CHECK(ok->body == spool::BodyType::EightBitMime);
        CHECK(ok->ret == spool::DsnRet::Headers);
        CHECK(ok->envid == "abc");
    }
}

TEST_CASE("submission: recipients", "[queue][submission]") {
    SubmitPolicy p = policy();
    auto r = make_recipient("bob", "", 0, p);
    REQUIRE(r.ok());
    CHECK(r->address == "bob@mail.example.test");
    CHECK(make_recipient("", "", 0, p).error().text.rfind("5.1.3", 0) == 0);
    CHECK_FALSE(make_recipient("a@b\nc", "", 0, p).ok());
    CHECK_FALSE(make_recipient("a@b", "", spool::kNotifyNever | spool::kNotifySuccess, p).ok());
    CHECK_FALSE(make_recipient("a@b", "", 64, p).ok());
    auto n = make_recipient("a@b", "rfc822;a@b", spool::kNotifyFailure | spool::kNotifyDelay, p);
    REQUIRE(n.ok());
    CHECK(n->orcpt == "rfc822;a@b");
    CHECK(n->notify == (spool::kNotifyFailure | spool::kNotifyDelay));
}

TEST_CASE("pickup: maildrop files become local submissions", "[queue][pickup]") {
    SubmitPolicy p = policy();
    spool::Maildrop drop;
    drop.uid = 1000;
    drop.sender = "alice";
    drop.recipients = {"bob", "carol@example.org"};
    drop.message = "Subject: hi\n\nline\r\nend\n";
    SECTION("accepted") {
        auto c = convert_maildrop(drop, 1000, p);
        REQUIRE(c.ok());
        CHECK(c->env.origin == spool::Origin::Sendmail);
        CHECK(c->env.origin_uid == 1000);
        CHECK(c->env.sender == "alice@mail.example.test");
        REQUIRE(c->env.recipients.size() == 2);
        CHECK(c->env.recipients[0].address == "bob@mail.example.test");
        CHECK(c->message == "Subject: hi\r\n\r\nline\r\nend\r\n");
    }
    SECTION("a uid claim that is not the file's owner") {
        auto c = convert_maildrop(drop, 1001, p);
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().text.find("belongs to uid 1001") != std::string::npos);
    }
    SECTION("a forged sender") {
        drop.sender = "root@example.test";
        CHECK_FALSE(convert_maildrop(drop, 1000, p).ok());
    }
    SECTION("root's files keep their sender") {
        drop.uid = 0;
        drop.sender = "MAILER-DAEMON@example.test";
        auto c = convert_maildrop(drop, 0, p);
        REQUIRE(c.ok());
        CHECK(c->env.sender == "MAILER-DAEMON@example.test");
    }
}

TEST_CASE("pickup: to_crlf table", "[queue][pickup]") {
    struct Row {
        std::string in, out;
    };
    const Row table[] = {
        {"", ""},
        {"a", "a"},
        {"\n", "\r\n"},
        {"a\nb\n", "a\r\nb\r\n"},
        {"a\r\nb", "a\r\nb"},
        {"\r\n\n", "\r\n\r\n"},
        {"a\rb\n", "a\rb\r\n"},
        {"\n\n\n", "\r\n\r\n\r\n"},
    };
    for (const Row& r : table) CHECK(to_crlf(r.in) == r.out);
}

TEST_CASE("received: SMTP and local forms", "[queue][received]") {
    ReceivedContext rc{"mail.example.test", 1700000000, 60};
    auto env = qtest::sample_envelope(qtest::id_at(0x6000000000a000ull));
    std::string id = env.id.str();
    CHECK(received_line(env, rc) ==
          "Received: from client.example.net (client.example.net [192.0.2.7])\r\n"
          "\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n"
          "\tby mail.example.test (Pillarbox) with ESMTPS id " +
              id +
              ";\r\n"
              "\tTue, 14 Nov 2023 23:13:20 +0100\r\n");
    env.recipients.resize(1);
    env.tls.clear();
    env.helo = "evil)\r\nX-Bad: 1";
    std::string one = received_line(env, rc);
    CHECK(one.find("\tfor <bob@example.test>;\r\n") != std::string::npos);
    CHECK(one.find("\r\nX-Bad") == std::string::npos);

    env.origin = spool::Origin::Sendmail;
    env.origin_uid = 1000;
    CHECK(received_line(env, rc) ==
          "Received: by mail.example.test (Pillarbox, from userid 1000)\r\n"
          "\tid " +
              id + "; Tue, 14 Nov 2023 23:13:20 +0100\r\n");
}

TEST_CASE("delivery: routing table", "[queue][delivery]") {
    std::vector<std::string> local = {"example.test", "Mail.Example.Test"};
    struct Row {
        const char* address;
        Route route;
    };
    const Row table[] = {
        {"bob@example.test", Route::Local},      {"bob@EXAMPLE.TEST", Route::Local},
        {"bob@mail.example.test", Route::Local}, {"postmaster", Route::Local},
        {"bob@example.org", Route::Remote},      {"bob@sub.example.test", Route::Remote},
        {"\"a@b\"@example.org", Route::Remote},  {"bob@example.test.evil", Route::Remote},
    };
    for (const Row& r : table) {
        INFO(r.address);
        CHECK(route_of(r.address, local) == r.route);
    }
}
