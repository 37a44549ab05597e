// The transport: sockets, blocking helpers, Connection and Server over real
// sockets and a libevent loop, and the peer table.
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/peers.hpp"
#include "tests/unit/test_ipc_common.hpp"

using namespace ipctest;
using namespace std::chrono_literals;
using pbx::UniqueFd;

namespace {

std::pair<UniqueFd, UniqueFd> socket_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-ipc-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
        ::chmod(path.c_str(), 0755);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

void wake(evutil_socket_t, short, void*) {}

// Runs the loop until done(), waking at least every 50 ms, with a 20 s safety net.
template <class F>
void run_until(event_base* base, F done) {
    pbx::EventPtr tick(event_new(base, -1, EV_PERSIST, wake, nullptr));
    timeval every{0, 50 * 1000};
    event_add(tick.get(), &every);
    const auto stop = std::chrono::steady_clock::now() + 20s;
    while (!done() && std::chrono::steady_clock::now() < stop) event_base_loop(base, EVLOOP_ONCE);
    REQUIRE(done());
}

// Sends raw bytes with fds attached, as a misbehaving peer might.
void send_raw(int fd, const std::string& bytes, const std::vector<int>& fds) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    union {
        cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 8)];
    } cbuf{};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (!fds.empty()) {
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    REQUIRE(::sendmsg(fd, &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

std::string hello_bytes(const Protocol& p) {
    return encode(make_hello(p))->bytes;
}

Message ping(uint64_t seq) {
    Message m(kTest, 2);
    m.set_u64("seq", seq);
    return m;
}

}  // namespace

TEST_CASE("ipc: listen_unix and connect_unix", "[ipc]") {
    TempDir dir;
    const std::string path = dir.path + "/a.sock";
    auto l = pbx::ipc::listen_unix(path, 0660);
    REQUIRE(l.ok());
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0660);
    CHECK((::fcntl(l->get(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(l->get(), F_GETFL) & O_NONBLOCK) != 0);
    auto c = pbx::ipc::connect_unix(path);
    REQUIRE(c.ok());
    CHECK((::fcntl(c->get(), F_GETFD) & FD_CLOEXEC) != 0);

    SECTION("a live server's socket is not stolen") {
        auto again = pbx::ipc::listen_unix(path, 0660);
        REQUIRE_FALSE(again.ok());
        CHECK(again.error().message.find("listening") != std::string::npos);
    }
    SECTION("a stale socket is replaced") {
        l->reset();
        auto again = pbx::ipc::listen_unix(path, 0600);
        REQUIRE(again.ok());
    }
    SECTION("anything else is left alone") {
        const std::string file = dir.path + "/plain";
        UniqueFd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
        auto r = pbx::ipc::listen_unix(file, 0600);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().message.find("not a socket") != std::string::npos);
    }
    SECTION("paths over 107 bytes fail clearly") {
        const std::string longp = "/tmp/" + std::string(103, 'x');
        REQUIRE(longp.size() == 108);
        auto r = pbx::ipc::listen_unix(longp, 0600);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().message.find("too long (108 bytes, limit 107)") != std::string::npos);
        auto r2 = pbx::ipc::connect_unix(longp);
        REQUIRE_FALSE(r2.ok());
        CHECK(r2.error().message.find("too long") != std::string::npos);
    }
    SECTION("connecting to nothing fails") {
        auto r = pbx::ipc::connect_unix(dir.path + "/none.sock");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().sys_errno == ENOENT);
    }
}

