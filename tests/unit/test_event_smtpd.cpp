// The smtpd glue: feed planning and command statistics (tables, whole and
// byte by byte), the enqueue frames, and the authd and queue-manager
// clients against fake servers over real Unix sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/queue_msgs.hpp"
#include "common/privsep/service.hpp"
#include "common/smtpserver/auth_client.hpp"
#include "common/smtpserver/enqueue.hpp"
#include "common/smtpserver/feed.hpp"
#include "common/smtpserver/server.hpp"
#include "tests/unit/test_event_common.hpp"

using namespace std::chrono_literals;
using namespace pbx::smtpserver;
using eventtest::run_until;
using eventtest::TempDir;
using pbx::UniqueFd;
using pbx::smtp::Phase;

namespace {

// Splits input the way the session does, returning the pieces.
std::vector<std::string> plan(std::string_view input, Phase phase) {
    std::vector<std::string> pieces;
    while (!input.empty()) {
        size_t n = next_feed_size(input, phase);
        REQUIRE(n > 0);
        REQUIRE(n <= input.size());
        pieces.emplace_back(input.substr(0, n));
        input.remove_prefix(n);
    }
    return pieces;
}

}  // namespace

TEST_CASE("next_feed_size: one command line per feed", "[smtpd][feed]") {
    CHECK(plan("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", Phase::Command) ==
          std::vector<std::string>{"MAIL FROM:<a@b>\r\n", "RCPT TO:<c@d>\r\n", "DATA\r\n"});
    CHECK(plan("NOOP\nQUI", Phase::Command) == std::vector<std::string>{"NOOP\n", "QUI"});
    CHECK(next_feed_size("", Phase::Command) == 0);
    CHECK(next_feed_size("x", Phase::Waiting) == 1);
}

TEST_CASE("next_feed_size: message text ends a feed at every dot line", "[smtpd][feed]") {
    struct Case {
        const char* in;
        std::vector<std::string> pieces;
    };
    const Case cases[] = {
        {"a\r\nb\r\n", {"a\r\nb\r\n"}},
        {"a\r\n.\r\nQUIT\r\n", {"a\r\n", ".\r\n", "QUIT\r\n"}},
        {".\r\nQUIT\r\n", {".\r\n", "QUIT\r\n"}},
        {"a\r\n..b\r\nc\r\n", {"a\r\n", "..b\r\n", "c\r\n"}},
        {"a\n.\nb", {"a\n", ".\n", "b"}},
        {"a\r\n.", {"a\r\n", "."}},
        {"no newline at all", {"no newline at all"}},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        CHECK(plan(c.in, Phase::Data) == c.pieces);
    }
}

TEST_CASE("command_verb", "[smtpd][feed]") {
    struct Case {
        const char* line;
        const char* verb;
    };
    const Case cases[] = {
        {"MAIL FROM:<a@b>\r\n", "MAIL"},
        {"ehlo x\r\n", "EHLO"},
        {"QUIT\r\n", "QUIT"},
        {"quit\n", "QUIT"},
        {"NOOP", "NOOP"},
        {"\r\n", ""},
        {" MAIL\r\n", ""},
        {"MAIL:x\r\n", ""},
        {"ABCDEFGHIJK\r\n", ""},
        {"ABCDEFGHIJ\r\n", "ABCDEFGHIJ"},
        {"x\x80y\r\n", ""},
        {"", ""},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        CHECK(command_verb(c.line) == c.verb);
    }
}

TEST_CASE("reply helpers", "[smtpd][feed]") {
    CHECK(reply_code("250 2.0.0 Ok\r\n") == 250);
    CHECK(reply_code("250-x\r\n250 y\r\n") == 250);
    CHECK(reply_code("25") == 0);
    CHECK(reply_code("2x0 ok") == 0);
    CHECK(last_reply_line("250-a\r\n250-b\r\n250 c\r\n") == "250 c");
    CHECK(last_reply_line("554 5.7.1 no\r\n") == "554 5.7.1 no");
    CHECK(last_reply_line("") == "");
    CHECK(logged_path("RCPT TO:<a@b> NOTIFY=NEVER\r\n") == "a@b");
    CHECK(logged_path("MAIL FROM:<>\r\n") == "");
    CHECK(logged_path("MAIL FROM:<a\x01\xffz>") == "a??z");
    CHECK(logged_path("MAIL FROM:<unterminated") == "");
    CHECK(logged_path("HELO x") == "");
}

