// Which notices a message needs (queue-manager/notices.hpp), as tables of
// NOTIFY, states and senders; and the scheduler's use of them with a
// recording Notifier: the original leaves the queue only after its notice is
// queued, a notice that cannot be queued is retried, a delay notice goes
// once, at delay_warning_time.
#include "queue-manager/notices.hpp"
#include "queue-manager/scheduler.hpp"
#include "test_queue_common.hpp"

using namespace pbx;
using namespace pbx::qm;
using qtest::at;
using qtest::TempSpool;
using spool::RcptState;

namespace {

NoticeConfig notice_config() {
    NoticeConfig c;
    c.delay_warning = std::chrono::seconds{4 * 3600};
    c.lifetime = std::chrono::seconds{5 * 86400};
    c.postmaster = "postmaster@mail.example.test";
    c.local_domains = {"example.test"};
    return c;
}

spool::Envelope one_rcpt(RcptState state, uint8_t notify, std::string sender = "a@example.net",
                         spool::Origin origin = spool::Origin::Smtp) {
    auto env = qtest::sample_envelope(qtest::id_at(0x6000000000b000ull));
    env.sender = std::move(sender);
    env.origin = origin;
    env.recipients.resize(1);
    env.recipients[0].state = state;
    env.recipients[0].notify = notify;
    return env;
}

}  // namespace

TEST_CASE("notices: NOTIFY decisions per final state", "[queue][notices]") {
    using dsn::Action;
    constexpr uint8_t N = spool::kNotifyNever, S = spool::kNotifySuccess, F = spool::kNotifyFailure,
                      D = spool::kNotifyDelay;
    struct Row {
        const char* name;
        RcptState state;
        uint8_t notify;
        std::string sender;
        spool::Origin origin;
        bool notice;
        Action action;
        bool postmaster;
        const char* log;  // a substring of the one log line, or ""
    } rows[] = {
        {"failed, default", RcptState::Failed, 0, "a@x", spool::Origin::Smtp, true, Action::Failed,
         false, ""},
        {"failed, FAILURE", RcptState::Failed, F, "a@x", spool::Origin::Smtp, true, Action::Failed,
         false, ""},
        {"failed, SUCCESS,DELAY", RcptState::Failed, S | D, "a@x", spool::Origin::Smtp, false,
         Action::Failed, false, "no notice: NOTIFY=SUCCESS,DELAY"},
        {"failed, NEVER", RcptState::Failed, N, "a@x", spool::Origin::Smtp, false, Action::Failed,
         false, "no notice: NOTIFY=NEVER"},
        {"failed, null sender", RcptState::Failed, 0, "", spool::Origin::Smtp, false,
         Action::Failed, false, "status=bounced, no notice: null sender"},
        {"failed notice → postmaster", RcptState::Failed, 0, "", spool::Origin::Dsn, true,
         Action::Failed, true, ""},
        {"failed postmaster notice → dropped", RcptState::Failed, 0, "",
         spool::Origin::PostmasterNotice, false, Action::Failed, false,
         "undeliverable postmaster notice dropped"},
        {"delivered, default", RcptState::Delivered, 0, "a@x", spool::Origin::Smtp, false,
         Action::Delivered, false, ""},
        {"delivered, SUCCESS", RcptState::Delivered, S, "a@x", spool::Origin::Smtp, true,
         Action::Delivered, false, ""},
        {"delivered, SUCCESS, null sender", RcptState::Delivered, S, "", spool::Origin::Smtp, false,
         Action::Delivered, false, ""},
        {"delivered notice", RcptState::Delivered, 0, "", spool::Origin::Dsn, false,
         Action::Delivered, false, ""},
    };
    for (const Row& row : rows) {
        INFO(row.name);
        auto env = one_rcpt(row.state, row.notify, row.sender, row.origin);
        NoticePlan plan = plan_notices(env, env.arrival, notice_config());
        CHECK(plan.mark == std::vector<size_t>{0});  // decided once, whatever the decision
        CHECK(plan.empty() == !row.notice);
        if (row.notice) {
            REQUIRE(plan.report.size() == 1);
            CHECK(plan.report[0].action == row.action);
            CHECK(plan.postmaster == row.postmaster);
            CHECK(plan.to == (row.postmaster ? "postmaster@mail.example.test" : row.sender));
        }
        if (*row.log) {
            REQUIRE(plan.logs.size() == 1);
            CHECK(plan.logs[0].find(row.log) != std::string::npos);
            CHECK(plan.logs[0].find("to=<bob@example.test>") == 0);
        } else {
            CHECK(plan.logs.empty());
        }
        // Once notified, never again.
        env.recipients[0].notified = true;
        NoticePlan again = plan_notices(env, env.arrival, notice_config());
        CHECK(again.empty());
        CHECK(again.mark.empty());
        CHECK(again.logs.empty());
    }
}

