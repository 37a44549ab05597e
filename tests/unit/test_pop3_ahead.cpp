// Reply-ahead (pop3d(8), the proxy protocol): the login process's ReplyAhead
// against pop3d's FramedSession + SessionEngine. The property: whatever the
// script, the splitting and the order of events, the client receives
// exactly what the session engine alone would have sent
// (tests/unit/pop3_ahead_twin.hpp). Then the pieces: the engine's offers,
// the login's rule step by step, and the frames the login refuses.
#include <catch2/catch.hpp>

#include <memory>
#include <random>

#include "tests/unit/pop3_ahead_twin.hpp"

using namespace pbx;
using namespace pbx::pop3;
namespace proxy = pbx::ipc::proxy;

namespace {

std::string frame(ipc::Message m) {
    auto e = ipc::encode(m);
    REQUIRE(e);
    return e->bytes;
}

std::string hello() {
    return frame(ipc::make_hello(proxy::kProtocol));
}

std::string data(std::string_view b) {
    auto m = ipc::Message::named(proxy::kProtocol, "data");
    m.set_bytes("bytes", b);
    return frame(std::move(m));
}

std::string idle(uint64_t c, std::optional<std::string> line = std::nullopt,
                 std::optional<std::string> answer = std::nullopt) {
    auto m = ipc::Message::named(proxy::kProtocol, "idle");
    m.set_u64("consumed", c);
    if (line) m.set_bytes("line", *line);
    if (answer) m.set_bytes("answer", *answer);
    return frame(std::move(m));
}

std::string take(std::string& s) {
    std::string r = std::move(s);
    s.clear();
    return r;
}

}  // namespace

TEST_CASE("reply-ahead: login + pop3d give the client what the engine alone gives",
          "[pop3][ahead]") {
    const auto texts = twin::mailbox();
    uint64_t answered = 0, scripts = 0;
    for (uint32_t seed = 1; seed <= 400; ++seed) {
        std::mt19937 rng(seed);
        twin::Pick pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
        const std::string script = twin::make_script(pick, 1 + pick(60), texts.size());
        SessionLimits limits{static_cast<int>(3 + pick(30))};
        twin::TwinStore plain_store(texts), ahead_store(texts);
        const std::string want = twin::run_plain(plain_store, script, limits);
        const auto got = twin::run_ahead(ahead_store, script, limits, pick, pick(2000));
        INFO("seed " << seed << " script:\n" << script);
        REQUIRE(got.error.empty());
        REQUIRE(got.client == want);
        REQUIRE(got.answered_by_login == got.skipped_by_pop3d);
        answered += got.answered_by_login;
        ++scripts;
    }
    // The mechanism ran, not just the fallback (pipelined scripts mostly
    // reach pop3d in whole batches, where it makes no offer).
    CHECK(answered > scripts / 10);
}

TEST_CASE("reply-ahead: scripts fed one byte at a time", "[pop3][ahead]") {
    const auto texts = twin::mailbox();
    const std::vector<std::string> scripts = {
        "RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 4\r\nRETR 5\r\nRETR 6\r\nRETR 7\r\nQUIT\r\n",
        "RETR 1\r\nDELE 2\r\nRETR 2\r\nRETR 3\r\nRSET\r\nRETR 2\r\n",
        "RETR 1\r\nretr 2\r\nRETR  3\r\nRETR 4\nRETR 5 \r\nRETR 05\r\nTOP 6 1\r\nRETR 6\r\n",
        "RETR 1\r\nRETR 2",  // ends in a prefix of the offered line
        "RETR 1\r\nRETR 22\r\nRETR 2\r\nXYZ\r\n\r\nRETR 3\r\nRETR 3\r\nRETR 4\r\n",
    };
    for (const auto& script : scripts) {
        for (int variant = 0; variant < 3; ++variant) {
            twin::TwinStore a(texts), b(texts);
            const std::string want = twin::run_plain(a, script, SessionLimits{20});
            // variant 0: every choice 0 (one byte at a time, client first);
            // 1: pipes before the client; 2: alternating.
            size_t k = 0;
            twin::Pick pick = [&](size_t n) {
                ++k;
                if (variant == 0) return size_t{0};
                if (variant == 1) return n == 4 ? (k / 5) % 4 : size_t{0};
                return (k % 3) % n;
            };
            const auto got = twin::run_ahead(b, script, SessionLimits{20}, pick, 5000);
            INFO(script << " variant " << variant);
            CHECK(got.error.empty());
            CHECK(got.client == want);
            CHECK(got.answered_by_login == got.skipped_by_pop3d);
        }
    }
}

