// The network glue: CIDR matching, connection limits, the TLS context, and
// StreamConnection over real sockets and a libevent loop (plain, implicit
// TLS, STARTTLS with pipelined plaintext, timeouts, write-then-close, flow
// control (on_drained over the STARTTLS filter, input held at max_input),
// deferred destruction) and the Acceptor's per-IP limit.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/event/acceptor.hpp"
#include "common/event/cidr.hpp"
#include "common/event/graceful_stop.hpp"
#include "common/event/stream.hpp"
#include "common/event/tls.hpp"
#include "common/event/write_through.hpp"
#include "tests/unit/test_event_common.hpp"

using namespace std::chrono_literals;
using namespace pbx::event;
using eventtest::run_until;
using eventtest::TempDir;
using eventtest::test_cert;
using eventtest::TestCert;
using pbx::UniqueFd;

namespace {

// ---- helpers ---------------------------------------------------------------

std::pair<UniqueFd, UniqueFd> socket_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

pbx::EventBasePtr new_base() {
    pbx::EventBasePtr b(event_base_new());
    REQUIRE(b);
    return b;
}

// Blocking client I/O for the peer thread.
std::string read_until(int fd, std::string_view end, int timeout_ms = 10000) {
    std::string got;
    while (got.find(end) == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) break;
        char buf[4096];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    return got;
}

std::string read_to_eof(int fd, int timeout_ms = 10000) {
    std::string got;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) break;
        char buf[65536];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    return got;
}

void send_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        s.remove_prefix(static_cast<size_t>(n));
    }
}

// A TLS client on a connected blocking socket, trusting the test cert.
struct TlsClient {
    pbx::SslCtxPtr ctx;
    pbx::SslPtr ssl;
    bool connect(int fd) {
        ctx.reset(SSL_CTX_new(TLS_client_method()));
        SSL_CTX_load_verify_locations(ctx.get(), test_cert().cert.c_str(), nullptr);
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
        ssl.reset(SSL_new(ctx.get()));
        SSL_set_fd(ssl.get(), fd);
        SSL_set1_host(ssl.get(), "localhost");
        return SSL_connect(ssl.get()) == 1;
    }
    void write(std::string_view s) { SSL_write(ssl.get(), s.data(), static_cast<int>(s.size())); }
    std::string read_until(std::string_view end) {
        std::string got;
        while (got.find(end) == std::string::npos) {
            char buf[4096];
            int n = SSL_read(ssl.get(), buf, sizeof buf);
            if (n <= 0) break;
            got.append(buf, static_cast<size_t>(n));
        }
        return got;
    }
    // Reads until close_notify or EOF; `clean` tells which.
    std::string read_to_eof(bool& clean) {
        std::string got;
        for (;;) {
            char buf[65536];
            int n = SSL_read(ssl.get(), buf, sizeof buf);
            if (n <= 0) {
                clean = SSL_get_error(ssl.get(), n) == SSL_ERROR_ZERO_RETURN;
                break;
            }
            got.append(buf, static_cast<size_t>(n));
        }
        return got;
    }
};

// A line-oriented test server: echoes each line as "echo: LINE", answers
// "STARTTLS" with "220 go" and upgrades, "QUIT" with "bye" and
// close_after_flush, "BIG n" with n bytes then close_after_flush.
struct LineServer : StreamHandler {
    std::unique_ptr<StreamConnection> conn;
    const TlsContext* tls = nullptr;
    std::vector<std::string> lines;
    size_t discarded = 0;
    bool tls_ready = false;
    int timeouts = 0;
    bool closed = false;
    CloseInfo close_info;
    bool destroy_in_on_closed = true;
    std::function<void(StreamConnection&)> on_timeout_fn;

    void on_input(StreamConnection& c) noexcept override {
        for (;;) {
            std::string_view in = c.peek(c.input_size());
            size_t nl = in.find('\n');
            if (nl == std::string_view::npos) break;
            std::string line(in.substr(0, nl + 1));
            c.drain(nl + 1);
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
            lines.push_back(line);
            if (line == "STARTTLS") {
                c.write("220 go\r\n");
                auto r = c.start_tls(*tls);
                REQUIRE(r.ok());
                discarded = *r;
                return;
            }
            if (line == "QUIT") {
                c.write("bye\r\n");
                c.close_after_flush();
                return;
            }
            if (line.rfind("BIG ", 0) == 0) {
                c.write(std::string(std::stoul(line.substr(4)), 'x'));
                c.close_after_flush();
                return;
            }
            c.write("echo: " + line + "\r\n");
        }
        if (c.at_eof()) c.close();
    }
    void on_timeout(StreamConnection& c) noexcept override {
        ++timeouts;
        if (on_timeout_fn)
            on_timeout_fn(c);
        else
            c.close();
    }
    void on_tls_ready(StreamConnection&) noexcept override { tls_ready = true; }
    void on_drained(StreamConnection&) noexcept override { ++drained; }
    int drained = 0;
    void on_closed(StreamConnection&, const CloseInfo& info) noexcept override {
        closed = true;
        close_info = info;
        if (destroy_in_on_closed) conn.reset();  // deferred destruction: safe here
    }
};

}  // namespace