TEST_CASE("CommandStats: the disconnect line", "[smtpd][feed]") {
    CommandStats s;
    CHECK(s.summary() == "commands=0");
    CHECK(s.last() == "CONNECT");
    s.command("EHLO");
    s.reply(250);
    s.command("MAIL");
    CHECK(s.awaiting_verb() == "mail");
    s.reply(250);
    s.command("RCPT");
    s.reply(554);
    s.command("RCPT");
    s.reply(250);
    s.command("DATA");
    s.reply(354);
    s.reply(250);  // the end-of-data reply answers no command
    s.command("XYZZY");
    s.reply(502);
    s.command("QUIT");
    s.reply(221);
    CHECK(s.summary() == "ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 unknown=0/1 commands=5/7");
    CHECK(s.last() == "QUIT");
    CHECK_FALSE(s.awaiting_reply());

    CommandStats all_ok;
    all_ok.command("helo");
    all_ok.reply(250);
    all_ok.command("quit");
    all_ok.reply(221);
    CHECK(all_ok.summary() == "helo=1 quit=1 commands=2");
}

TEST_CASE("the begin and rcpt frames carry the envelope", "[smtpd][enqueue]") {
    pbx::smtp::Envelope env;
    env.helo = "client.example";
    env.client_ip = "192.0.2.1";
    env.protocol = "ESMTPS";
    env.tls = true;
    env.tls_details = "TLSv1.3 with cipher X (256/256 bits)";
    env.mail_from = "a@b.example";
    env.body = pbx::smtp::BodyType::EightBitMime;
    env.smtputf8 = true;
    env.size_declared = 1234;
    env.ret = pbx::smtp::DsnRet::Hdrs;
    env.envid = "id-1";
    auto b = begin_frame(env);
    CHECK(b.name() == "begin");
    CHECK(b.get_str("origin") == "smtp");
    CHECK(b.get_str("sender") == "a@b.example");
    CHECK(b.get_str("protocol") == "ESMTPS");
    CHECK(b.get_str("client_address") == "192.0.2.1");
    CHECK_FALSE(b.has("client_hostname"));
    CHECK(b.get_str("helo") == "client.example");
    CHECK(b.get_str("tls") == env.tls_details);
    CHECK_FALSE(b.has("auth_user"));
    CHECK(b.get_str("body") == "8BITMIME");
    CHECK(b.get_u64("smtputf8") == 1u);
    CHECK(b.get_u64("size_declared") == 1234u);
    CHECK(b.get_str("ret") == "HDRS");
    CHECK(b.get_str("envid") == "id-1");
    CHECK(pbx::ipc::encode(b).ok());

    pbx::smtp::Envelope null_sender;
    null_sender.protocol = "SMTP";
    auto n = begin_frame(null_sender);
    CHECK(n.get_str("sender") == "");
    CHECK(n.get_str("body") == "7BIT");
    CHECK_FALSE(n.has("ret"));

    pbx::smtp::EnvelopeRecipient r;
    r.address = "alice@example.test";
    r.notify = pbx::smtp::kNotifyFailure | pbx::smtp::kNotifyDelay;
    r.orcpt_type = "rfc822";
    r.orcpt = "Alice@Example.test";
    auto rf = rcpt_frame(r);
    CHECK(rf.get_str("address") == "alice@example.test");
    CHECK(rf.get_str("orcpt") == "rfc822;Alice@Example.test");
    CHECK(rf.get_u64("notify") == 12u);
}

// ---- the clients against fake servers ----------------------------------------

namespace {

namespace ipc = pbx::ipc;

// A fake server for one channel: answers each message with `reply`.
struct FakeServer {
    pbx::EventBasePtr& base;
    const ipc::Protocol& proto;
    std::function<std::optional<ipc::Message>(ipc::Message&&)> reply;
    std::unique_ptr<ipc::Server> server;
    std::list<std::unique_ptr<ipc::Connection>> conns;
    std::vector<std::string> seen;  // message names in order
    size_t accepted = 0;