TEST_CASE("ipc: blocking frames carry usable fds over a socketpair", "[ipc]") {
    auto [a, b] = socket_pair();
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd pipe_r(p[0]);
    Message m(kTest, 1);
    m.set_u64("id", 5).set_str("sender", "s").set_str("rcpt", "r").add_fd("file", UniqueFd(p[1]));
    m.add_fd("extra", devnull());
    REQUIRE(send_frame(a.get(), m).ok());
    m = Message(kTest, 3);  // our copies of the fds close; the peer's stay open
    REQUIRE(send_frame(a.get(), ping(8)).ok());

    auto got = recv_frame(b.get(), kTest, 2000ms);
    REQUIRE(got.ok());
    UniqueFd w = got->take_fd("file");
    REQUIRE(w.valid());
    CHECK((::fcntl(w.get(), F_GETFD) & FD_CLOEXEC) != 0);
    REQUIRE(::write(w.get(), "hi", 2) == 2);
    char buf[2];
    REQUIRE(::read(pipe_r.get(), buf, 2) == 2);
    CHECK(std::string(buf, 2) == "hi");
    auto second = recv_frame(b.get(), kTest, 2000ms);
    REQUIRE(second.ok());
    CHECK(second->get_u64("seq") == 8);

    auto timeout = recv_frame(b.get(), kTest, 50ms);
    REQUIRE_FALSE(timeout.ok());
    CHECK(timeout.error().code == IpcErrc::Timeout);
    a.reset();
    auto eof = recv_frame(b.get(), kTest, 2000ms);
    REQUIRE_FALSE(eof.ok());
    CHECK(eof.error().code == IpcErrc::Eof);
}

TEST_CASE("ipc: blocking receive refuses bad frames", "[ipc]") {
    auto [a, b] = socket_pair();
    SECTION("oversize") {
        send_raw(a.get(), be(1u << 30, 4), {});
        auto r = recv_frame(b.get(), kTest, 1000ms);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == IpcErrc::Decode);
        CHECK(r.error().decode == DecodeErrc::FrameTooLarge);
    }
    SECTION("cut by the peer") {
        send_raw(a.get(), hello_bytes(kTest).substr(0, 9), {});
        a.reset();
        auto r = recv_frame(b.get(), kTest, 1000ms);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().decode == DecodeErrc::Truncated);
    }
    SECTION("fds the frame does not declare") {
        UniqueFd extra = devnull();
        send_raw(a.get(), build({2, {field(0, be(1, 8))}}), {extra.get()});
        auto r = recv_frame(b.get(), kTest, 1000ms);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().decode == DecodeErrc::FdMismatch);
    }
}

TEST_CASE("ipc: blocking handshake", "[ipc]") {
    auto [a, b] = socket_pair();
    SECTION("same protocol") {
        pbx::ipc::IpcResult theirs;
        std::thread t([&, fd = b.get()] { theirs = handshake(fd, kTest, 2000ms); });
        auto ours = handshake(a.get(), kTest, 2000ms);
        t.join();
        CHECK(ours.ok());
        CHECK(theirs.ok());
    }
    SECTION("another version") {
        pbx::ipc::IpcResult theirs;
        std::thread t([&, fd = b.get()] { theirs = handshake(fd, kTestV4, 2000ms); });
        auto ours = handshake(a.get(), kTest, 2000ms);
        t.join();
        REQUIRE_FALSE(ours.ok());
        CHECK(ours.error().decode == DecodeErrc::ProtocolMismatch);
        REQUIRE_FALSE(theirs.ok());
        CHECK(theirs.error().decode == DecodeErrc::ProtocolMismatch);
    }
    SECTION("a peer that does not say hello") {
        REQUIRE(send_frame(b.get(), ping(1)).ok());
        auto ours = handshake(a.get(), kTest, 2000ms);
        REQUIRE_FALSE(ours.ok());
        CHECK(ours.error().decode == DecodeErrc::NoHello);
    }
}