// ---- CIDR ------------------------------------------------------------------

TEST_CASE("parse_ip normalises v4-mapped addresses", "[event][cidr]") {
    struct Case {
        const char* in;
        const char* canonical;  // nullptr: invalid
    };
    const Case cases[] = {
        {"192.0.2.1", "192.0.2.1"},
        {"::ffff:192.0.2.1", "192.0.2.1"},
        {"2001:db8::1", "2001:db8::1"},
        {"2001:DB8:0:0::1", "2001:db8::1"},
        {"::1", "::1"},
        {"", nullptr},
        {"192.0.2", nullptr},
        {"192.0.2.256", nullptr},
        {"1.2.3.4 ", nullptr},
        {"[::1]", nullptr},
        {"fe80::1%eth0", nullptr},
        {"2001:db8:::1", nullptr},
        {"0123456789012345678901234567890123456789012345678901234567890", nullptr},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        auto ip = parse_ip(c.in);
        if (c.canonical) {
            REQUIRE(ip.ok());
            CHECK(ip->str() == c.canonical);
        } else {
            CHECK_FALSE(ip.ok());
        }
    }
}

TEST_CASE("parse_cidr valid and invalid", "[event][cidr]") {
    struct Case {
        const char* in;
        const char* canonical;  // nullptr: invalid
    };
    const Case cases[] = {
        {"192.0.2.0/24", "192.0.2.0/24"},
        {"10.0.0.0/8", "10.0.0.0/8"},
        {"0.0.0.0/0", "0.0.0.0/0"},
        {"192.0.2.7", "192.0.2.7/32"},
        {"2001:db8::/32", "2001:db8::/32"},
        {"[2001:db8::]/32", "2001:db8::/32"},
        {"::1", "::1/128"},
        {"::/0", "::/0"},
        {"::ffff:10.0.0.0/104", "10.0.0.0/8"},
        {"192.0.2.1/24", nullptr},  // host bits
        {"192.0.2.0/33", nullptr},
        {"192.0.2.0/", nullptr},
        {"192.0.2.0/-1", nullptr},
        {"192.0.2.0/2x", nullptr},
        {"2001:db8::1/32", nullptr},
        {"2001:db8::/129", nullptr},
        {"::ffff:10.0.0.0/8", nullptr},
        {"example.org", nullptr},
        {"/24", nullptr},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        auto cidr = parse_cidr(c.in);
        if (c.canonical) {
            REQUIRE(cidr.ok());
            CHECK(cidr->str() == c.canonical);
        } else {
            CHECK_FALSE(cidr.ok());
            if (!cidr.ok()) CHECK_FALSE(cidr.error().empty());
        }
    }
}

TEST_CASE("CidrList matching", "[event][cidr]") {
    auto list = CidrList::parse({"127.0.0.0/8", "192.0.2.128/25", "2001:db8::/32", "::1"});
    REQUIRE(list.ok());
    struct Case {
        const char* ip;
        bool in;
    };
    const Case cases[] = {
        {"127.0.0.1", true},
        {"127.255.255.255", true},
        {"128.0.0.1", false},
        {"192.0.2.128", true},
        {"192.0.2.255", true},
        {"192.0.2.127", false},
        {"::ffff:127.0.0.1", true},
        {"2001:db8:ffff::1", true},
        {"2001:db9::1", false},
        {"::1", true},
        {"::2", false},
        {"garbage", false},
        {"", false},
    };
    for (const auto& c : cases) {
        INFO(c.ip);
        CHECK(list->contains(std::string_view(c.ip)) == c.in);
    }
    auto bad = CidrList::parse({"10.0.0.0/8", "10.1.2.3/8"});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().find("10.1.2.3/8") != std::string::npos);
    CHECK(CidrList::parse({})->empty());
}

TEST_CASE("every prefix length of a v4 and a v6 network", "[event][cidr]") {
    auto v4 = parse_ip("255.255.255.255");
    auto v6 = parse_ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    REQUIRE((v4.ok() && v6.ok()));
    for (unsigned p = 0; p <= 32; ++p) {
        Cidr c{*parse_ip("0.0.0.0"), p};
        CHECK(c.contains(*parse_ip("0.0.0.0")));
        CHECK(c.contains(*v4) == (p == 0));
    }
    for (unsigned p = 0; p <= 128; ++p) {
        Cidr c{*parse_ip("::"), p};
        CHECK(c.contains(*v6) == (p == 0));
        CHECK_FALSE(c.contains(*v4));
    }
}

// ---- limiter ---------------------------------------------------------------