TEST_CASE("reply-ahead: the engine's offer", "[pop3][ahead]") {
    twin::TwinStore store(twin::mailbox());
    SessionEngine e(store, SessionLimits{20});
    e.start();
    while (e.has_output()) e.take_output(1 << 20);
    CHECK_FALSE(e.offer(16384));  // nothing prepared yet
    REQUIRE(e.feed("RETR 1\r\n") == 8);
    std::string one;
    while (e.has_output()) one += e.take_output(1 << 20);
    REQUIRE(e.prefetch());
    auto o = e.offer(16384);
    REQUIRE(o);
    CHECK(o->line == "RETR 2\r\n");
    const std::string two = "+OK " + std::to_string(store.infos[1].size) + " octets\r\n" +
                            "Subject: two\r\n\r\nbody\r\nline 2\r\n.\r\n";
    CHECK(o->answer == two);
    CHECK(e.offer_out());

    // A prefix of the line: nothing consumed; then the line: no output.
    CHECK(e.feed("RETR") == 0);
    CHECK(e.feed("RETR 2\r\nNOOP\r\n") == 8 + 6);
    std::string after;
    while (e.has_output()) after += e.take_output(1 << 20);
    CHECK(after == "+OK\r\n");
    CHECK(e.answered_ahead() == 1);

    // The next offer is RETR 3; other bytes go the normal way.
    REQUIRE(e.prefetch());
    o = e.offer(16384);
    REQUIRE(o);
    CHECK(o->line == "RETR 3\r\n");
    CHECK(e.feed("retr 3\r\n") == 8);
    CHECK_FALSE(e.offer_out());
    std::string three;
    while (e.has_output()) three += e.take_output(1 << 20);
    CHECK(three.starts_with("+OK "));
    CHECK(e.answered_ahead() == 1);

    // Over the size limit (message 5 is 20 KB): no offer.
    CHECK(e.feed("RETR 4\r\n") == 8);
    while (e.has_output()) e.take_output(1 << 20);
    REQUIRE(e.prefetch());
    CHECK_FALSE(e.offer(16384));
    CHECK(e.offer(64 * 1024));

    // A deleted message is not offered; a partial line prevents an offer.
    auto fresh = [](Store& st) {
        auto e = std::make_unique<SessionEngine>(st, SessionLimits{20});
        e->start();
        while (e->has_output()) e->take_output(1 << 20);
        REQUIRE(e->feed("RETR 1\r\n") == 8);
        while (e->has_output()) e->take_output(1 << 20);
        REQUIRE(e->prefetch());  // message 2
        return e;
    };
    twin::TwinStore s2(twin::mailbox());
    auto f = fresh(s2);
    CHECK(f->feed("DELE 2\r\n") == 8);
    while (f->has_output()) f->take_output(1 << 20);
    CHECK_FALSE(f->offer(16384));
    CHECK(f->feed("RSET\r\n") == 6);
    while (f->has_output()) f->take_output(1 << 20);
    CHECK(f->offer(16384));
    twin::TwinStore s2b(twin::mailbox());
    auto h = fresh(s2b);
    CHECK(h->feed("RET") == 3);
    CHECK_FALSE(h->offer(16384));

    // Autologout drops an offer: the terminal reply goes out.
    twin::TwinStore s3(twin::mailbox());
    SessionEngine g(s3, SessionLimits{20});
    g.start();
    while (g.has_output()) g.take_output(1 << 20);
    g.feed("RETR 1\r\n");
    while (g.has_output()) g.take_output(1 << 20);
    g.prefetch();
    REQUIRE(g.offer(16384));
    g.timed_out();
    CHECK_FALSE(g.offer_out());
    CHECK(g.take_output(1 << 20).starts_with("-ERR Autologout"));
}