TEST_CASE("ipc: Connection exchanges many messages, 1 MiB ones and fds", "[ipc]") {
    pbx::EventBasePtr base(event_base_new());
    auto [fa, fb] = socket_pair();
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd pipe_r(p[0]), pipe_w(p[1]);
    const std::string blob(1u << 20, 'm');
    constexpr uint64_t kCount = 300;

    std::unique_ptr<Connection> a, b;
    std::optional<IpcError> a_closed, b_closed;
    uint64_t next_seq = 0, delivers = 0;
    // b echoes everything back, fds included.
    b = std::make_unique<Connection>(
        base.get(), std::move(fb), kTest, [&](Message&& m) { REQUIRE(b->send(std::move(m)).ok()); },
        [&](const IpcError& e) { b_closed = e; });
    a = std::make_unique<Connection>(
        base.get(), std::move(fa), kTest,
        [&](Message&& m) {
            CHECK(m.get_u64(m.name() == "ping" ? "seq" : "id") == next_seq);
            ++next_seq;
            if (m.name() == "deliver") {
                ++delivers;
                CHECK(m.get_bytes("blob")->size() == blob.size());
                UniqueFd w = m.take_fd("file");
                REQUIRE(w.valid());
                CHECK(::write(w.get(), "x", 1) == 1);
                CHECK(m.take_all_fds("extra").size() == 2);
            }
            if (next_seq == kCount) a->close_when_flushed();
        },
        [&](const IpcError& e) { a_closed = e; });
    for (uint64_t i = 0; i < kCount; ++i) {
        if (i % 50 == 7) {
            Message d(kTest, 1);
            d.set_u64("id", i).set_str("sender", "s").set_str("rcpt", "r").set_bytes("blob", blob);
            d.add_fd("file", UniqueFd(::fcntl(pipe_w.get(), F_DUPFD_CLOEXEC, 0)));
            d.add_fd("extra", devnull()).add_fd("extra", devnull());
            REQUIRE(a->send(std::move(d)).ok());
        } else {
            REQUIRE(a->send(ping(i)).ok());
        }
    }
    run_until(base.get(), [&] { return a_closed && b_closed; });
    CHECK(next_seq == kCount);
    CHECK(delivers == 6);
    CHECK(a_closed->code == IpcErrc::Done);
    CHECK(b_closed->code == IpcErrc::Eof);
    char buf[16];
    CHECK(::read(pipe_r.get(), buf, sizeof buf) == 6);
}

TEST_CASE("ipc: a Connection may be destroyed from its own callbacks", "[ipc]") {
    pbx::EventBasePtr base(event_base_new());
    auto [fa, fb] = socket_pair();
    std::unique_ptr<Connection> b;
    int seen = 0;
    bool a_closed = false;
    SECTION("in on_message, with more frames buffered") {
        b = std::make_unique<Connection>(
            base.get(), std::move(fb), kTest,
            [&](Message&&) {
                if (++seen == 3) b.reset();
            },
            [&](const IpcError&) { FAIL("on_close after destruction"); });
    }
    SECTION("in on_close") {
        b = std::make_unique<Connection>(
            base.get(), std::move(fb), kTest, [&](Message&&) { ++seen; },
            [&](const IpcError&) { b.reset(); });
    }
    Connection a(
        base.get(), std::move(fa), kTest, [](Message&&) {},
        [&](const IpcError&) { a_closed = true; });
    for (int i = 0; i < 10; ++i) REQUIRE(a.send(ping(i)).ok());
    if (seen == 0) a.close_when_flushed();
    run_until(base.get(), [&] { return b == nullptr; });
    CHECK(seen >= 3);
}

TEST_CASE("ipc: a Connection drops a peer that misbehaves", "[ipc]") {
    pbx::EventBasePtr base(event_base_new());
    auto [raw, fb] = socket_pair();
    std::optional<IpcError> closed;
    int messages = 0;
    Connection b(
        base.get(), std::move(fb), kTest, [&](Message&&) { ++messages; },
        [&](const IpcError& e) { closed = e; });
    std::optional<DecodeErrc> want;
    SECTION("garbage instead of a hello") {
        send_raw(raw.get(), "GET / HTTP/1.0\r\n\r\n", {});
        want = DecodeErrc::NoHello;
    }
    SECTION("another protocol version") {
        send_raw(raw.get(), hello_bytes(kTestV4), {});
        want = DecodeErrc::ProtocolMismatch;
    }
    SECTION("a bad frame after the hello") {
        send_raw(raw.get(), hello_bytes(kTest) + build({2, {field(0, be(1, 8))}, 0, -1, 0x1234}),
                 {});
        want = DecodeErrc::BadMagic;
    }
    SECTION("fds nobody declared") {
        UniqueFd extra = devnull();
        send_raw(raw.get(), hello_bytes(kTest), {});
        send_raw(raw.get(), build({2, {field(0, be(1, 8))}}), {extra.get()});
        want = DecodeErrc::FdMismatch;
    }
    SECTION("closing inside a frame") {
        send_raw(raw.get(), hello_bytes(kTest) + build({2, {field(0, be(1, 8))}}).substr(0, 7), {});
        // Read b's hello first: closing with unread input is a reset, not an EOF.
        run_until(base.get(), [&] { return b.queued_bytes() == 0; });
        REQUIRE(recv_frame(raw.get(), kHelloProtocol, 2000ms).ok());
        raw.reset();
        want = DecodeErrc::Truncated;
    }
    if (!want) return;  // Catch's extra pass that enters no section
    run_until(base.get(), [&] { return closed.has_value(); });
    CHECK(closed->code == IpcErrc::Decode);
    CHECK(to_string(closed->decode) == to_string(*want));
    CHECK(messages == 0);
    CHECK_FALSE(b.is_open());
}