TEST_CASE("ConnectionLimiter counts total and per address", "[event][limits]") {
    auto lim = ConnectionLimiter::make({3, 2});
    auto [a1, h1] = lim->try_acquire("192.0.2.1");
    auto [a2, h2] = lim->try_acquire("192.0.2.1");
    auto [a3, h3] = lim->try_acquire("192.0.2.1");
    CHECK(h1 == LimitHit::None);
    CHECK(h2 == LimitHit::None);
    CHECK(h3 == LimitHit::PerIp);
    CHECK_FALSE(a3.held());
    CHECK(lim->from("192.0.2.1") == 2);
    auto [b1, hb1] = lim->try_acquire("192.0.2.2");
    CHECK(hb1 == LimitHit::None);
    auto [c1, hc1] = lim->try_acquire("192.0.2.3");
    CHECK(hc1 == LimitHit::Total);
    CHECK(lim->total() == 3);
    a1.reset();
    CHECK(lim->total() == 2);
    CHECK(lim->from("192.0.2.1") == 1);
    {
        ConnectionSlot moved = std::move(a2);
        CHECK_FALSE(a2.held());
        CHECK(moved.held());
    }
    CHECK(lim->from("192.0.2.1") == 0);
    auto [d1, hd1] = lim->try_acquire("192.0.2.3");
    CHECK(hd1 == LimitHit::None);

    auto unlimited = ConnectionLimiter::make({0, 0});
    std::vector<ConnectionSlot> many;
    for (int i = 0; i < 100; ++i) many.push_back(unlimited->try_acquire("x").first);
    CHECK(unlimited->total() == 100);
    many.clear();
    CHECK(unlimited->total() == 0);
}

// ---- TLS context -----------------------------------------------------------

TEST_CASE("TlsContext loads a key pair and names the bad file", "[event][tls]") {
    const auto& tc = test_cert();
    auto ok = TlsContext::load_server(tc.cert, tc.key);
    REQUIRE(ok.ok());
    CHECK(SSL_CTX_get_min_proto_version(ok->get()) == TLS1_2_VERSION);

    auto missing = TlsContext::load_server(tc.dir.path + "/nope.pem", tc.key);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().sys_errno == ENOENT);
    CHECK(missing.error().message.find("nope.pem") != std::string::npos);

    auto missing_key = TlsContext::load_server(tc.cert, tc.dir.path + "/nokey.pem");
    REQUIRE_FALSE(missing_key.ok());
    CHECK(missing_key.error().sys_errno == ENOENT);

    // A key that is not a key, and a key of another certificate.
    TempDir d;
    std::string junk = d.path + "/junk.pem";
    FILE* f = std::fopen(junk.c_str(), "w");
    std::fputs("not a pem file\n", f);
    std::fclose(f);
    auto bad = TlsContext::load_server(tc.cert, junk);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().sys_errno != ENOENT);
    CHECK(bad.error().message.find("junk.pem") != std::string::npos);
    auto bad_cert = TlsContext::load_server(junk, tc.key);
    REQUIRE_FALSE(bad_cert.ok());
    CHECK(bad_cert.error().message.find("junk.pem") != std::string::npos);

    TestCert other;
    auto mismatch = TlsContext::load_server(tc.cert, other.key);
    REQUIRE_FALSE(mismatch.ok());
    CHECK(mismatch.error().message.find("does not match") != std::string::npos);

    auto dir = TlsContext::load_server(tc.dir.path, tc.key);
    REQUIRE_FALSE(dir.ok());
}

// ---- StreamConnection ------------------------------------------------------

TEST_CASE("plain connection: lines in, replies out, write-then-close", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    auto c = StreamConnection::create(base.get(), std::move(server_fd), srv);
    REQUIRE(c.ok());
    srv.conn = std::move(c).value();
    // Both ways of writing: through the bufferevent, and direct (one send()
    // per round of callbacks, the rest through the bufferevent).
    const bool direct = GENERATE(false, true);
    srv.conn->set_direct_writes(direct);
    srv.conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    CHECK_FALSE(srv.conn->tls_active());

    std::string got;
    std::thread peer([&, fd = client_fd.get()] {
        send_all(fd, "hello\r\nwor");
        std::this_thread::sleep_for(20ms);
        send_all(fd, "ld\r\nQUIT\r\nignored after quit\r\n");
        got = read_to_eof(fd);
    });
    run_until(base.get(), [&] { return srv.closed; });
    peer.join();
    CHECK(got == "echo: hello\r\necho: world\r\nbye\r\n");
    CHECK(srv.lines == std::vector<std::string>{"hello", "world", "QUIT"});
    CHECK(srv.drained >= 1);  // after "echo: hello", sent before the rest arrived
    CHECK(srv.close_info.reason == CloseReason::Closed);
    CHECK(srv.conn == nullptr);  // destroyed inside on_closed
}