TEST_CASE("notices: relayed for remote recipients, kinds", "[queue][notices]") {
    auto env = one_rcpt(RcptState::Delivered, spool::kNotifySuccess);
    env.recipients[0].address = "x@example.org";
    NoticePlan plan = plan_notices(env, env.arrival, notice_config());
    REQUIRE(plan.report.size() == 1);
    CHECK(plan.report[0].action == dsn::Action::Relayed);
    CHECK(plan.kind() == "sender delivery status notification");
    env.recipients[0].state = RcptState::Failed;
    env.recipients[0].notify = 0;
    CHECK(plan_notices(env, env.arrival, notice_config()).kind() ==
          "sender non-delivery notification");
    env.sender.clear();
    env.origin = spool::Origin::Dsn;
    CHECK(plan_notices(env, env.arrival, notice_config()).kind() ==
          "postmaster non-delivery notification");
}

TEST_CASE("notices: the delay notice", "[queue][notices]") {
    constexpr uint8_t N = spool::kNotifyNever, S = spool::kNotifySuccess, F = spool::kNotifyFailure,
                      D = spool::kNotifyDelay;
    struct Row {
        const char* name;
        uint8_t notify;
        std::string sender;
        bool sent;
        int64_t warning;
        bool due;
    } rows[] = {
        {"default", 0, "a@x", false, 14400, true},
        {"DELAY", D, "a@x", false, 14400, true},
        {"FAILURE only", F, "a@x", false, 14400, false},
        {"SUCCESS only", S, "a@x", false, 14400, false},
        {"NEVER", N, "a@x", false, 14400, false},
        {"null sender", 0, "", false, 14400, false},
        {"already sent", 0, "a@x", true, 14400, false},
        {"disabled", 0, "a@x", false, 0, false},
    };
    for (const Row& row : rows) {
        INFO(row.name);
        auto env = one_rcpt(RcptState::Deferred, row.notify, row.sender);
        env.delay_notice_sent = row.sent;
        env.recipients[0].last_reply = "451 4.2.0 busy";
        NoticeConfig cfg = notice_config();
        cfg.delay_warning = std::chrono::seconds{row.warning};
        auto due = delay_notice_due(env, cfg);
        CHECK(due.has_value() == row.due);
        if (row.due) CHECK(*due == env.arrival + std::chrono::seconds{row.warning});
        // Before the time: nothing; after it: a delayed notice when due.
        CHECK(plan_notices(env, env.arrival + std::chrono::seconds{row.warning - 1}, cfg).empty());
        NoticePlan plan = plan_notices(env, env.arrival + std::chrono::seconds{row.warning}, cfg);
        CHECK(plan.empty() == !row.due);
        CHECK(plan.delay == row.due);
        CHECK(plan.mark.empty());  // a deferred recipient is not final
        if (row.due) {
            CHECK(plan.report[0].action == dsn::Action::Delayed);
            CHECK(plan.will_retry_until == env.arrival + cfg.lifetime);
            CHECK(plan.kind() == "sender delay notification");
        }
    }
    // A pending (never attempted) recipient does not count.
    auto env = one_rcpt(RcptState::Pending, 0);
    CHECK_FALSE(delay_notice_due(env, notice_config()));
}

TEST_CASE("notices: the whole original or its header", "[queue][notices]") {
    auto env = one_rcpt(RcptState::Failed, 0);
    env.size = 1000;
    NoticePlan failed = plan_notices(env, env.arrival, notice_config());
    CHECK(return_full_message(env, failed, 50000));
    CHECK_FALSE(return_full_message(env, failed, 999));
    env.ret = spool::DsnRet::Full;
    CHECK(return_full_message(env, failed, 1000));
    env.ret = spool::DsnRet::Headers;
    CHECK_FALSE(return_full_message(env, failed, 50000));
    auto ok = one_rcpt(RcptState::Delivered, spool::kNotifySuccess);
    ok.ret = spool::DsnRet::Full;
    CHECK_FALSE(return_full_message(ok, plan_notices(ok, ok.arrival, notice_config()), 50000));
}