    FakeServer(pbx::EventBasePtr& b, const ipc::Protocol& p, const std::string& path,
               ipc::Channel ch)
        : base(b), proto(p) {
        auto l = ipc::listen_unix(path, 0666);
        REQUIRE(l.ok());
        server =
            std::make_unique<ipc::Server>(base.get(), std::move(*l), ch, ipc::PeerTable({}),
                                          [this](UniqueFd fd, const ipc::PeerInfo&) {
                                              ++accepted;
                                              auto* slot = &conns.emplace_back();
                                              *slot = std::make_unique<ipc::Connection>(
                                                  base.get(), std::move(fd), proto,
                                                  [this, slot](ipc::Message&& m) {
                                                      seen.emplace_back(m.name());
                                                      if (!reply) return;
                                                      if (auto r = reply(std::move(m)); r && *slot)
                                                          (void)(*slot)->send(std::move(*r));
                                                  },
                                                  [](const ipc::IpcError&) {});
                                          });
    }
    void drop_all() { conns.clear(); }
};

}  // namespace

TEST_CASE("AuthClient: answers, ids, unreachable, timeout, reconnect", "[smtpd][auth]") {
    TempDir dir;
    const std::string path = dir.path + "/auth.sock";
    pbx::EventBasePtr base(event_base_new());

    // Unreachable: TempFail, and never from inside lookup_rcpt().
    AuthClient client(base.get(), path, 300ms);
    std::optional<RcptAnswer> got;
    client.lookup_rcpt("alice@example.test", [&](const RcptAnswer& a) { got = a; });
    CHECK_FALSE(got);
    run_until(base.get(), [&] { return got.has_value(); });
    CHECK(got->kind == RcptAnswer::Kind::TempFail);

    FakeServer authd(base, ipc::auth::kProtocol, path, ipc::Channel::Auth);
    bool silent = false;
    authd.reply = [&](ipc::Message&& m) -> std::optional<ipc::Message> {
        if (silent) return std::nullopt;
        auto r = ipc::Message::named(ipc::auth::kProtocol, "rcpt_result");
        r.set_u64("id", *m.get_u64("id"));
        std::string addr(*m.get_str("address"));
        for (char& c : addr) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (addr.rfind("alice@", 0) == 0) {
            r.set_str("status", "found").set_str("canonical", "alice@example.test");
        } else if (addr.rfind("nobody@", 0) == 0) {
            r.set_str("status", "unknown");
        } else if (addr.rfind("far@", 0) == 0) {
            r.set_str("status", "remote");
        } else {
            r.set_str("status", "tempfail");
        }
        return r;
    };

    // Pipelined lookups, each answered to its own callback.
    std::vector<std::pair<std::string, RcptAnswer::Kind>> answers;
    for (std::string a :
         {"Alice@example.test", "nobody@example.test", "far@x.example", "busy@example.test"})
        client.lookup_rcpt(a, [&, a](const RcptAnswer& r) { answers.emplace_back(a, r.kind); });
    // A cancelled lookup never answers.
    bool cancelled_called = false;
    uint64_t id = client.lookup_rcpt("alice@example.test",
                                     [&](const RcptAnswer&) { cancelled_called = true; });
    client.cancel(id);
    run_until(base.get(), [&] { return answers.size() == 4; });
    CHECK(answers[0] ==
          std::pair<std::string, RcptAnswer::Kind>{"Alice@example.test", RcptAnswer::Kind::Found});
    CHECK(answers[1].second == RcptAnswer::Kind::Unknown);
    CHECK(answers[2].second == RcptAnswer::Kind::Remote);
    CHECK(answers[3].second == RcptAnswer::Kind::TempFail);
    CHECK_FALSE(cancelled_called);
    CHECK(authd.accepted == 1);  // one connection for all of them

    // authd does not answer: TempFail after the timeout.
    silent = true;
    got.reset();
    const auto t0 = std::chrono::steady_clock::now();
    client.lookup_rcpt("alice@example.test", [&](const RcptAnswer& a) { got = a; });
    run_until(base.get(), [&] { return got.has_value(); });
    CHECK(got->kind == RcptAnswer::Kind::TempFail);
    CHECK(std::chrono::steady_clock::now() - t0 >= 250ms);

    // authd restarts (drops the connection): in-flight lookups fail, the next
    // one reconnects.
    got.reset();
    client.lookup_rcpt("alice@example.test", [&](const RcptAnswer& a) { got = a; });
    run_until(base.get(), [&] { return authd.seen.size() == 7; });
    authd.drop_all();
    run_until(base.get(), [&] { return got.has_value(); });
    CHECK(got->kind == RcptAnswer::Kind::TempFail);
    silent = false;
    got.reset();
    client.lookup_rcpt("alice@example.test", [&](const RcptAnswer& a) { got = a; });
    run_until(base.get(), [&] { return got.has_value(); });
    CHECK(got->kind == RcptAnswer::Kind::Found);
    CHECK(got->canonical == "alice@example.test");
    CHECK(authd.accepted == 2);
    CHECK(client.pending() == 0);
}