TEST_CASE("whole reads: what the socket holds comes in one on_input", "[event][stream]") {
    // libevent reads at most 4 KiB per callback; with whole reads one
    // readiness takes everything (up to kWholeReadMax), in one call.
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    struct Sizes : StreamHandler {
        std::vector<size_t> seen;
        bool eof = false, closed = false;
        void on_input(StreamConnection& c) noexcept override {
            if (c.input_size() > 0) seen.push_back(c.input_size());
            c.drain(c.input_size());
            if (c.at_eof()) {
                eof = true;
                c.close();
            }
        }
        void on_timeout(StreamConnection&) noexcept override {}
        void on_tls_ready(StreamConnection&) noexcept override {}
        void on_closed(StreamConnection&, const CloseInfo&) noexcept override { closed = true; }
    } h;
    auto conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), h)).value();
    conn->set_whole_reads(true);
    REQUIRE(conn->start().ok());
    send_all(client_fd.get(), std::string(10000, 'a'));  // before the loop runs
    run_until(base.get(), [&] { return !h.seen.empty(); });
    CHECK(h.seen == std::vector<size_t>{10000});
    // More than one read's worth: kWholeReadMax, then the rest.
    const int big = 1 << 20;
    REQUIRE(::setsockopt(client_fd.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big) == 0);
    send_all(client_fd.get(), std::string(StreamConnection::kWholeReadMax + 100, 'b'));
    client_fd.reset();
    run_until(base.get(), [&] { return h.closed; });
    CHECK(h.eof);
    CHECK(h.seen == std::vector<size_t>{10000, StreamConnection::kWholeReadMax, 100});
}

TEST_CASE("close_after_flush delivers a large last reply", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    srv.conn->set_direct_writes(
        GENERATE(false, true));  // direct: most goes through the bufferevent
    REQUIRE(srv.conn->start().ok());
    std::string got;
    std::thread peer([&, fd = client_fd.get()] {
        send_all(fd, "BIG 3000000\r\n");
        got = read_to_eof(fd);
    });
    run_until(base.get(), [&] { return srv.closed; });
    peer.join();
    CHECK(got.size() == 3000000);
    CHECK(srv.close_info.reason == CloseReason::Closed);
}

TEST_CASE("write_through(a, b): one call when the socket has room, in order when not",
          "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start().ok());
    write_through(*srv.conn, "abc", "def");
    CHECK(srv.conn->output_size() == 0);  // both parts went to the socket at once
    write_through(*srv.conn, "", "gh");
    write_through(*srv.conn, "ij", "");
    // More than the socket takes: the rest of `a`, then `b`, are queued.
    const std::string a(1 << 20, 'a'), b = std::string(1 << 20, 'b') + "end";
    write_through(*srv.conn, a, b);
    CHECK(srv.conn->output_size() > 0);
    srv.conn->close_after_flush();
    std::string got;
    std::thread peer([&, fd = client_fd.get()] { got = read_to_eof(fd); });
    run_until(base.get(), [&] { return srv.closed; });
    peer.join();
    CHECK(got == "abcdefghij" + a + b);
    CHECK(srv.close_info.reason == CloseReason::Closed);
}

TEST_CASE("on_closed is never called from inside close()", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start().ok());
    srv.conn->close();
    CHECK_FALSE(srv.closed);
    srv.conn->write("ignored");  // harmless after close
    CHECK(srv.conn->closing());
    run_until(base.get(), [&] { return srv.closed; });
    CHECK(read_to_eof(client_fd.get(), 1000).empty());
}

TEST_CASE("the idle timeout fires, and activity re-arms it", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    srv.conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    srv.conn->set_idle_timeout(300ms);
    srv.on_timeout_fn = [](StreamConnection& c) {
        c.write("421 timeout\r\n");
        c.close_after_flush();
    };
    const auto t0 = std::chrono::steady_clock::now();
    std::string got;
    std::thread peer([&, fd = client_fd.get()] {
        // Activity every 150 ms keeps the connection alive past 300 ms.
        for (int i = 0; i < 4; ++i) {
            send_all(fd, "ping\r\n");
            std::this_thread::sleep_for(150ms);
        }
        got = read_to_eof(fd);
    });
    run_until(base.get(), [&] { return srv.closed; });
    peer.join();
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    CHECK(srv.timeouts == 1);
    CHECK(elapsed >= 700ms);  // four pings 150 ms apart, then 300 ms of silence
    CHECK(got.find("421 timeout\r\n") != std::string::npos);
    CHECK(srv.lines.size() == 4);
}

TEST_CASE("switching the timeout off and on", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start().ok());
    srv.conn->set_idle_timeout(100ms);
    srv.conn->set_idle_timeout(0ms);
    bool waited = false;
    pbx::EventPtr t(evtimer_new(
        base.get(), [](evutil_socket_t, short, void* p) { *static_cast<bool*>(p) = true; },
        &waited));
    timeval tv{0, 400 * 1000};
    event_add(t.get(), &tv);
    run_until(base.get(), [&] { return waited; });
    CHECK(srv.timeouts == 0);
    srv.conn->set_idle_timeout(50ms);
    run_until(base.get(), [&] { return srv.closed; });
    CHECK(srv.timeouts == 1);
}