TEST_CASE("ipc: a peer that stops reading hits the output limit", "[ipc]") {
    pbx::EventBasePtr base(event_base_new());
    auto [fa, silent] = socket_pair();
    std::optional<IpcError> closed;
    Connection a(
        base.get(), std::move(fa), kTest, [](Message&&) {}, [&](const IpcError& e) { closed = e; },
        Connection::Limits{4096, 256 * 1024});
    const std::string chunk(100 * 1024, 'z');
    int accepted = 0;
    for (int i = 0; i < 10; ++i) {
        Message d(kTest, 1);
        d.set_u64("id", 1).set_str("sender", "s").set_str("rcpt", "r").set_bytes("blob", chunk);
        if (!a.send(std::move(d)).ok()) break;
        ++accepted;
    }
    CHECK(accepted == 2);
    run_until(base.get(), [&] { return closed.has_value(); });
    CHECK(closed->code == IpcErrc::OutputFull);
    CHECK_FALSE(a.send(ping(1)).ok());
}

TEST_CASE("ipc: the peer table", "[ipc]") {
    using pbx::ipc::Access;
    using pbx::ipc::Channel;
    using pbx::ipc::PeerTable;
    using pbx::ipc::Program;
    const PeerTable t({{101, Program::Smtpd},
                       {102, Program::Submitd},
                       {103, Program::QueueManager},
                       {104, Program::RemoteDelivery},
                       {105, Program::Authd},
                       {106, Program::Login}});
    struct Case {
        Channel channel;
        uid_t uid;
        Access want;
    };
    const Case cases[] = {
        {Channel::Control, 0, Access::Full},       {Channel::Control, 1000, Access::ReadOnly},
        {Channel::Control, 101, Access::ReadOnly}, {Channel::Enqueue, 101, Access::Full},
        {Channel::Enqueue, 102, Access::Full},     {Channel::Enqueue, 1000, Access::Full},
        {Channel::Enqueue, 0, Access::Full},       {Channel::Auth, 101, Access::Full},
        {Channel::Auth, 102, Access::Full},        {Channel::Auth, 106, Access::Full},
        {Channel::Auth, 103, Access::Full},        {Channel::Auth, 0, Access::Full},
        {Channel::Auth, 104, Access::Denied},      {Channel::Auth, 1000, Access::Denied},
        {Channel::Local, 103, Access::Full},       {Channel::Local, 101, Access::Denied},
        {Channel::Local, 1000, Access::Denied},    {Channel::Local, 0, Access::Full},
        {Channel::Remote, 103, Access::Full},      {Channel::Remote, 104, Access::Denied},
        {Channel::Remote, 106, Access::Denied},    {Channel::Remote, 1000, Access::Denied},
        {Channel::Session, 106, Access::Full},     {Channel::Session, 0, Access::Full},
        {Channel::Session, 101, Access::Denied},   {Channel::Session, 1000, Access::Denied},
    };
    for (const Case& c : cases) {
        INFO(pbx::ipc::channel_spec(c.channel).name << " uid " << c.uid);
        CHECK(to_string(t.access(c.channel, c.uid)) == to_string(c.want));
    }
    CHECK(t.program_of(0) == Program::Root);
    CHECK(t.program_of(106) == Program::Login);
    CHECK(t.program_of(4242) == Program::AnyUser);

    CHECK(pbx::ipc::socket_path("", Channel::Enqueue) == "queue/enqueue.sock");
    CHECK(pbx::ipc::socket_path("/run/pillarbox/", Channel::Auth) ==
          "/run/pillarbox/auth/auth.sock");
    for (const auto& spec : pbx::ipc::channels()) {
        INFO(spec.name);
        CHECK(spec.socket.substr(0, spec.dir.size() + 1) == std::string(spec.dir) + "/");
        CHECK(&pbx::ipc::channel_spec(spec.id) == &spec);
        CHECK(pbx::ipc::socket_path("/run/pillarbox", spec.id).size() <= kMaxSocketPath);
    }
}

