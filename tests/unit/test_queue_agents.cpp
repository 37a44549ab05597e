// SocketAgents (queue-manager/delivery.hpp) against a fake delivery agent
// speaking common/ipc/delivery_msgs.hpp on a socket in a temporary runtime
// directory: results mapped back to envelope recipients, unanswered ones
// deferred when the connection drops, an absent agent reported unavailable,
// and the in-flight cap.
#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <functional>
#include <memory>

#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/delivery_msgs.hpp"
#include "queue-manager/delivery.hpp"
#include "test_queue_common.hpp"

using namespace pbx;
using namespace pbx::qm;
namespace dm = pbx::ipc::delivery;

namespace {

struct Received {
    uint64_t id;
    std::vector<std::string> rcpts;
    std::string queue_id;
    bool has_fd;
};

// Accepts one client at a time on runtime/local/local.sock and hands each
// request to `script`, which answers through `conn`.
class FakeAgent {
  public:
    using Script = std::function<void(FakeAgent&, const Received&)>;

    FakeAgent(event_base* base, const std::string& runtime) : base_(base) {
        REQUIRE(::mkdir((runtime + "/local").c_str(), 0755) == 0);
        auto fd = ipc::listen_unix(ipc::socket_path(runtime, ipc::Channel::Local), 0666);
        REQUIRE(fd.ok());
        listener_ = std::move(fd).value();
        ev_.reset(
            event_new(base, listener_.get(), EV_READ | EV_PERSIST, &FakeAgent::on_accept, this));
        event_add(ev_.get(), nullptr);
    }

    void result(uint64_t id, uint64_t index, std::string_view status, std::string_view reply,
                std::string_view tls = {}) {
        auto m = ipc::Message::named(dm::kProtocol, "rcpt_result");
        m.set_u64("id", id);
        m.set_u64("index", index);
        m.set_str("status", status);
        m.set_str("reply", reply);
        if (!tls.empty()) m.set_str("tls", tls);
        REQUIRE(conn->send(std::move(m)).ok());
    }
    void done(uint64_t id) {
        auto m = ipc::Message::named(dm::kProtocol, "done");
        m.set_u64("id", id);
        REQUIRE(conn->send(std::move(m)).ok());
    }

    Script script;
    std::unique_ptr<ipc::Connection> conn;
    std::vector<Received> seen;

  private:
    static void on_accept(evutil_socket_t fd, short, void* self) noexcept {
        auto* a = static_cast<FakeAgent*>(self);
        int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        a->conn = std::make_unique<ipc::Connection>(
            a->base_, UniqueFd(c), dm::kProtocol,
            [a](ipc::Message&& m) {
                Received r{*m.get_u64("id"),
                           {},
                           std::string(*m.get_str("queue_id")),
                           m.take_fd("message").valid()};
                for (auto s : m.get_all("rcpt")) r.rcpts.emplace_back(s);
                a->seen.push_back(r);
                if (a->script) a->script(*a, r);
            },
            [a](const ipc::IpcError&) { a->conn.reset(); });
    }

    event_base* base_;
    UniqueFd listener_;
    EventPtr ev_;
};

struct Fixture {
    qtest::TempSpool dir;  // only for a temporary directory
    std::string runtime = dir.paths().root;
    EventBasePtr base{event_base_new()};
    spool::Envelope env = qtest::sample_envelope(qtest::id_at(0x6000000000a000ull), 10);
    std::vector<DeliveryReport> reports;

    DeliveryRequest request(std::vector<size_t> rcpts) {
        DeliveryRequest r;
        r.id = env.id;
        r.route = Route::Local;
        r.envelope = env;
        r.recipients = std::move(rcpts);
        r.message = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        return r;
    }
    DeliveryAgents::DoneFn collect() {
        return [this](DeliveryReport r) { reports.push_back(std::move(r)); };
    }
    void spin_until(const std::function<bool()>& cond) {
        for (int i = 0; i < 2000 && !cond(); ++i) event_base_loop(base.get(), EVLOOP_ONCE);
        REQUIRE(cond());
    }
};

}  // namespace

TEST_CASE("agents: no socket means unavailable, nothing attempted", "[queue][agents]") {
    Fixture f;
    SocketAgents agents(f.base.get(), f.runtime);
    agents.deliver(f.request({0}), f.collect());
    REQUIRE(f.reports.size() == 1);
    CHECK(f.reports[0].unavailable);
    CHECK(f.reports[0].reason.find("local-delivery is not running") == 0);
    CHECK(f.reports[0].results.empty());
}