TEST_CASE("the peer closing is reported with the input still readable", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    srv.conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    send_all(client_fd.get(), "last line\r\n");
    ::shutdown(client_fd.get(), SHUT_WR);
    run_until(base.get(), [&] { return srv.closed; });
    CHECK(srv.lines == std::vector<std::string>{"last line"});
}

TEST_CASE("pause_reading holds input back; resume delivers it", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    srv.conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    srv.conn->pause_reading();
    send_all(client_fd.get(), "one\r\n");
    bool waited = false;
    pbx::EventPtr t(evtimer_new(
        base.get(), [](evutil_socket_t, short, void* p) { *static_cast<bool*>(p) = true; },
        &waited));
    timeval tv{0, 200 * 1000};
    event_add(t.get(), &tv);
    run_until(base.get(), [&] { return waited; });
    CHECK(srv.lines.empty());
    CHECK(srv.conn->input_pending_now());
    srv.conn->resume_reading();
    run_until(base.get(), [&] { return srv.lines.size() == 1; });
    srv.conn->close();
    run_until(base.get(), [&] { return srv.closed; });
}

TEST_CASE("input held at max_input is reported once and not in a loop", "[event][stream]") {
    // libevent 2.1.11+ calls the read callback again on every round of the
    // loop while the input sits at the read high-water mark with reading
    // enabled (libevent issue #891): a handler that cannot take input yet (a
    // proxy whose other side is full) must not make the process spin.
    // Reading resumes when it drains.
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    struct Holder : StreamHandler {
        event_base* base = nullptr;
        size_t max_input = 0;
        bool hold = true;
        int full_calls = 0;
        size_t taken = 0;
        bool closed = false;
        void on_input(StreamConnection& c) noexcept override {
            if (c.input_size() >= max_input && ++full_calls > 1000)
                event_base_loopbreak(base);  // the spin: stop it, the check fails
            if (hold) return;
            taken += c.input_size();
            c.drain(c.input_size());
        }
        void on_timeout(StreamConnection&) noexcept override {}
        void on_tls_ready(StreamConnection&) noexcept override {}
        void on_closed(StreamConnection&, const CloseInfo&) noexcept override { closed = true; }
    } h;
    StreamConnection::Limits lim;
    lim.max_input = 64 * 1024;
    h.base = base.get();
    h.max_input = lim.max_input;
    auto conn =
        std::move(StreamConnection::create(base.get(), std::move(server_fd), h, lim)).value();
    conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(conn->start().ok());
    const size_t total = 1024 * 1024;
    std::atomic<size_t> written{0};
    std::thread peer([&, fd = client_fd.get()] {
        send_all(fd, std::string(total, 'z'));
        written = total;
    });
    // Half a second of the loop while the peer fills our input.
    pbx::EventPtr brk(evtimer_new(
        base.get(),
        [](evutil_socket_t, short, void* b) { event_base_loopbreak(static_cast<event_base*>(b)); },
        base.get()));
    timeval tv{0, 500 * 1000};
    event_add(brk.get(), &tv);
    event_base_loop(base.get(), 0);
    event_del(brk.get());
    CHECK(conn->input_size() == lim.max_input);
    CHECK(h.full_calls == 1);
    // Draining below the mark (here from outside a callback) reads again.
    h.taken = conn->input_size();
    conn->drain(conn->input_size());
    h.hold = false;
    run_until(base.get(), [&] { return h.taken == total; });
    peer.join();
    CHECK(written == total);
    conn->close();
    run_until(base.get(), [&] { return h.closed; });
}

TEST_CASE("input_pending_now sees bytes the loop has not read yet", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    srv.conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    CHECK_FALSE(srv.conn->input_pending_now());
    send_all(client_fd.get(), "x");
    CHECK(srv.conn->input_pending_now());  // not yet read by libevent: MSG_PEEK sees it
    srv.conn->close();
    run_until(base.get(), [&] { return srv.closed; });
}