TEST_CASE("EnqueueClient: a transaction, failures, and reuse", "[smtpd][enqueue]") {
    TempDir dir;
    const std::string path = dir.path + "/enqueue.sock";
    pbx::EventBasePtr base(event_base_new());
    pbx::smtp::Envelope env;
    env.protocol = "ESMTP";
    env.mail_from = "a@b.example";
    env.recipients.push_back({"alice@example.test", "alice@example.test", 0, "", ""});
    env.recipients.push_back({"bob@example.test", "bob@example.test", 0, "", ""});

    // Unreachable: the commit fails temporarily, answered from the loop.
    {
        EnqueueClient q(base.get(), path, 5s);
        q.begin(env);
        q.chunk("ignored\r\n");
        std::optional<EnqueueResult> r;
        q.end([&](const EnqueueResult& x) { r = x; });
        CHECK_FALSE(r);
        run_until(base.get(), [&] { return r.has_value(); });
        CHECK(r->kind == EnqueueResult::Kind::TempFail);
        CHECK_FALSE(q.in_transaction());
    }

    FakeServer qm(base, ipc::queue::kProtocol, path, ipc::Channel::Enqueue);
    std::string data;
    int commits = 0;
    qm.reply = [&](ipc::Message&& m) -> std::optional<ipc::Message> {
        if (m.name() == "data") data += std::string(*m.get_bytes("bytes"));
        if (m.name() != "commit") return std::nullopt;
        ++commits;
        if (commits == 2) {
            auto f = ipc::Message::named(ipc::queue::kProtocol, "failed");
            f.set_u64("temporary", 0).set_str("text", "Error: message refused");
            return f;
        }
        auto q = ipc::Message::named(ipc::queue::kProtocol, "queued");
        q.set_str("queue_id", "QID" + std::to_string(commits));
        return q;
    };

    EnqueueClient q(base.get(), path, 5s);
    std::optional<EnqueueResult> r;
    q.begin(env);
    const std::string big(600 * 1024, 'x');  // more than one frame's worth
    q.chunk("Subject: t\r\n\r\n");
    q.chunk(big);
    q.end([&](const EnqueueResult& x) { r = x; });
    run_until(base.get(), [&] { return r.has_value(); });
    CHECK(r->kind == EnqueueResult::Kind::Queued);
    CHECK(r->text == "QID1");
    CHECK(data == "Subject: t\r\n\r\n" + big);
    CHECK(qm.seen.front() == "begin");
    CHECK(std::count(qm.seen.begin(), qm.seen.end(), "rcpt") == 2);

    // The same connection for the next message; a permanent refusal.
    r.reset();
    q.begin(env);
    q.chunk("x\r\n");
    q.end([&](const EnqueueResult& x) { r = x; });
    run_until(base.get(), [&] { return r.has_value(); });
    CHECK(r->kind == EnqueueResult::Kind::PermFail);
    CHECK(r->text == "Error: message refused");
    CHECK(qm.accepted == 1);

    // An aborted transaction sends abort and gets no answer.
    q.begin(env);
    q.chunk("y\r\n");
    q.abort();
    run_until(base.get(), [&] { return qm.seen.back() == "abort"; });

    // The queue-manager goes away before it answers: TempFail.
    qm.reply = nullptr;
    r.reset();
    q.begin(env);
    q.end([&](const EnqueueResult& x) { r = x; });
    run_until(base.get(), [&] { return qm.seen.back() == "commit"; });
    qm.drop_all();
    run_until(base.get(), [&] { return r.has_value(); });
    CHECK(r->kind == EnqueueResult::Kind::TempFail);
}