TEST_CASE("agents: results map back to the envelope's recipients", "[queue][agents]") {
    Fixture f;
    f.env.recipients.push_back(f.env.recipients[0]);
    f.env.recipients[2].address = "dave@example.test";
    FakeAgent agent(f.base.get(), f.runtime);
    agent.script = [](FakeAgent& a, const Received& r) {
        a.result(r.id, 1, "failed", "550 5.1.1 user unknown");
        a.result(r.id, 0, "sent", "250 2.0.0 delivered to maildir",
                 "TLSv1.3:TLS_AES_256_GCM_SHA384");
        a.done(r.id);
    };
    SocketAgents agents(f.base.get(), f.runtime);
    agents.deliver(f.request({0, 2}), f.collect());
    f.spin_until([&] { return !f.reports.empty(); });
    REQUIRE(agent.seen.size() == 1);
    CHECK(agent.seen[0].rcpts == std::vector<std::string>{"bob@example.test", "dave@example.test"});
    CHECK(agent.seen[0].queue_id == f.env.id.str());
    CHECK(agent.seen[0].has_fd);
    const auto& rep = f.reports[0];
    CHECK_FALSE(rep.unavailable);
    REQUIRE(rep.results.size() == 2);
    CHECK(rep.results[0].index == 2);
    CHECK(rep.results[0].outcome == Outcome::Failed);
    CHECK(rep.results[1].index == 0);
    CHECK(rep.results[1].outcome == Outcome::Delivered);
    CHECK(rep.results[1].reply == "250 2.0.0 delivered to maildir");
    // The session's TLS details travel for the log line; absent = omitted.
    CHECK(rep.results[1].tls == "TLSv1.3:TLS_AES_256_GCM_SHA384");
    CHECK(rep.results[0].tls.empty());
    CHECK(agents.in_flight() == 0);
}

TEST_CASE("agents: a dropped connection defers what was not answered", "[queue][agents]") {
    Fixture f;
    FakeAgent agent(f.base.get(), f.runtime);
    agent.script = [](FakeAgent& a, const Received& r) {
        a.result(r.id, 0, "sent", "250 ok");
        a.conn->close_when_flushed();
    };
    SocketAgents agents(f.base.get(), f.runtime);
    agents.deliver(f.request({0, 1}), f.collect());
    f.spin_until([&] { return !f.reports.empty(); });
    const auto& rep = f.reports[0];
    REQUIRE(rep.results.size() == 2);
    CHECK(rep.results[0].outcome == Outcome::Delivered);
    CHECK(rep.results[1].index == 1);
    CHECK(rep.results[1].outcome == Outcome::Deferred);
    CHECK(rep.results[1].reply.find("lost") != std::string::npos);

    // The next request reconnects.
    agent.script = [](FakeAgent& a, const Received& r) {
        a.result(r.id, 0, "deferred", "451 4.2.0 mailbox locked");
        a.done(r.id);
    };
    agents.deliver(f.request({1}), f.collect());
    f.spin_until([&] { return f.reports.size() == 2; });
    REQUIRE(f.reports[1].results.size() == 1);
    CHECK(f.reports[1].results[0].outcome == Outcome::Deferred);
    CHECK(f.reports[1].results[0].index == 1);
}

TEST_CASE("agents: requests beyond the in-flight cap wait their turn", "[queue][agents]") {
    Fixture f;
    FakeAgent agent(f.base.get(), f.runtime);
    std::vector<uint64_t> unanswered;
    agent.script = [&](FakeAgent&, const Received& r) { unanswered.push_back(r.id); };
    SocketAgents agents(f.base.get(), f.runtime, SocketAgents::Limits{2});
    for (int i = 0; i < 5; ++i) agents.deliver(f.request({0}), f.collect());
    f.spin_until([&] { return agent.seen.size() == 2; });
    for (int i = 0; i < 50; ++i) event_base_loop(f.base.get(), EVLOOP_NONBLOCK);
    CHECK(agent.seen.size() == 2);
    CHECK(agents.in_flight() == 2);
    agent.script = [](FakeAgent& a, const Received& r) {
        a.result(r.id, 0, "sent", "250 ok");
        a.done(r.id);
    };
    for (uint64_t id : unanswered) {
        agent.result(id, 0, "sent", "250 ok");
        agent.done(id);
    }
    f.spin_until([&] { return f.reports.size() == 5; });
    CHECK(agent.seen.size() == 5);
    CHECK(agents.in_flight() == 0);
}