TEST_CASE("a peer that does not read is cut off at max_output", "[event][stream]") {
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    StreamConnection::Limits lim;
    lim.max_output = 64 * 1024;
    srv.conn =
        std::move(StreamConnection::create(base.get(), std::move(server_fd), srv, lim)).value();
    srv.conn->set_direct_writes(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    for (int i = 0; i < 100 && !srv.conn->closing(); ++i) srv.conn->write(std::string(4096, 'y'));
    run_until(base.get(), [&] { return srv.closed; });
    CHECK(srv.close_info.reason == CloseReason::OutputFull);
}

TEST_CASE("implicit TLS: handshake, session facts, close_notify", "[event][tls]") {
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.tls = &*ctx;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start_implicit_tls(*ctx).ok());
    CHECK_FALSE(srv.conn->tls_active());  // not before the handshake

    std::string got;
    bool handshake = false, clean = false;
    std::string client_version;
    std::thread peer([&, fd = client_fd.get()] {
        TlsClient tc;
        handshake = tc.connect(fd);
        if (!handshake) return;
        client_version = SSL_get_version(tc.ssl.get());
        tc.write("hello tls\r\nQUIT\r\n");
        got = tc.read_to_eof(clean);
    });
    TlsSessionInfo info;
    run_until(base.get(), [&] {
        if (srv.tls_ready && info.version.empty()) info = srv.conn->tls_info();
        return srv.closed;
    });
    peer.join();
    REQUIRE(handshake);
    CHECK(got == "echo: hello tls\r\nbye\r\n");
    CHECK(clean);  // we sent close_notify
    CHECK(info.version == client_version);
    CHECK(info.version == "TLSv1.3");
    CHECK_FALSE(info.cipher.empty());
    CHECK(info.bits >= 128);
}

TEST_CASE("implicit TLS: garbage instead of a ClientHello fails cleanly", "[event][tls]") {
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start_implicit_tls(*ctx).ok());
    send_all(client_fd.get(), "EHLO plaintext.example\r\n");
    run_until(base.get(), [&] { return srv.closed; });
    CHECK(srv.close_info.reason == CloseReason::TlsFailed);
    CHECK_FALSE(srv.close_info.detail.empty());
    CHECK_FALSE(srv.tls_ready);
}

TEST_CASE("a TLS 1.1 client is refused", "[event][tls]") {
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start_implicit_tls(*ctx).ok());
    bool handshake = true;
    std::thread peer([&, fd = client_fd.get()] {
        pbx::SslCtxPtr cctx(SSL_CTX_new(TLS_client_method()));
        SSL_CTX_set_security_level(cctx.get(), 0);
        SSL_CTX_set_min_proto_version(cctx.get(), TLS1_VERSION);
        SSL_CTX_set_max_proto_version(cctx.get(), TLS1_1_VERSION);
        pbx::SslPtr ssl(SSL_new(cctx.get()));
        SSL_set_fd(ssl.get(), fd);
        handshake = SSL_connect(ssl.get()) == 1;
    });
    run_until(base.get(), [&] { return srv.closed; });
    client_fd.reset();
    peer.join();
    CHECK_FALSE(handshake);
    CHECK(srv.close_info.reason == CloseReason::TlsFailed);
}

TEST_CASE("STARTTLS upgrades in place and discards pipelined plaintext", "[event][tls]") {
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.tls = &*ctx;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    // Direct: "220 go" is still waiting for its send() when the upgrade starts.
    srv.conn->set_direct_writes(GENERATE(false, true));
    srv.conn->set_whole_reads(GENERATE(false, true));  // plaintext reads until STARTTLS
    REQUIRE(srv.conn->start().ok());

    std::string before, after;
    bool handshake = false, clean = false;
    std::thread peer([&, fd = client_fd.get()] {
        send_all(fd, "plain\r\n");
        before = read_until(fd, "echo: plain\r\n");
        // The injection: commands pipelined after STARTTLS in the same packet.
        send_all(fd, "STARTTLS\r\nINJECTED\r\nQUIT\r\n");
        before += read_until(fd, "220 go\r\n");
        TlsClient tc;
        handshake = tc.connect(fd);
        if (!handshake) return;
        tc.write("secret\r\nQUIT\r\n");
        after = tc.read_to_eof(clean);
    });
    run_until(base.get(), [&] { return srv.closed; });
    peer.join();
    REQUIRE(handshake);
    CHECK(before == "echo: plain\r\n220 go\r\n");
    CHECK(after == "echo: secret\r\nbye\r\n");
    CHECK(srv.discarded == std::string("INJECTED\r\nQUIT\r\n").size());
    CHECK(srv.lines == std::vector<std::string>{"plain", "STARTTLS", "secret", "QUIT"});
    CHECK(srv.tls_ready);
    CHECK(srv.close_info.reason == CloseReason::Closed);
}

TEST_CASE("STARTTLS: a large last reply over the filter arrives whole", "[event][tls]") {
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.tls = &*ctx;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    srv.conn->set_whole_reads(GENERATE(false, true));
    REQUIRE(srv.conn->start().ok());
    std::string after;
    bool handshake = false, clean = false;
    std::thread peer([&, fd = client_fd.get()] {
        send_all(fd, "STARTTLS\r\n");
        read_until(fd, "220 go\r\n");
        TlsClient tc;
        handshake = tc.connect(fd);
        if (!handshake) return;
        tc.write("BIG 2000000\r\n");
        after = tc.read_to_eof(clean);
    });
    run_until(base.get(), [&] { return srv.closed; });
    peer.join();
    REQUIRE(handshake);
    CHECK(after.size() == 2000000);
    CHECK(clean);
}