// ---- whole sessions, in process ------------------------------------------------
//
// The real Server and Session over loopback TCP, with fake authd and
// queue-manager, so that the session code runs under the leak checker (the
// smtpd binary itself cannot be leak-checked inside its chroot).

namespace {

struct SmtpClient {
    int fd = -1;
    std::string buf;
    pbx::SslCtxPtr ctx;
    pbx::SslPtr ssl;

    explicit SmtpClient(uint16_t port) {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons(port);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) fd = -1;
    }
    ~SmtpClient() {
        ssl.reset();
        if (fd >= 0) ::close(fd);
    }
    void send(std::string_view s) {
        if (ssl) {
            SSL_write(ssl.get(), s.data(), static_cast<int>(s.size()));
            return;
        }
        while (!s.empty()) {
            ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
            if (n <= 0) return;
            s.remove_prefix(static_cast<size_t>(n));
        }
    }
    bool fill() {
        char tmp[8192];
        if (ssl) {
            int n = SSL_read(ssl.get(), tmp, sizeof tmp);
            if (n <= 0) return false;
            buf.append(tmp, static_cast<size_t>(n));
            return true;
        }
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10000) <= 0) return false;
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return false;
        buf.append(tmp, static_cast<size_t>(n));
        return true;
    }
    // One whole reply ("" at EOF or after 10 s).
    std::string reply() {
        std::string out;
        for (;;) {
            size_t nl;
            while ((nl = buf.find('\n')) == std::string::npos)
                if (!fill()) return out;
            std::string line = buf.substr(0, nl + 1);
            buf.erase(0, nl + 1);
            out += line;
            if (line.size() < 4 || line[3] != '-') return out;
        }
    }
    std::string cmd(std::string_view line) {
        send(std::string(line) + "\r\n");
        return reply();
    }
    bool starttls(const std::string& ca) {
        ctx.reset(SSL_CTX_new(TLS_client_method()));
        SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr);
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
        ssl.reset(SSL_new(ctx.get()));
        SSL_set_fd(ssl.get(), fd);
        SSL_set1_host(ssl.get(), "localhost");
        return SSL_connect(ssl.get()) == 1;
    }
};

// A configured smtpd Server on a loopback port, in this process.
struct Rig {
    TempDir dir;
    pbx::EventBasePtr base{event_base_new()};
    pbx::ServiceContext ctx;
    std::unique_ptr<Server> server;
    uint16_t port = 0;