TEST_CASE("ipc: the peer table from the system users", "[ipc]") {
    using pbx::ipc::PeerTable;
    using pbx::ipc::Program;
    using pbx::ipc::SystemUser;
    const SystemUser missing[] = {{Program::Smtpd, "pbx-no-such-user-xyz"}};
    auto m = PeerTable::from_system(missing);
    REQUIRE(m.ok());
    const SystemUser root[] = {{Program::Smtpd, "root"}};
    auto r = PeerTable::from_system(root);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("uid 0") != std::string::npos);
    if (::getpwnam("nobody") == nullptr) return;
    const SystemUser shared[] = {{Program::Smtpd, "nobody"}, {Program::Login, "nobody"}};
    auto s = PeerTable::from_system(shared);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message.find("share uid") != std::string::npos);
    const SystemUser one[] = {{Program::Login, "nobody"}};
    auto o = PeerTable::from_system(one);
    REQUIRE(o.ok());
    CHECK(o->program_of(::getpwnam("nobody")->pw_uid) == Program::Login);
    CHECK(PeerTable::from_system().ok());
}

TEST_CASE("ipc: Server hands allowed peers over and refuses the others", "[ipc]") {
    using pbx::ipc::Channel;
    pbx::EventBasePtr base(event_base_new());
    TempDir dir;
    const std::string path = dir.path + "/s.sock";

    SECTION("allowed") {
        auto l = pbx::ipc::listen_unix(path, 0666);
        REQUIRE(l.ok());
        std::unique_ptr<Connection> server_side;
        pbx::ipc::PeerInfo who;
        pbx::ipc::Server server(base.get(), std::move(*l), Channel::Enqueue,
                                pbx::ipc::PeerTable({}), [&](UniqueFd fd, const auto& peer) {
                                    who = peer;
                                    server_side = std::make_unique<Connection>(
                                        base.get(), std::move(fd), kTest,
                                        [&](Message&& m) {
                                            m.set_u64("seq", *m.get_u64("seq") + 1);
                                            (void)server_side->send(std::move(m));
                                        },
                                        [](const IpcError&) {});
                                });
        auto c = pbx::ipc::connect_unix(path);
        REQUIRE(c.ok());
        std::optional<uint64_t> reply;
        Connection client(
            base.get(), std::move(*c), kTest, [&](Message&& m) { reply = m.get_u64("seq"); },
            [](const IpcError&) {});
        REQUIRE(client.send(ping(41)).ok());
        run_until(base.get(), [&] { return reply.has_value(); });
        CHECK(*reply == 42);
        CHECK(who.uid == ::getuid());
        CHECK(who.pid == ::getpid());
        CHECK(who.access == pbx::ipc::Access::Full);
        CHECK(server.refused() == 0);
    }
    SECTION("refused") {
        auto l = pbx::ipc::listen_unix(path, 0666);
        REQUIRE(l.ok());
        bool accepted = false;
        pbx::ipc::Server server(base.get(), std::move(*l), Channel::Auth, pbx::ipc::PeerTable({}),
                                [&](UniqueFd, const auto&) { accepted = true; });
        // As root, refusal needs another uid: a child connects as nobody.
        pid_t child = -1;
        UniqueFd mine;
        if (::geteuid() == 0) {
            child = ::fork();
            if (child == 0) {
                if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
                auto c = pbx::ipc::connect_unix(path);
                if (!c.ok()) ::_exit(3);
                char buf[64];
                ::_exit(::read(c->get(), buf, sizeof buf) == 0 ? 0 : 4);  // closed unread
            }
        } else {
            auto c = pbx::ipc::connect_unix(path);
            REQUIRE(c.ok());
            mine = std::move(*c);
        }
        run_until(base.get(), [&] { return server.refused() == 1; });
        CHECK_FALSE(accepted);
        if (child > 0) {
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        } else {
            char buf[8];
            CHECK(::read(mine.get(), buf, sizeof buf) == 0);
        }
    }
}