// A producer that writes only when told the output drained, and only while
// output_size() is under a high-water mark: the login proxy's flow control.
struct Producer : StreamHandler {
    std::unique_ptr<StreamConnection> conn;
    const TlsContext* tls = nullptr;
    size_t total = 0, sent = 0, high_water = 0;
    size_t max_output_at_drained = 0;
    bool tls_ready = false;
    std::atomic<bool> drained_once{false};
    bool closed = false;

    void fill(StreamConnection& c) {
        while (sent < total && c.output_size() < high_water) {
            const size_t n = std::min<size_t>(16 * 1024, total - sent);
            c.write(std::string(n, static_cast<char>('a' + (sent / 16384) % 26)));
            sent += n;
        }
    }
    void on_input(StreamConnection& c) noexcept override {
        std::string_view in = c.peek(c.input_size());
        if (in.find("STARTTLS\r\n") != std::string_view::npos) {
            c.drain(in.size());
            c.write("220 go\r\n");
            REQUIRE(c.start_tls(*tls).ok());
        }
    }
    void on_timeout(StreamConnection&) noexcept override {}
    void on_tls_ready(StreamConnection& c) noexcept override {
        tls_ready = true;
        fill(c);
    }
    void on_drained(StreamConnection& c) noexcept override {
        if (!tls_ready) return;  // the 220 before the handshake
        max_output_at_drained = std::max(max_output_at_drained, c.output_size());
        drained_once = true;
        fill(c);
    }
    void on_closed(StreamConnection&, const CloseInfo&) noexcept override { closed = true; }
};