namespace {

class OneRouteAgents final : public DeliveryAgents {
  public:
    void deliver(DeliveryRequest req, DoneFn done) override {
        ++requests;
        DeliveryReport rep;
        for (size_t i : req.recipients) {
            RecipientResult r = result;
            r.index = i;
            rep.results.push_back(r);
        }
        done(std::move(rep));
    }
    int requests = 0;
    RecipientResult result;
};

class RecordingNotifier final : public Notifier {
  public:
    void send_notice(const spool::Envelope& original, const NoticePlan& plan,
                     const std::map<size_t, std::string>& relays, DoneFn done) override {
        sent.push_back({original.id, plan, relays});
        pending.push_back(std::move(done));
    }
    struct Sent {
        spool::QueueId id;
        NoticePlan plan;
        std::map<size_t, std::string> relays;
    };
    std::vector<Sent> sent;
    std::vector<DoneFn> pending;
};

struct Fixture {
    TempSpool spool;
    QueueStore store{spool.paths()};
    OneRouteAgents agents;
    RecordingNotifier notifier;
    Seconds now = at(1700000000);
    Scheduler sched{store, agents, config(), [this] { return now; }};
    Fixture() { sched.set_notifier(&notifier); }

    static SchedulerConfig config() {
        SchedulerConfig c;
        c.policy = RetryPolicy{std::chrono::seconds{300}, std::chrono::seconds{4000},
                               std::chrono::seconds{5 * 86400}};
        c.local_domains = {"example.test"};
        c.agent_retry = std::chrono::seconds{60};
        c.notices = notice_config();
        return c;
    }
    spool::QueueId add(std::string sender = "alice@example.net") {
        auto env = qtest::sample_envelope(qtest::id_at(0x6000000000c000ull), 10);
        env.arrival = now;
        env.sender = std::move(sender);
        env.recipients.resize(1);  // bob@example.test: local
        qtest::put_message(spool.paths(), env);
        store.add(env, false, Scheduler::due_of(env));
        return env.id;
    }
    spool::Envelope on_disk(const spool::QueueId& id) {
        auto env = spool::read_envelope_file(spool.paths().envelope_file(id));
        REQUIRE(env.ok());
        return *env;
    }
};

}  // namespace

TEST_CASE("scheduler: the original leaves only after its bounce is queued", "[queue][notices]") {
    Fixture f;
    auto id = f.add();
    f.agents.result = {0, Outcome::Failed, "550 5.1.1 user unknown", "local"};
    (void)f.sched.run();
    REQUIRE(f.notifier.sent.size() == 1);
    CHECK(f.notifier.sent[0].plan.to == "alice@example.net");
    CHECK(f.notifier.sent[0].relays.at(0) == "local");
    // Not yet durable: the message is still there, failed but not notified.
    REQUIRE(f.store.find(id));
    CHECK(f.store.find(id)->notice_in_flight);
    CHECK(f.on_disk(id).recipients[0].state == RcptState::Failed);  // the attempt is saved
    CHECK_FALSE(f.on_disk(id).recipients[0].notified);               // the notice is not
    CHECK_FALSE(f.sched.run().has_value());                          // nothing else to do meanwhile
    CHECK(f.agents.requests == 1);

    // The commit fails: the message stays, and the notice is tried again.
    f.notifier.pending[0](fail("disk full"));
    REQUIRE(f.store.find(id));
    CHECK(f.store.find(id)->due == f.now + std::chrono::seconds{60});
    f.now += std::chrono::seconds{60};
    (void)f.sched.run();
    REQUIRE(f.notifier.sent.size() == 2);
    CHECK(f.agents.requests == 1);  // no new delivery attempt

    f.notifier.pending[1](qtest::id_at(0x6000000000d000ull));
    CHECK(f.store.find(id) == nullptr);
    CHECK(qtest::list_dir(f.spool.paths().queue).empty());
}

