// The scheduler (queue-manager/scheduler.hpp) with a scripted delivery agent
// on a temporary spool: unavailable agents leave mail untouched, answers
// update the envelope on disk, finished messages are removed, and the store's
// hold/release/delete file operations.
#include "common/spool/fake_sys.hpp"
#include "queue-manager/scheduler.hpp"
#include "test_queue_common.hpp"

using namespace pbx;
using namespace pbx::qm;
using qtest::at;
using qtest::list_dir;
using qtest::TempSpool;

namespace {

// Answers every request with the report the test scripted for its route.
class ScriptedAgents final : public DeliveryAgents {
  public:
    void deliver(DeliveryRequest req, DoneFn done) override {
        requests.push_back({req.id, req.route, req.recipients, req.message.valid()});
        DeliveryReport rep = req.route == Route::Local ? local : remote;
        if (!rep.unavailable) {
            rep.results.clear();
            for (size_t i : req.recipients) {
                RecipientResult r = req.route == Route::Local ? local_result : remote_result;
                r.index = i;
                rep.results.push_back(r);
            }
        }
        done(std::move(rep));
    }
    struct Seen {
        spool::QueueId id;
        Route route;
        std::vector<size_t> recipients;
        bool had_fd;
    };
    std::vector<Seen> requests;
    DeliveryReport local, remote;
    RecipientResult local_result, remote_result;
};

struct Fixture {
    TempSpool spool;
    QueueStore store{spool.paths()};
    ScriptedAgents agents;
    Seconds now = at(1700000000);
    Scheduler sched{store, agents, config(), [this] { return now; }};

    static SchedulerConfig config() {
        SchedulerConfig c;
        c.policy = RetryPolicy{std::chrono::seconds{300}, std::chrono::seconds{4000},
                               std::chrono::seconds{86400}};
        c.local_domains = {"example.test"};
        c.agent_retry = std::chrono::seconds{60};
        return c;
    }

    spool::QueueId add(bool held = false) {
        auto env = qtest::sample_envelope(qtest::id_at(0x6000000000a000ull), 10);
        env.arrival = now;
        qtest::put_message(spool.paths(), env, held);
        store.add(env, held, Scheduler::due_of(env));
        return env.id;
    }
    spool::Envelope on_disk(const spool::QueueId& id, bool held = false) {
        auto p = held ? spool.paths().held_envelope_file(id) : spool.paths().envelope_file(id);
        auto env = spool::read_envelope_file(p);
        REQUIRE(env.ok());
        return *env;
    }
};

}  // namespace

TEST_CASE("scheduler: an unavailable agent changes nothing on disk", "[queue][scheduler]") {
    Fixture f;
    auto id = f.add();
    f.agents.local = {true, "local-delivery is not running", {}};
    f.agents.remote = {true, "remote-delivery is not running", {}};
    auto next = f.sched.run();
    REQUIRE(f.agents.requests.size() == 2);  // one per route
    CHECK(f.agents.requests[0].route == Route::Local);
    CHECK(f.agents.requests[0].recipients == std::vector<size_t>{0});
    CHECK(f.agents.requests[0].had_fd);
    CHECK(f.agents.requests[1].route == Route::Remote);
    CHECK(f.agents.requests[1].recipients == std::vector<size_t>{1});
    Entry* e = f.store.find(id);
    REQUIRE(e);
    // An agent that is just starting is asked again a second later.
    CHECK(e->due == f.now + std::chrono::seconds{1});
    CHECK_FALSE(e->note.empty());
    CHECK(e->in_delivery == 0);
    auto env = f.on_disk(id);
    CHECK(env.recipients[0].attempts == 0);
    CHECK(env.recipients[0].state == spool::RcptState::Pending);
    REQUIRE(next);
    CHECK(*next == f.now + std::chrono::seconds{1});
    // Not due again before the retry time.
    f.agents.requests.clear();
    (void)f.sched.run();
    CHECK(f.agents.requests.empty());
    // Still down: the wait grows with the time it has been down, up to
    // agent_retry.
    f.now += std::chrono::seconds{1};
    (void)f.sched.run();
    CHECK(f.agents.requests.size() == 2);
    CHECK(f.store.find(id)->due == f.now + std::chrono::seconds{1});
    f.now += std::chrono::seconds{40};
    (void)f.sched.run();
    CHECK(f.store.find(id)->due == f.now + std::chrono::seconds{41});
    f.now += std::chrono::seconds{41};
    (void)f.sched.run();
    CHECK(f.store.find(id)->due == f.now + std::chrono::seconds{60});
    // Once it answers, the next outage starts from a second again.
    f.agents.local = {};
    f.agents.remote = {};
    f.agents.local_result = {0, Outcome::Deferred, "4.2.0 try later", ""};
    f.agents.remote_result = {0, Outcome::Deferred, "4.2.0 try later", ""};
    f.now += std::chrono::seconds{60};
    (void)f.sched.run();
    f.agents.local = {true, "local-delivery is not running", {}};
    f.agents.remote = {true, "remote-delivery is not running", {}};
    f.sched.flush(&id);
    (void)f.sched.run();
    CHECK(f.store.find(id)->due == f.now + std::chrono::seconds{1});
}