TEST_CASE("STARTTLS: on_drained comes only when the TLS records left too", "[event][tls]") {
    // Over the filter, the TLS records wait in the socket bufferevent below
    // it after the filter's own output has emptied. A handler that writes
    // only while output_size() is under a mark must hear of the drain once
    // they are sent; otherwise it is never woken again (the stalled RETR
    // over STLS in the login proxy).
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    // Small socket buffers: the records cannot all leave before the peer
    // reads, and the peer reads only after the first on_drained.
    const int small = 4096;
    REQUIRE(::setsockopt(server_fd.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    REQUIRE(::setsockopt(client_fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    Producer srv;
    srv.tls = &*ctx;
    srv.total = 1024 * 1024;
    srv.high_water = 64 * 1024;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start().ok());
    std::string got;
    bool handshake = false;
    std::atomic<bool> done{false};
    std::thread peer([&, fd = client_fd.get()] {
        send_all(fd, "STARTTLS\r\n");
        read_until(fd, "220 go\r\n");
        TlsClient tc;
        handshake = tc.connect(fd);
        if (handshake) {
            for (int i = 0; i < 1000 && !srv.drained_once; ++i) std::this_thread::sleep_for(5ms);
            pollfd p{fd, POLLIN, 0};
            // Records OpenSSL has already read are not in the socket.
            while (got.size() < srv.total &&
                   (SSL_pending(tc.ssl.get()) > 0 || ::poll(&p, 1, 5000) > 0)) {
                char buf[65536];
                int n = SSL_read(tc.ssl.get(), buf, sizeof buf);
                if (n <= 0) break;
                got.append(buf, static_cast<size_t>(n));
            }
        }
        done = true;
    });
    run_until(base.get(), [&] { return done.load(); });
    peer.join();
    REQUIRE(handshake);
    CHECK(got.size() == srv.total);
    CHECK(srv.max_output_at_drained == 0);
    srv.conn->close();
    run_until(base.get(), [&] { return srv.closed; });
}

TEST_CASE("STARTTLS: a peer that never starts the handshake times out", "[event][tls]") {
    auto ctx = TlsContext::load_server(test_cert().cert, test_cert().key);
    REQUIRE(ctx.ok());
    auto base = new_base();
    auto [server_fd, client_fd] = socket_pair();
    LineServer srv;
    srv.tls = &*ctx;
    srv.conn = std::move(StreamConnection::create(base.get(), std::move(server_fd), srv)).value();
    REQUIRE(srv.conn->start().ok());
    srv.conn->set_idle_timeout(200ms);
    send_all(client_fd.get(), "STARTTLS\r\n");
    run_until(base.get(), [&] { return srv.closed; });
    CHECK(srv.close_info.reason == CloseReason::Timeout);
    CHECK(srv.timeouts == 0);
}

// ---- Acceptor --------------------------------------------------------------

namespace {

UniqueFd loopback_listener(uint16_t& port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd.get(), 16) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    port = ntohs(sa.sin_port);
    return fd;
}

UniqueFd connect_loopback(uint16_t port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    return fd;
}

}  // namespace

TEST_CASE("Acceptor enforces the per-IP limit and frees places", "[event][acceptor]") {
    auto base = new_base();
    uint16_t port = 0;
    UniqueFd lfd = loopback_listener(port);
    auto limiter = ConnectionLimiter::make({10, 2});
    std::vector<std::pair<UniqueFd, ConnectionSlot>> accepted;
    std::vector<LimitHit> refused;
    std::vector<PeerAddress> peers;
    Acceptor::Options opt;
    opt.refusal = "421 4.7.0 Too many connections\r\n";
    auto acc = Acceptor::create(
        base.get(), lfd.get(), limiter, opt,
        [&](UniqueFd fd, const PeerAddress& peer, ConnectionSlot slot) {
            peers.push_back(peer);
            accepted.emplace_back(std::move(fd), std::move(slot));
        },
        [&](const PeerAddress&, LimitHit why) { refused.push_back(why); });
    REQUIRE(acc.ok());

    UniqueFd c1 = connect_loopback(port);
    UniqueFd c2 = connect_loopback(port);
    UniqueFd c3 = connect_loopback(port);
    run_until(base.get(), [&] { return accepted.size() + refused.size() == 3; });
    CHECK(accepted.size() == 2);
    REQUIRE(refused.size() == 1);
    CHECK(refused[0] == LimitHit::PerIp);
    CHECK(peers[0].ip == "127.0.0.1");
    CHECK(peers[0].port != 0);
    CHECK(read_to_eof(c3.get(), 2000) == "421 4.7.0 Too many connections\r\n");
    CHECK(limiter->from("127.0.0.1") == 2);

    // A finished session gives its place back.
    accepted.erase(accepted.begin());
    CHECK(limiter->from("127.0.0.1") == 1);
    UniqueFd c4 = connect_loopback(port);
    run_until(base.get(), [&] { return accepted.size() == 2; });
    CHECK((*acc)->accepted() == 3);
    CHECK((*acc)->refused() == 1);

    // Destroying the acceptor leaves the inherited fd open.
    acc->reset();
    CHECK(::fcntl(lfd.get(), F_GETFD) >= 0);
}

TEST_CASE("peer_address renders v4, v6 and v4-mapped", "[event][acceptor]") {
    sockaddr_in6 s6{};
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(2525);
    REQUIRE(inet_pton(AF_INET6, "::ffff:192.0.2.9", &s6.sin6_addr) == 1);
    auto p = peer_address(reinterpret_cast<sockaddr*>(&s6), sizeof s6);
    CHECK(p.ip == "192.0.2.9");
    CHECK(p.port == 2525);
    REQUIRE(inet_pton(AF_INET6, "2001:db8::5", &s6.sin6_addr) == 1);
    CHECK(peer_address(reinterpret_cast<sockaddr*>(&s6), sizeof s6).ip == "2001:db8::5");
    CHECK(peer_address(nullptr, 0).ip.empty());
    sockaddr_in s4{};
    s4.sin_family = AF_INET;
    CHECK(peer_address(reinterpret_cast<sockaddr*>(&s4), 4).ip.empty());  // truncated
}

TEST_CASE("GracefulStop: the loop ends with the last connection", "[event][stop]") {
    pbx::EventBasePtr base(event_base_new());
    REQUIRE(base);
    size_t open = 0;
    int asked = 0;
    pbx::event::GracefulStop stop("connection(s)", [&] { return open; });
    CHECK_FALSE(stop.stopping());

    SECTION("nothing open: the loop ends at once") {
        stop.begin(base.get(), [&] { ++asked; });
        CHECK(stop.stopping());
        CHECK(asked == 0);
        event_base_dispatch(base.get());
        CHECK(event_base_got_exit(base.get()));
    }
    SECTION("two open: asked to finish, the loop ends when both are removed") {
        open = 2;
        stop.begin(base.get(), [&] { ++asked; });
        stop.begin(base.get(), [&] { ++asked; });  // once only
        CHECK(asked == 1);
        // The connections go away from the loop, as on_closed does.
        std::function<void()> remove_one = [&] {
            --open;
            stop.removed();
        };
        timeval t1{0, 10 * 1000}, t2{0, 20 * 1000};
        auto cb = [](evutil_socket_t, short, void* arg) {
            (*static_cast<std::function<void()>*>(arg))();
        };
        event_base_once(base.get(), -1, EV_TIMEOUT, cb, &remove_one, &t1);
        event_base_once(base.get(), -1, EV_TIMEOUT, cb, &remove_one, &t2);
        const auto t0 = std::chrono::steady_clock::now();
        event_base_dispatch(base.get());
        CHECK(open == 0);
        CHECK(event_base_got_exit(base.get()));
        // Well before the grace period (3 s).
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2500));
    }
    SECTION("one never finishes: the grace period ends the loop") {
        open = 1;
        stop.begin(base.get(), [&] { ++asked; });
        const auto t0 = std::chrono::steady_clock::now();
        event_base_dispatch(base.get());
        CHECK(asked == 1);
        CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(2500));
    }
}