TEST_CASE("reply-ahead: the login's rule", "[pop3][ahead][login]") {
    login::ReplyAhead a;
    REQUIRE(a.from_session(hello() + data("+OK Logged in.\r\n")));
    CHECK(take(a.to_client()) == "+OK Logged in.\r\n");
    // No idle yet: the client's bytes are held.
    CHECK(a.from_client("RETR 1\r\nRETR 2\r\n") == 16);
    CHECK(a.to_session().empty());
    CHECK(a.held() == 16);
    // idle{0}: what is held goes on.
    REQUIRE(a.from_session(idle(0)));
    CHECK(take(a.to_session()) == "RETR 1\r\nRETR 2\r\n");
    CHECK(a.forwarded() == 16);
    // The session read the batch in two pieces and offers RETR 2 at 8, past
    // which the login already is: decided on the forwarded bytes, answered
    // now, after RETR 1's answer.
    REQUIRE(a.from_session(data("+OK 1\r\nx\r\n.\r\n") + idle(8, "RETR 2\r\n", "ANSWER2")));
    CHECK(take(a.to_client()) ==
          "+OK 1\r\nx\r\n.\r\n"
          "ANSWER2");
    CHECK(a.answered() == 1);
    CHECK(a.from_client("NOOP\r\n") == 6);
    CHECK(a.to_session().empty());  // no idle{16} yet
    // idle{16} with an offer the held bytes do not match: forwarded.
    REQUIRE(a.from_session(idle(16, "RETR 3\r\n", "ANSWER3")));
    CHECK(take(a.to_session()) == "NOOP\r\n");
    CHECK(a.to_client().empty());
    // Offer at 22 = F; the client sends a prefix: wait; then the rest.
    REQUIRE(a.from_session(data("+OK\r\n") + idle(22, "RETR 3\r\n", "ANSWER3")));
    CHECK(take(a.to_client()) == "+OK\r\n");
    CHECK(a.from_client("RET") == 3);
    CHECK(a.to_session().empty());
    CHECK(a.to_client().empty());
    CHECK(a.from_client("R 3\r\nRETR 4\r\nRE") == 15);
    CHECK(take(a.to_client()) == "ANSWER3");
    CHECK(take(a.to_session()) == "RETR 3\r\nRETR 4\r\nRE");
    CHECK(a.forwarded() == 40);
    CHECK(a.answered() == 2);
    // Stale offers: at 30 (decided on the forwarded "RETR 4\r\nRE": answered
    // at once), then at 38, where only "RE" was forwarded: a prefix, so both
    // sides wait for the client; its next bytes decide and go on at once
    // (the session waits for them: no idle will come before).
    REQUIRE(a.from_session(idle(30, "RETR 4\r\n", "ANSWER4")));
    CHECK(take(a.to_client()) == "ANSWER4");
    REQUIRE(a.from_session(idle(38, "RETR 5\r\n", "ANSWER5")));
    CHECK(a.to_client().empty());
    CHECK(a.from_client("TR 5\r\nNOOP\r\n") == 12);
    CHECK(take(a.to_client()) == "ANSWER5");
    CHECK(take(a.to_session()) == "TR 5\r\nNOOP\r\n");
    CHECK(a.forwarded() == 52);
    CHECK(a.answered() == 4);
    // A stale offer the forwarded bytes contradict: dropped.
    REQUIRE(a.from_session(idle(46, "RETR 6\r\n", "ANSWER6")));
    CHECK(a.to_client().empty());
    CHECK(a.answered() == 4);
    // A data frame drops a held offer (autologout, shutdown).
    REQUIRE(
        a.from_session(data("+OK\r\n") + idle(52, "RETR 6\r\n", "ANSWER6") + data("-ERR bye\r\n")));
    CHECK(a.from_client("RETR 6\r\n") == 8);
    CHECK(take(a.to_client()) == "+OK\r\n-ERR bye\r\n");
    CHECK(a.to_session().empty());
    // At the client's end what is held goes on, unanswered.
    a.client_eof();
    CHECK(take(a.to_session()) == "RETR 6\r\n");
    CHECK(a.to_client().empty());
    CHECK(a.answered() == 4);
}

TEST_CASE("reply-ahead: the login holds a bounded amount", "[pop3][ahead][login]") {
    login::ReplyAhead a;
    REQUIRE(a.from_session(hello()));
    const std::string big(100 * 1024, 'x');
    CHECK(a.from_client(big) == login::ReplyAhead::kMaxHeld);
    CHECK(a.from_client("y") == 0);
    REQUIRE(a.from_session(idle(0)));  // no LF: all of it goes on
    CHECK(a.to_session().size() == login::ReplyAhead::kMaxHeld);
    CHECK(a.held() == 0);
}