TEST_CASE("scheduler: an agent disabled in the config is not asked", "[queue][scheduler]") {
    Fixture f;
    SchedulerConfig c = Fixture::config();
    c.disabled_routes = {Route::Remote};
    Scheduler sched{f.store, f.agents, c, [&f] { return f.now; }};
    auto id = f.add();
    f.agents.local = {true, "local-delivery is not running", {}};
    (void)sched.run();
    REQUIRE(f.agents.requests.size() == 1);  // the local recipient only
    CHECK(f.agents.requests[0].route == Route::Local);
    Entry* e = f.store.find(id);
    REQUIRE(e);
    CHECK(e->due == f.now + std::chrono::seconds{1});  // local: soon again
    CHECK(e->note.find("local-delivery") != std::string::npos);
    // With local delivery up and done, the remote recipient waits a minute.
    f.agents.local = {};
    f.agents.local_result = {0, Outcome::Delivered, "250 2.0.0 ok", "local"};
    f.agents.requests.clear();
    f.now += std::chrono::seconds{1};
    (void)sched.run();
    REQUIRE(f.agents.requests.size() == 1);
    CHECK(f.agents.requests[0].route == Route::Local);
    e = f.store.find(id);
    REQUIRE(e);
    CHECK(e->due == f.now + std::chrono::seconds{60});
    CHECK(f.on_disk(id).recipients[1].attempts == 0);
}

TEST_CASE("scheduler: deferred, then delivered, then removed", "[queue][scheduler]") {
    Fixture f;
    auto id = f.add();
    f.agents.local_result = {0, Outcome::Delivered, "250 2.0.0 ok", "local"};
    f.agents.remote_result = {0, Outcome::Deferred, "451 4.4.1 try later", ""};
    (void)f.sched.run();
    auto env = f.on_disk(id);
    CHECK(env.recipients[0].state == spool::RcptState::Delivered);
    CHECK(env.recipients[1].state == spool::RcptState::Deferred);
    CHECK(env.recipients[1].attempts == 1);
    CHECK(env.recipients[1].next_attempt == f.now + std::chrono::seconds{300});
    CHECK(env.recipients[1].last_reply == "451 4.4.1 try later");
    CHECK(f.store.find(id)->due == f.now + std::chrono::seconds{300});

    // Too early: nothing happens.
    f.agents.requests.clear();
    f.now += std::chrono::seconds{100};
    (void)f.sched.run();
    CHECK(f.agents.requests.empty());

    // A flush makes it due at once; only the undelivered recipient goes.
    f.sched.flush(&id);
    f.agents.remote_result = {0, Outcome::Delivered, "250 ok", "mx.example.org[192.0.2.1]:25"};
    (void)f.sched.run();
    REQUIRE(f.agents.requests.size() == 1);
    CHECK(f.agents.requests[0].recipients == std::vector<size_t>{1});
    CHECK(f.store.find(id) == nullptr);
    CHECK(list_dir(f.spool.paths().queue).empty());
}

TEST_CASE("scheduler: expiry fails the recipient and ends the message", "[queue][scheduler]") {
    Fixture f;
    auto id = f.add();
    f.now += std::chrono::seconds{2 * 86400};
    f.agents.local_result = {0, Outcome::Deferred, "452 mailbox full", ""};
    f.agents.remote_result = {0, Outcome::Failed, "550 5.1.1 no such user", ""};
    (void)f.sched.run();
    CHECK(f.store.find(id) == nullptr);
    CHECK(list_dir(f.spool.paths().queue).empty());
}

TEST_CASE("scheduler: held messages are not delivered", "[queue][scheduler]") {
    Fixture f;
    auto id = f.add(/*held=*/true);
    (void)f.sched.run();
    CHECK(f.agents.requests.empty());
    REQUIRE(f.store.release(id).ok());
    CHECK(list_dir(f.spool.paths().hold).empty());
    f.agents.local = {true, "down", {}};
    f.agents.remote = {true, "down", {}};
    (void)f.sched.run();
    CHECK(f.agents.requests.size() == 2);
}

TEST_CASE("store: hold, release and delete move and remove the right files", "[queue][store]") {
    Fixture f;
    auto id = f.add();
    const auto& p = f.spool.paths();
    REQUIRE(f.store.hold(id).ok());
    CHECK(list_dir(p.hold) == std::vector<std::string>{id.str() + ".env"});
    CHECK(list_dir(p.queue) == std::vector<std::string>{id.str() + ".msg"});
    CHECK_FALSE(f.store.hold(id).ok());  // already held
    REQUIRE(f.store.save(id).ok());      // saves where it lives: hold/
    CHECK(f.on_disk(id, true).id == id);
    REQUIRE(f.store.release(id).ok());
    CHECK(list_dir(p.hold).empty());
    CHECK(list_dir(p.queue).size() == 2);
    REQUIRE(f.store.remove(id).ok());
    CHECK(list_dir(p.queue).empty());
    CHECK(f.store.find(id) == nullptr);
    CHECK_FALSE(f.store.remove(id).ok());
}

TEST_CASE("store: a failed envelope update keeps the old file", "[queue][store]") {
    TempSpool spool;
    sys::FakeSys s;
    QueueStore store(spool.paths(), s);
    auto env = qtest::sample_envelope(qtest::id_at(0x6000000000a000ull), 10);
    qtest::put_message(spool.paths(), env);
    store.add(env, false, Seconds{});
    std::string before = qtest::read_file(spool.paths().envelope_file(env.id));
    store.find(env.id)->env.recipients[0].attempts = 9;
    s.fail(sys::Op::Fsync, ENOSPC);
    CHECK_FALSE(store.save(env.id).ok());
    CHECK(qtest::read_file(spool.paths().envelope_file(env.id)) == before);
    CHECK(list_dir(spool.paths().queue).size() == 2);
}