    explicit Rig(const std::string& extra_config = "") {
        ::mkdir((dir.path + "/run").c_str(), 0755);
        ::mkdir((dir.path + "/run/auth").c_str(), 0755);
        ::mkdir((dir.path + "/run/queue").c_str(), 0755);
        std::string text = "runtime_dir = " + dir.path + "/run\n" +
                           "domains = example.test\nmyhostname = mail.example.test\n" +
                           "tls_cert_file = " + eventtest::test_cert().cert + "\n" +
                           "tls_key_file = " + eventtest::test_cert().key + "\n" + extra_config;
        auto cfg = pbx::config::Config::parse(text, "test.conf");
        REQUIRE(cfg.ok());
        ctx.name = "smtpd";
        ctx.config = std::move(cfg).value();
        UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        REQUIRE(::listen(l.get(), 16) == 0);
        socklen_t len = sizeof sa;
        REQUIRE(::getsockname(l.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
        port = ntohs(sa.sin_port);
        ctx.listeners.push_back({"smtp", std::move(l), false});
        ctx.base = std::move(base);
        auto s = Server::prepare(ctx);
        REQUIRE(s.ok());
        server = std::move(s).value();
        REQUIRE(server->start(ctx).ok());
    }
    ~Rig() {
        server.reset();
        ctx.base.reset();
    }
    event_base* loop() { return ctx.base.get(); }
    std::string path(const char* rel) { return dir.path + "/run/" + rel; }

    // Runs the client in a thread and the loop here until it is done.
    void talk(const std::function<void(SmtpClient&)>& script) {
        std::atomic<bool> done{false};
        std::thread t([&] {
            SmtpClient c(port);
            script(c);
            done = true;
        });
        run_until(loop(), [&] { return done.load(); });
        t.join();
    }
};

// authd that knows alice and bob.
std::unique_ptr<FakeServer> fake_authd(pbx::EventBasePtr& base, const std::string& path) {
    auto f = std::make_unique<FakeServer>(base, ipc::auth::kProtocol, path, ipc::Channel::Auth);
    f->reply = [](ipc::Message&& m) -> std::optional<ipc::Message> {
        auto r = ipc::Message::named(ipc::auth::kProtocol, "rcpt_result");
        r.set_u64("id", *m.get_u64("id"));
        std::string a(*m.get_str("address"));
        if (a == "alice@example.test" || a == "bob@example.test")
            r.set_str("status", "found").set_str("canonical", a);
        else
            r.set_str("status", "unknown");
        return r;
    };
    return f;
}

}  // namespace

TEST_CASE("session: a pipelined message to a local user is queued", "[smtpd][session]") {
    Rig rig;
    auto authd = fake_authd(rig.ctx.base, rig.path("auth/auth.sock"));
    FakeServer qm(rig.ctx.base, ipc::queue::kProtocol, rig.path("queue/enqueue.sock"),
                  ipc::Channel::Enqueue);
    std::string data, sender;
    std::vector<std::string> rcpts;
    qm.reply = [&](ipc::Message&& m) -> std::optional<ipc::Message> {
        if (m.name() == "begin") sender = *m.get_str("sender");
        if (m.name() == "rcpt") rcpts.emplace_back(*m.get_str("address"));
        if (m.name() == "data") data += std::string(*m.get_bytes("bytes"));
        if (m.name() != "commit") return std::nullopt;
        auto q = ipc::Message::named(ipc::queue::kProtocol, "queued");
        q.set_str("queue_id", "0ABCDEF");
        return q;
    };
    std::vector<std::string> replies;
    std::string big;  // several chunks, in lines of 1000 octets
    for (int i = 0; i < 300; ++i) big += std::string(998, 'z') + "\r\n";
    rig.talk([&](SmtpClient& c) {
        replies.push_back(c.reply());
        replies.push_back(c.cmd("EHLO client.example"));
        c.send(
            "MAIL FROM:<s@elsewhere.example>\r\nRCPT TO:<alice@example.test>\r\n"
            "RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
        for (int i = 0; i < 5; ++i) replies.push_back(c.reply());
        c.send("Subject: x\r\n\r\n..dot\r\n" + big + ".\r\nQUIT\r\n");
        replies.push_back(c.reply());
        replies.push_back(c.reply());
    });
    REQUIRE(replies.size() == 9);
    CHECK(replies[0].rfind("220 mail.example.test ESMTP", 0) == 0);
    CHECK(replies[1].find("STARTTLS") != std::string::npos);
    CHECK(replies[1].find("AUTH") == std::string::npos);
    CHECK(replies[2].rfind("250 2.1.0", 0) == 0);
    CHECK(replies[3].rfind("250 2.1.5", 0) == 0);
    CHECK(replies[4].rfind("550 5.1.1", 0) == 0);
    CHECK(replies[5].rfind("250 2.1.5", 0) == 0);
    CHECK(replies[6].rfind("354", 0) == 0);
    CHECK(replies[7] == "250 2.0.0 Ok: queued as 0ABCDEF\r\n");
    CHECK(replies[8].rfind("221", 0) == 0);
    CHECK(sender == "s@elsewhere.example");
    CHECK(rcpts == std::vector<std::string>{"alice@example.test", "bob@example.test"});
    CHECK(data == "Subject: x\r\n\r\n.dot\r\n" + big);
}

TEST_CASE("session: the next session reuses the queue-manager connection", "[smtpd][session]") {
    Rig rig;
    auto authd = fake_authd(rig.ctx.base, rig.path("auth/auth.sock"));
    FakeServer qm(rig.ctx.base, ipc::queue::kProtocol, rig.path("queue/enqueue.sock"),
                  ipc::Channel::Enqueue);
    int n = 0;
    qm.reply = [&](ipc::Message&& m) -> std::optional<ipc::Message> {
        if (m.name() != "commit") return std::nullopt;
        auto q = ipc::Message::named(ipc::queue::kProtocol, "queued");
        q.set_str("queue_id", "0ID" + std::to_string(++n));
        return q;
    };
    // One message per SMTP connection, as smtp-source sends them; each client
    // waits for the server's close, so its session has ended before the next.
    auto one_message = [&](bool quit) {
        std::string queued, eof = "x";
        rig.talk([&](SmtpClient& c) {
            c.reply();
            c.cmd("EHLO client.example");
            c.cmd("MAIL FROM:<s@elsewhere.example>");
            c.cmd("RCPT TO:<alice@example.test>");
            c.cmd("DATA");
            queued = c.cmd("Subject: x\r\n\r\nhi\r\n.");
            if (!quit) {  // a second message, and the client hangs up in its text
                c.send(
                    "MAIL FROM:<s@elsewhere.example>\r\nRCPT TO:<alice@example.test>\r\n"
                    "DATA\r\n");
                for (int i = 0; i < 3; ++i) c.reply();
                return;
            }
            c.cmd("QUIT");
            eof = c.reply();  // "" once the server closed
        });
        if (quit) CHECK(eof.empty());
        return queued;
    };
    CHECK(one_message(true) == "250 2.0.0 Ok: queued as 0ID1\r\n");
    CHECK(one_message(true) == "250 2.0.0 Ok: queued as 0ID2\r\n");
    CHECK(qm.accepted == 1);
    // A session that ends inside a transaction does not hand its connection
    // on (an answer to it may still come).
    CHECK(one_message(false) == "250 2.0.0 Ok: queued as 0ID3\r\n");
    CHECK(one_message(true) == "250 2.0.0 Ok: queued as 0ID4\r\n");
    CHECK(qm.accepted == 2);
    // A queue-manager that went away: the next session connects again.
    qm.drop_all();
    CHECK(one_message(true) == "250 2.0.0 Ok: queued as 0ID5\r\n");
    CHECK(qm.accepted == 3);
}

TEST_CASE("session: authd or the queue-manager missing gives 451", "[smtpd][session]") {
    Rig rig("trusted_networks = 127.0.0.0/8\n");
    std::vector<std::string> replies;
    rig.talk([&](SmtpClient& c) {
        c.reply();
        c.cmd("EHLO client.example");
        replies.push_back(c.cmd("MAIL FROM:<s@elsewhere.example>"));
        replies.push_back(c.cmd("RCPT TO:<alice@example.test>"));     // no authd
        replies.push_back(c.cmd("RCPT TO:<far@elsewhere.example>"));  // relay: trusted
        replies.push_back(c.cmd("DATA"));
        c.send("Subject: x\r\n\r\nbody\r\n.\r\n");
        replies.push_back(c.reply());  // no queue-manager
        replies.push_back(c.cmd("QUIT"));
    });
    REQUIRE(replies.size() == 6);
    CHECK(replies[1].rfind("451 4.3.0", 0) == 0);
    CHECK(replies[2].rfind("250 2.1.5", 0) == 0);
    CHECK(replies[3].rfind("354", 0) == 0);
    CHECK(replies[4].rfind("451 4.3.0", 0) == 0);
    CHECK(replies[5].rfind("221", 0) == 0);
}

TEST_CASE("session: STARTTLS, injection discarded, then a fresh session", "[smtpd][session]") {
    Rig rig;
    std::vector<std::string> replies;
    bool handshake = false;
    rig.talk([&](SmtpClient& c) {
        c.reply();
        c.cmd("EHLO client.example");
        c.send("STARTTLS\r\nMAIL FROM:<evil@elsewhere.example>\r\n");
        replies.push_back(c.reply());
        handshake = c.starttls(eventtest::test_cert().cert);
        if (!handshake) return;
        replies.push_back(c.cmd("RCPT TO:<alice@example.test>"));  // no MAIL inside TLS
        replies.push_back(c.cmd("EHLO client.example"));
        replies.push_back(c.cmd("QUIT"));
    });
    REQUIRE(handshake);
    REQUIRE(replies.size() == 4);
    CHECK(replies[0].rfind("220 2.0.0", 0) == 0);
    CHECK(replies[1].rfind("503", 0) == 0);
    CHECK(replies[2].find("STARTTLS") == std::string::npos);
    CHECK(replies[3].rfind("221", 0) == 0);
}

TEST_CASE("session: pregreet, timeout and shutdown", "[smtpd][session]") {
    SECTION("pregreet with a greeting pause") {
        Rig rig("smtpd_greet_pause = 1s\n");
        std::string r;
        rig.talk([&](SmtpClient& c) {
            c.send("EHLO early.example\r\n");
            r = c.reply();
        });
        CHECK(r.rfind("554 5.7.1", 0) == 0);
    }
    SECTION("command timeout") {
        Rig rig("smtpd_command_timeout = 1s\n");
        std::string greeting, r;
        rig.talk([&](SmtpClient& c) {
            greeting = c.reply();
            r = c.reply();
        });
        CHECK(greeting.rfind("220", 0) == 0);
        CHECK(r.rfind("421 4.4.2", 0) == 0);
    }
    SECTION("the service stops") {
        Rig rig;
        std::string r;
        std::atomic<bool> greeted{false};
        std::thread t([&] {
            SmtpClient c(rig.port);
            c.reply();
            greeted = true;
            r = c.reply();
        });
        run_until(rig.loop(), [&] { return greeted.load(); });
        rig.server->stop();
        event_base_dispatch(rig.loop());  // returns once the session is gone
        t.join();
        CHECK(r.rfind("421 4.3.2", 0) == 0);
    }
}

TEST_CASE("RateLimiter: sliding hour per user, bounded", "[smtpd][submission][rate]") {
    using Clock = RateLimiter::Clock;
    RateLimiter::Limits lim;
    lim.messages_per_hour = 3;
    lim.recipients_per_hour = 5;
    RateLimiter r(lim);
    const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(100);
    for (int i = 0; i < 3; ++i) CHECK(r.take_message("alice", t0 + std::chrono::minutes(i)));
    CHECK_FALSE(r.take_message("alice", t0 + std::chrono::minutes(10)));
    CHECK(r.take_message("bob", t0 + std::chrono::minutes(10)));  // per user
    CHECK(r.messages("alice", t0 + std::chrono::minutes(10)) == 3);
    // The first one leaves the window an hour after it came.
    CHECK_FALSE(r.take_message("alice", t0 + std::chrono::minutes(59)));
    CHECK(r.take_message("alice", t0 + std::chrono::minutes(60)));
    CHECK_FALSE(r.take_message("alice", t0 + std::chrono::minutes(60)));
    for (int i = 0; i < 5; ++i) CHECK(r.take_recipient("alice", t0));
    CHECK_FALSE(r.take_recipient("alice", t0));
    CHECK(r.recipients("alice", t0) == 5);
    // Idle users are forgotten.
    CHECK(r.users() == 2);
    CHECK(r.take_message("carol", t0 + std::chrono::hours(5)));
    CHECK(r.users() == 1);
    // 0 means no limit, and nothing is kept for it.
    RateLimiter none(RateLimiter::Limits{});
    for (int i = 0; i < 1000; ++i) CHECK(none.take_recipient("alice", t0));
    CHECK(none.users() == 0);
}