TEST_CASE("scheduler: a failure while others wait is reported at once, and once",
          "[queue][notices]") {
    Fixture f;
    auto env = qtest::sample_envelope(qtest::id_at(0x6000000000e000ull), 10);
    env.arrival = f.now;
    env.recipients[1].address = "carol@example.test";  // both local
    qtest::put_message(f.spool.paths(), env);
    f.store.add(env, false, f.now);
    // bob fails, carol is deferred: a notice for bob alone.
    struct Split final : DeliveryAgents {
        void deliver(DeliveryRequest req, DoneFn done) override {
            DeliveryReport rep;
            for (size_t i : req.recipients)
                rep.results.push_back({i, i == 0 ? Outcome::Failed : Outcome::Deferred,
                                       i == 0 ? "550 5.1.1 no" : "451 4.2.0 busy", "local"});
            done(std::move(rep));
        }
    } split;
    Scheduler sched{f.store, split, Fixture::config(), [&f] { return f.now; }};
    sched.set_notifier(&f.notifier);
    (void)sched.run();
    REQUIRE(f.notifier.sent.size() == 1);
    REQUIRE(f.notifier.sent[0].plan.report.size() == 1);
    CHECK(f.notifier.sent[0].plan.report[0].index == 0);
    f.notifier.pending[0](qtest::id_at(0x6000000000f000ull));
    auto disk = f.on_disk(env.id);
    CHECK(disk.recipients[0].notified);
    CHECK_FALSE(disk.recipients[1].notified);
    CHECK(disk.recipients[1].state == RcptState::Deferred);
    // The next pass (carol deferred again) sends nothing new.
    f.now += std::chrono::seconds{300};
    (void)sched.run();
    CHECK(f.notifier.sent.size() == 1);

    // Four hours after arrival: one delay notice for carol, then never again.
    f.now = env.arrival + std::chrono::seconds{4 * 3600};
    CHECK(sched.due(f.store.find(env.id)->env) <= f.now);
    (void)sched.run();
    REQUIRE(f.notifier.sent.size() == 2);
    CHECK(f.notifier.sent[1].plan.delay);
    REQUIRE(f.notifier.sent[1].plan.report.size() == 1);
    CHECK(f.notifier.sent[1].plan.report[0].index == 1);
    CHECK(f.notifier.sent[1].plan.report[0].action == dsn::Action::Delayed);
    f.notifier.pending[1](qtest::id_at(0x60000000010000ull));
    CHECK(f.on_disk(env.id).delay_notice_sent);
    f.now += std::chrono::seconds{4000};
    (void)sched.run();
    CHECK(f.notifier.sent.size() == 2);
}

TEST_CASE("scheduler: null sender and NOTIFY=NEVER send nothing", "[queue][notices]") {
    for (std::string sender : {std::string(""), std::string("alice@example.net")}) {
        Fixture f;
        auto id = f.add(sender);
        if (!sender.empty()) f.store.find(id)->env.recipients[0].notify = spool::kNotifyNever;
        f.agents.result = {0, Outcome::Failed, "550 5.1.1 no", "local"};
        (void)f.sched.run();
        CHECK(f.notifier.sent.empty());
        CHECK(f.store.find(id) == nullptr);
    }
}

TEST_CASE("scheduler: a failed notice goes to the postmaster, whose failure is dropped",
          "[queue][notices]") {
    Fixture f;
    auto id = f.add("");
    f.store.find(id)->env.origin = spool::Origin::Dsn;
    f.agents.result = {0, Outcome::Failed, "550 5.1.1 no", "local"};
    (void)f.sched.run();
    REQUIRE(f.notifier.sent.size() == 1);
    CHECK(f.notifier.sent[0].plan.postmaster);
    CHECK(f.notifier.sent[0].plan.to == "postmaster@mail.example.test");
    f.notifier.pending[0](qtest::id_at(0x60000000011000ull));
    CHECK(f.store.find(id) == nullptr);

    Fixture g;
    auto id2 = g.add("");
    g.store.find(id2)->env.origin = spool::Origin::PostmasterNotice;
    g.agents.result = {0, Outcome::Failed, "550 5.1.1 no", "local"};
    (void)g.sched.run();
    CHECK(g.notifier.sent.empty());
    CHECK(g.store.find(id2) == nullptr);
}

TEST_CASE("scheduler: a success report for NOTIFY=SUCCESS", "[queue][notices]") {
    Fixture f;
    auto id = f.add();
    f.store.find(id)->env.recipients[0].notify = spool::kNotifySuccess;
    f.agents.result = {0, Outcome::Delivered, "250 2.0.0 delivered to maildir", "local"};
    (void)f.sched.run();
    REQUIRE(f.notifier.sent.size() == 1);
    CHECK(f.notifier.sent[0].plan.report[0].action == dsn::Action::Delivered);
    f.notifier.pending[0](qtest::id_at(0x60000000012000ull));
    CHECK(f.store.find(id) == nullptr);
}