TEST_CASE("reply-ahead: frames the login refuses", "[pop3][ahead][login]") {
    struct C {
        std::string name;
        std::string prefix;  // accepted first
        std::string bad;
    };
    std::string too_big = hello();
    {
        std::string b(proxy::kMaxData + 1, 'x');
        // Hand-made: encode() refuses frames over the limit.
        std::string body;
        auto be = [](uint64_t v, int n) {
            std::string s;
            for (int i = n - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
            return s;
        };
        body = be(ipc::kMagic, 2) + be(ipc::kWireVersion, 1) + be(0, 1) + be(1, 2) + be(1, 2) +
               be(0, 2) + be(b.size(), 4) + b;
        too_big = be(body.size() + 4, 4) + body;
    }
    auto other_hello = [] {
        static const ipc::FieldSpec f[] = {{"x", ipc::Kind::U64}};
        static const ipc::MessageSpec m[] = {{1, "x", f}};
        static const ipc::Protocol p{"session", 1, m, 1024};
        return frame(ipc::make_hello(p));
    };
    const std::vector<C> cases = {
        {"garbage", "", "hello, world\r\n"},
        {"no hello", "", data("x")},
        {"another protocol's hello", "", other_hello()},
        {"idle past what was forwarded", hello(), idle(1)},
        {"idle going back", "", ""},  // set up below
        {"line without answer", hello(), idle(0, "RETR 1\r\n")},
        {"answer without line", hello(), idle(0, std::nullopt, "x")},
        {"empty line", hello(), idle(0, "", "x")},
        {"line without LF", hello(), idle(0, "RETR 1", "x")},
        {"two lines", hello(), idle(0, "RETR 1\r\nRETR 2\r\n", "x")},
        {"line too long", hello(), idle(0, std::string(300, 'a') + "\n", "x")},
        {"answer too long", hello(),
         idle(0, "RETR 1\r\n", std::string(proxy::kMaxOfferAnswer + 1, 'a'))},
        {"frame too large", "", too_big},
        {"unknown type", hello(),
         [] {
             std::string f = data("x");
             f[9] = 9;
             return f;
         }()},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        login::ReplyAhead a;
        std::string prefix = c.prefix;
        std::string bad = c.bad;
        if (c.name == "idle going back") {
            // Forward 4 bytes, idle at 4, then idle at 2.
            REQUIRE(a.from_session(hello() + idle(0)));
            a.from_client("ab\r\n");
            REQUIRE(a.from_session(idle(4)));
            prefix.clear();
            bad = idle(2);
        }
        REQUIRE(a.from_session(prefix));
        // Whole, or byte by byte: refused either way.
        CHECK_FALSE(a.from_session(bad));
        CHECK(a.failed());
        CHECK_FALSE(a.error().empty());
        CHECK(a.from_client("RETR 1\r\n") == 0);
        CHECK_FALSE(a.from_session(idle(0)));

        login::ReplyAhead b;
        if (c.name == "idle going back") {
            REQUIRE(b.from_session(hello() + idle(0)));
            b.from_client("ab\r\n");
            REQUIRE(b.from_session(idle(4)));
        }
        REQUIRE(b.from_session(prefix));
        bool ok = true;
        for (char ch : bad) ok = ok && b.from_session(std::string_view(&ch, 1));
        CHECK_FALSE(ok);
    }
}

TEST_CASE("reply-ahead: a terminal reply that crosses an answered line", "[pop3][ahead]") {
    // pop3d(8): while an offer is out pop3d writes nothing but a terminal
    // reply. If the login answered the line meanwhile, the client gets the
    // answer, then the terminal reply: what it would get had its RETR
    // arrived just before the autologout.
    twin::TwinStore store(twin::mailbox());
    SessionEngine e(store, SessionLimits{20});
    FramedSession f(e);
    login::ReplyAhead a;
    std::string frames = FramedSession::hello();
    e.start();
    while (e.has_output()) frames += f.take_frame(1 << 16);
    frames += f.idle();
    REQUIRE(a.from_session(frames));
    CHECK(take(a.to_client()) == "+OK Logged in.\r\n");
    REQUIRE(a.from_client("RETR 1\r\n") == 8);
    const std::string line = take(a.to_session());
    REQUIRE(line == "RETR 1\r\n");
    REQUIRE(f.feed(line) == 8);
    frames.clear();
    while (e.has_output()) frames += f.take_frame(1 << 16);
    frames += f.idle();  // offers RETR 2
    REQUIRE(e.offer_out());
    REQUIRE(a.from_session(frames));
    const std::string one = take(a.to_client());
    CHECK(one.starts_with("+OK "));
    // The client's RETR 2 reaches the login: answered there.
    REQUIRE(a.from_client("RETR 2\r\n") == 8);
    const std::string two = take(a.to_client());
    CHECK(two.starts_with("+OK "));
    CHECK(two.ends_with("line 2\r\n.\r\n"));
    CHECK(take(a.to_session()) == "RETR 2\r\n");
    // ... but pop3d times out before it reads it.
    e.timed_out();
    CHECK_FALSE(e.offer_out());
    frames.clear();
    while (e.has_output()) frames += f.take_frame(1 << 16);
    CHECK(e.closed());
    REQUIRE(a.from_session(frames));
    CHECK(take(a.to_client()) == "-ERR Autologout: idle for too long; nothing was deleted.\r\n");
    CHECK(f.idle().empty());  // closed: no more idle frames
    CHECK(a.answered() == 1);
    CHECK(e.answered_ahead() == 0);
}
