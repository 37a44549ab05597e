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

std::string idle(uint64_t c) {
    auto m = ipc::Message::named(proxy::kProtocol, "idle");
    m.set_u64("consumed", c);
    return frame(std::move(m));
}

std::string offer(uint64_t at, std::string_view line, std::string_view answer) {
    auto m = ipc::Message::named(proxy::kProtocol, "offer");
    m.set_u64("at", at);
    m.set_bytes("line", line);
    m.set_bytes("answer", answer);
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

TEST_CASE("reply-ahead: long fetches, chains topped up, taken lines held back", "[pop3][ahead]") {
    // 40 small messages: chains of kMaxOffers, topped up as they are taken,
    // with now and then another command in between.
    std::vector<std::string> texts;
    for (int i = 1; i <= 40; ++i)
        texts.push_back("Subject: " + std::to_string(i) + "\n\n" + std::string(100 + i, 'a') +
                        "\n");
    uint64_t answered = 0, retrs = 0;
    for (uint32_t seed = 1; seed <= 200; ++seed) {
        std::mt19937 rng(seed);
        twin::Pick pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
        std::string script;
        for (size_t i = 1 + pick(3); i <= texts.size(); ++i) {
            if (pick(12) == 0) script += twin::make_script(pick, 1, texts.size());
            script += "RETR " + std::to_string(i) + "\r\n";
            ++retrs;
        }
        if (pick(2) == 0) script += "QUIT\r\n";
        twin::TwinStore plain_store(texts), ahead_store(texts);
        const std::string want = twin::run_plain(plain_store, script, SessionLimits{20});
        const auto got = twin::run_ahead(ahead_store, script, SessionLimits{20}, pick, pick(4000));
        INFO("seed " << seed << " script:\n" << script);
        REQUIRE(got.error.empty());
        REQUIRE(got.client == want);
        REQUIRE(got.answered_by_login == got.skipped_by_pop3d);
        answered += got.answered_by_login;
    }
    // The twin's client pipelines its whole script, in random pieces: even
    // so, part of the RETRs are answered by the login process (one at a
    // time, as bench/pop3_retr.py fetches, nearly all are).
    CHECK(answered > retrs / 8);
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

TEST_CASE("reply-ahead: the engine's chain of offers", "[pop3][ahead]") {
    twin::TwinStore store(twin::mailbox());
    SessionEngine e(store, SessionLimits{20});
    e.start();
    while (e.has_output()) e.take_output(1 << 20);
    CHECK_FALSE(e.offer(16384));  // nothing retrieved yet: nothing to predict
    REQUIRE(e.feed("RETR 1\r\n") == 8);
    while (e.has_output()) e.take_output(1 << 20);
    auto o2 = e.offer(16384);
    REQUIRE(o2);
    CHECK(o2->line == "RETR 2\r\n");
    CHECK(o2->skip == 0);
    const std::string two = "+OK " + std::to_string(store.infos[1].size) + " octets\r\n" +
                            "Subject: two\r\n\r\nbody\r\nline 2\r\n.\r\n";
    CHECK(o2->answer == two);
    auto o3 = e.offer(16384);
    REQUIRE(o3);
    CHECK(o3->line == "RETR 3\r\n");
    CHECK(o3->skip == 8);
    CHECK(e.offers_out() == 2);
    CHECK(e.offered_bytes() == o2->answer.size() + o3->answer.size());

    // A prefix of the first line: nothing consumed; then both lines are
    // taken without output, and the next command goes the normal way.
    CHECK(e.feed("RETR") == 0);
    CHECK(e.feed("RETR 2\r\nRETR") == 8);
    CHECK(e.offers_out() == 1);
    CHECK(e.feed("RETR 3\r\nNOOP\r\n") == 8 + 6);
    std::string after;
    while (e.has_output()) after += e.take_output(1 << 20);
    CHECK(after == "+OK\r\n");
    CHECK(e.answered_ahead() == 2);
    CHECK(e.silent_bytes() == 16);
    CHECK(e.offered_bytes() == 0);

    // The chain goes on after the last one taken; other bytes end it.
    auto o4 = e.offer(16384);
    REQUIRE(o4);
    CHECK(o4->line == "RETR 4\r\n");
    CHECK(e.feed("retr 4\r\n") == 8);
    CHECK_FALSE(e.offer_out());
    std::string four;
    while (e.has_output()) four += e.take_output(1 << 20);
    CHECK(four == "+OK 0 octets\r\n.\r\n");
    CHECK(e.answered_ahead() == 2);

    // Over the size limit (message 5 is 20 KB): not offered, the chain
    // stops there.
    CHECK_FALSE(e.offer(16384));
    auto o5 = e.offer(64 * 1024);
    REQUIRE(o5);
    CHECK(o5->line == "RETR 5\r\n");
    auto o6 = e.offer(64 * 1024);
    REQUIRE(o6);
    CHECK(o6->skip == 8);

    // A deleted message is not offered; a partial line prevents an offer.
    twin::TwinStore s2(twin::mailbox());
    SessionEngine f(s2, SessionLimits{20});
    f.start();
    while (f.has_output()) f.take_output(1 << 20);
    CHECK(f.feed("RETR 1\r\n") == 8);
    while (f.has_output()) f.take_output(1 << 20);
    CHECK(f.feed("DELE 2\r\n") == 8);
    while (f.has_output()) f.take_output(1 << 20);
    CHECK_FALSE(f.offer(16384));
    CHECK(f.feed("RSET\r\n") == 6);
    while (f.has_output()) f.take_output(1 << 20);
    CHECK(f.offer(16384));
    CHECK(f.feed("RET") == 0);  // a prefix of the offered line
    CHECK(f.feed("RETX\r\n") == 6);
    while (f.has_output()) f.take_output(1 << 20);
    CHECK(f.feed("RET") == 3);
    CHECK_FALSE(f.offer(16384));

    // Autologout ends the chain: the terminal reply goes out.
    twin::TwinStore s3(twin::mailbox());
    SessionEngine g(s3, SessionLimits{20});
    g.start();
    while (g.has_output()) g.take_output(1 << 20);
    g.feed("RETR 1\r\n");
    while (g.has_output()) g.take_output(1 << 20);
    REQUIRE(g.offer(16384));
    REQUIRE(g.offer(16384));
    g.timed_out();
    CHECK_FALSE(g.offer_out());
    CHECK(g.offered_bytes() == 0);
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
    // The session read the batch in two pieces and offers RETR 2 at 8 and
    // RETR 3 at 16: the first is decided on the forwarded bytes, answered
    // now, after RETR 1's answer.
    REQUIRE(a.from_session(data("+OK 1\r\nx\r\n.\r\n") + offer(8, "RETR 2\r\n", "A2") +
                           offer(16, "RETR 3\r\n", "A3") + idle(8)));
    CHECK(take(a.to_client()) == "+OK 1\r\nx\r\n.\r\nA2");
    CHECK(a.answered() == 1);
    // The session takes RETR 2 silently: no idle comes, and none is needed.
    // RETR 3 is taken; it is the last offer, so it goes on at once.
    CHECK(a.from_client("RETR 3\r\n") == 8);
    CHECK(take(a.to_client()) == "A3");
    CHECK(take(a.to_session()) == "RETR 3\r\n");
    // The session tops the chain up: RETR 4 to 9 at 24, 32, ...
    std::string more;
    for (int i = 4; i <= 9; ++i)
        more +=
            offer(24 + 8 * (i - 4), "RETR " + std::to_string(i) + "\r\n", "A" + std::to_string(i));
    REQUIRE(a.from_session(more + idle(24)));
    // Taken lines are held back until kRefillAt of them are held ...
    for (int i = 4; i <= 6; ++i) {
        CHECK(a.from_client("RETR " + std::to_string(i) + "\r\n") == 8);
        CHECK(take(a.to_client()) == "A" + std::to_string(i));
        CHECK(a.to_session().empty());
    }
    CHECK(a.taken_held() == 24);
    // ... or until the caller's timer releases them.
    a.release_taken();
    CHECK(take(a.to_session()) == "RETR 4\r\nRETR 5\r\nRETR 6\r\n");
    CHECK(a.taken_held() == 0);
    // A prefix of the next line waits; the rest decides.
    CHECK(a.from_client("RET") == 3);
    CHECK(a.to_client().empty());
    CHECK(a.to_session().empty());
    CHECK(a.from_client("R 7\r\n") == 5);
    CHECK(take(a.to_client()) == "A7");
    CHECK(a.to_session().empty());
    // A line that is not the offered one breaks the chain. The session is
    // at rest past every byte forwarded (idle{24}, then taken lines only):
    // the line goes on at once, with the taken one before it.
    CHECK(a.from_client("NOOP\r\n") == 6);
    CHECK(a.to_client().empty());
    CHECK(take(a.to_session()) == "RETR 7\r\nNOOP\r\n");
    CHECK(a.forwarded() == 62);
    // The broken chain's offers still in flight are ignored, even those
    // that would match; the next data frame ends it.
    REQUIRE(a.from_session(offer(64, "RETR 10\r\n", "A10")));
    CHECK(a.from_client("RETR 8\r\n") == 8);
    CHECK(a.to_client().empty());
    CHECK(a.to_session().empty());  // held: no idle at 62 yet
    REQUIRE(a.from_session(data("+OK\r\n") + idle(62)));
    CHECK(take(a.to_client()) == "+OK\r\n");
    CHECK(take(a.to_session()) == "RETR 8\r\n");
    // A new chain at the session's offset, decided on the forwarded bytes.
    REQUIRE(
        a.from_session(offer(62, "RETR 8\r\n", "A8") + offer(70, "RETR 9\r\n", "A9") + idle(62)));
    CHECK(take(a.to_client()) == "A8");
    // A data frame (autologout, shutdown) ends a chain.
    REQUIRE(a.from_session(data("-ERR bye\r\n")));
    CHECK(a.from_client("RETR 9\r\n") == 8);
    CHECK(take(a.to_client()) == "-ERR bye\r\n");
    // At the client's end what is held goes on, unanswered.
    a.client_eof();
    CHECK(take(a.to_session()) == "RETR 9\r\n");
    CHECK(a.to_client().empty());
    CHECK(a.answered() == 7);
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
    std::string nine;  // one offer more than kMaxOffers
    for (size_t i = 0; i <= proxy::kMaxOffers; ++i)
        nine += offer(8 * i, "RETR " + std::to_string(i + 1) + "\r\n", "x");
    const std::string big_answer(proxy::kMaxOfferAnswer, 'a');
    const std::vector<C> cases = {
        {"garbage", "", "hello, world\r\n"},
        {"no hello", "", data("x")},
        {"another protocol's hello", "", other_hello()},
        {"idle past what was forwarded", hello(), idle(1)},
        {"idle going back", "", ""},  // set up below
        {"empty line", hello(), offer(0, "", "x")},
        {"line without LF", hello(), offer(0, "RETR 1", "x")},
        {"two lines", hello(), offer(0, "RETR 1\r\nRETR 2\r\n", "x")},
        {"line too long", hello(), offer(0, std::string(300, 'a') + "\n", "x")},
        {"answer too long", hello(),
         offer(0, "RETR 1\r\n", std::string(proxy::kMaxOfferAnswer + 1, 'a'))},
        {"a chain's first offer past what was forwarded", hello(), offer(1, "RETR 1\r\n", "x")},
        {"an offer that does not go on from the last one", hello() + offer(0, "RETR 1\r\n", "x"),
         offer(9, "RETR 2\r\n", "x")},
        {"more offers than kMaxOffers", hello(), nine},
        {"more answer bytes than kMaxOfferBytes", hello(),
         offer(0, "RETR 1\r\n", big_answer) + offer(8, "RETR 2\r\n", big_answer) +
             offer(16, "RETR 3\r\n", "x")},
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
    // pop3d(8): while offers are out pop3d writes nothing but a terminal
    // reply. If the login answered a line meanwhile, the client gets the
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
    frames += f.idle();  // offers RETR 2, 3, 4 (5 is too large)
    REQUIRE(e.offers_out() == 3);
    REQUIRE(a.from_session(frames));
    const std::string one = take(a.to_client());
    CHECK(one.starts_with("+OK "));
    // The client's RETR 2 reaches the login: answered there, held back.
    REQUIRE(a.from_client("RETR 2\r\n") == 8);
    const std::string two = take(a.to_client());
    CHECK(two.starts_with("+OK "));
    CHECK(two.ends_with("line 2\r\n.\r\n"));
    CHECK(a.to_session().empty());
    CHECK(a.taken_held() == 8);
    // ... and pop3d times out before it reads it.
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
