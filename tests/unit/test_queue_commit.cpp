// The enqueue transaction and the commit protocol (queue-manager/
// transaction.hpp, commit.hpp) against the fake sys layer: the order of the
// syscalls, one directory fsync per wave, and every injected I/O failure
// (ENOSPC, EIO at create, write, fsync, close, rename) ending in a temporary
// failure with no file left behind, never a commit.
#include <event2/event.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/c_ptr.hpp"
#include "common/spool/fake_sys.hpp"
#include "queue-manager/commit.hpp"
#include "queue-manager/transaction.hpp"
#include "test_queue_common.hpp"

using namespace pbx;
using namespace pbx::qm;
using pbx::sys::FakeSys;
using pbx::sys::Op;
using qtest::list_dir;
using qtest::read_file;
using qtest::TempSpool;

namespace {

const std::string kBody = "Subject: test\r\n\r\nHello.\r\n";

ReceivedContext rc() {
    return ReceivedContext{"mx.example.test", 1700000000, 0};
}

spool::Envelope begin_envelope() {
    spool::Envelope env;
    env.origin = spool::Origin::Smtp;
    env.client_address = "192.0.2.7";
    env.client_hostname = "client.example.net";
    env.helo = "helo.example.net";
    env.protocol = "ESMTP";
    env.sender = "alice@example.net";
    return env;
}

spool::Recipient rcpt(std::string address) {
    spool::Recipient r;
    r.address = std::move(address);
    return r;
}

struct Outcome {
    bool committed = false;
    std::optional<Refusal> refusal;
    spool::QueueId id;
};

// begin → rcpt → data → finish → a wave of one, through `s`.
Outcome enqueue_one(const TempSpool& spool, sys::Sys& s, const std::string& body = kBody,
                    TransactionLimits limits = {}) {
    Outcome out;
    auto t = Transaction::begin(spool.paths(), begin_envelope(), limits, s);
    if (!t) {
        out.refusal = t.error();
        return out;
    }
    out.id = t->id();
    t->add_recipient(rcpt("bob@example.test"));
    t->add_data(body, rc());
    auto job = t->finish(rc(), 7);
    if (!job) {
        out.refusal = job.error();
        return out;
    }
    std::vector<CommitJob> wave;
    wave.push_back(std::move(job).value());
    run_wave(wave, spool.paths(), s);
    if (wave[0].result) {
        out.committed = true;
    } else {
        out.refusal = io_refusal(wave[0].result.error());
    }
    return out;
}

size_t count(const std::vector<std::string>& trace, const std::string& entry) {
    return static_cast<size_t>(std::count(trace.begin(), trace.end(), entry));
}

}  // namespace

TEST_CASE("commit: a message lands in queue/ with its Received: line and envelope",
          "[queue][commit]") {
    TempSpool spool;
    FakeSys s;
    Outcome o = enqueue_one(spool, s);
    REQUIRE(o.committed);
    const auto& p = spool.paths();
    CHECK(list_dir(p.incoming).empty());
    CHECK(list_dir(p.queue) == std::vector<std::string>{o.id.str() + ".env", o.id.str() + ".msg"});

    std::string msg = read_file(p.message_file(o.id));
    std::string received =
        "Received: from helo.example.net (client.example.net [192.0.2.7])\r\n"
        "\tby mx.example.test (Pillarbox) with ESMTP id " +
        o.id.str() +
        "\r\n"
        "\tfor <bob@example.test>;\r\n"
        "\tTue, 14 Nov 2023 22:13:20 +0000\r\n";
    CHECK(msg == received + kBody);

    auto env = spool::read_envelope_file(p.envelope_file(o.id));
    REQUIRE(env.ok());
    CHECK(env->id == o.id);
    CHECK(env->size == msg.size());
    CHECK(env->sender == "alice@example.net");
    REQUIRE(env->recipients.size() == 1);
    CHECK(env->recipients[0].address == "bob@example.test");
    CHECK(env->recipients[0].state == spool::RcptState::Pending);

    // The commit protocol's order: message and envelope temp fsynced, then
    // renamed (message first), and the directory fsync last.
    const auto& tr = s.trace();
    auto pos = [&](const std::string& e) {
        return std::find(tr.begin(), tr.end(), e) - tr.begin();
    };
    auto msg_rename = pos("rename " + p.incoming_file(o.id) + " " + p.message_file(o.id));
    auto dir_open = pos("open " + p.queue);
    REQUIRE(msg_rename < static_cast<long>(tr.size()));
    REQUIRE(dir_open < static_cast<long>(tr.size()));
    CHECK(std::find(tr.begin(), tr.begin() + msg_rename, "fsync") != tr.begin() + msg_rename);
    CHECK(msg_rename < dir_open);
    CHECK(tr[static_cast<size_t>(dir_open) + 1] == "fsync");
    CHECK(s.calls(Op::Fsync) == 3);
    // Both files' writeback (started for both, then waited for on both)
    // comes before the first fsync: one journal commit covers both files.
    CHECK(s.calls(Op::SyncFileRange) == 4);
    auto first_fsync = pos("fsync");
    auto last_writeback = tr.rend() - std::find(tr.rbegin(), tr.rend(), "sync_file_range") - 1;
    CHECK(last_writeback < first_fsync);
    CHECK(count(tr, "open " + p.queue) == 1);
}

TEST_CASE("commit: every injected I/O failure is a temporary failure with nothing left",
          "[queue][commit]") {
    struct Row {
        Op op;
        int nth;
        int err;
        const char* code;  // enhanced status code of the reply
        const char* where;
    };
    const Row table[] = {
        {Op::Open, 1, EIO, "4.3.0", "create incoming/ID"},
        {Op::Open, 1, ENOSPC, "4.3.1", "create incoming/ID"},
        {Op::Write, 1, ENOSPC, "4.3.1", "write the Received: line"},
        {Op::Write, 2, ENOSPC, "4.3.1", "write the data"},
        {Op::Write, 2, EIO, "4.3.0", "write the data"},
        {Op::SyncFileRange, 1, ENOSPC, "4.3.1", "start the message's writeback"},
        {Op::SyncFileRange, 2, EIO, "4.3.0", "start the envelope's writeback"},
        {Op::SyncFileRange, 3, EIO, "4.3.0", "wait for the message's writeback"},
        {Op::SyncFileRange, 4, ENOSPC, "4.3.1", "wait for the envelope's writeback"},
        {Op::Fsync, 1, EIO, "4.3.0", "fsync the message"},
        {Op::Fsync, 1, ENOSPC, "4.3.1", "fsync the message"},
        {Op::Close, 1, EIO, "4.3.0", "close the message"},
        {Op::Rename, 1, EIO, "4.3.0", "rename to queue/ID.msg"},
        {Op::Open, 2, ENOSPC, "4.3.1", "create the envelope temp"},
        {Op::Write, 3, ENOSPC, "4.3.1", "write the envelope"},
        {Op::Fsync, 2, EIO, "4.3.0", "fsync the envelope"},
        {Op::Rename, 2, EIO, "4.3.0", "rename to queue/ID.env"},
        {Op::Open, 3, EIO, "4.3.0", "open queue/ for its fsync"},
        {Op::Fsync, 3, EIO, "4.3.0", "fsync queue/"},
    };
    for (const Row& r : table) {
        INFO(r.where << ": " << sys::op_name(r.op) << " #" << r.nth << " fails with "
                     << std::strerror(r.err));
        TempSpool spool;
        FakeSys s;
        s.fail(r.op, r.err, r.nth);
        Outcome o = enqueue_one(spool, s);
        CHECK_FALSE(o.committed);
        REQUIRE(o.refusal);
        CHECK(o.refusal->temporary);
        CHECK(o.refusal->text.rfind(r.code, 0) == 0);
        CHECK(list_dir(spool.paths().incoming).empty());
        CHECK(list_dir(spool.paths().queue).empty());
        // The failure was really injected where the row says.
        CHECK(s.calls(r.op) >= r.nth);
    }
}

TEST_CASE("commit: a wave shares one directory fsync; a failed member fails alone",
          "[queue][commit]") {
    TempSpool spool;
    FakeSys s;
    std::vector<CommitJob> wave;
    for (int i = 0; i < 3; ++i) {
        auto t = Transaction::begin(spool.paths(), begin_envelope(), {}, s);
        REQUIRE(t.ok());
        t->add_recipient(rcpt("user" + std::to_string(i) + "@example.test"));
        t->add_data(kBody, rc());
        auto job = t->finish(rc(), static_cast<uint64_t>(i));
        REQUIRE(job.ok());
        wave.push_back(std::move(job).value());
    }
    // The second message's envelope rename fails (renames: msg1 env1 msg2 env2).
    s.fail(Op::Rename, EIO, 4);
    WaveStats st = run_wave(wave, spool.paths(), s);
    CHECK(st.committed == 2);
    CHECK(st.failed == 1);
    CHECK(st.dir_syncs == 1);
    CHECK(count(s.trace(), "open " + spool.paths().queue) == 1);
    CHECK(wave[0].result.ok());
    CHECK_FALSE(wave[1].result.ok());
    CHECK(wave[2].result.ok());
    CHECK(list_dir(spool.paths().incoming).empty());
    CHECK(list_dir(spool.paths().queue) ==
          std::vector<std::string>{wave[0].id.str() + ".env", wave[0].id.str() + ".msg",
                                   wave[2].id.str() + ".env", wave[2].id.str() + ".msg"});
}

TEST_CASE("commit: a wave writes every file back before any fsync; a failed writeback fails alone",
          "[queue][commit]") {
    TempSpool spool;
    FakeSys s;
    std::vector<CommitJob> wave;
    for (int i = 0; i < 3; ++i) {
        auto t = Transaction::begin(spool.paths(), begin_envelope(), {}, s);
        REQUIRE(t.ok());
        t->add_recipient(rcpt("bob@example.test"));
        t->add_data(kBody, rc());
        auto job = t->finish(rc(), 0);
        REQUIRE(job.ok());
        wave.push_back(std::move(job).value());
    }
    // Writebacks started: msg1 env1 msg2 env2 msg3 env3; the wait for the
    // second message's envelope is the 10th call.
    s.fail(Op::SyncFileRange, ENOSPC, 10);
    WaveStats st = run_wave(wave, spool.paths(), s);
    CHECK(st.committed == 2);
    CHECK(st.failed == 1);
    CHECK(s.calls(Op::SyncFileRange) == 12);  // 6 starts, 6 waits (one failed)
    CHECK(s.calls(Op::Fsync) == 5);           // 2 messages, 2 envelopes, the directory
    const auto& tr = s.trace();
    auto first_fsync = std::find(tr.begin(), tr.end(), "fsync");
    CHECK(std::find(first_fsync, tr.end(), "sync_file_range") == tr.end());
    REQUIRE_FALSE(wave[1].result.ok());
    CHECK(io_refusal(wave[1].result.error()).text.rfind("4.3.1", 0) == 0);
    CHECK(list_dir(spool.paths().incoming).empty());
    CHECK(list_dir(spool.paths().queue) ==
          std::vector<std::string>{wave[0].id.str() + ".env", wave[0].id.str() + ".msg",
                                   wave[2].id.str() + ".env", wave[2].id.str() + ".msg"});
}

TEST_CASE("commit: a failed directory fsync fails and undoes the whole wave", "[queue][commit]") {
    TempSpool spool;
    FakeSys s;
    std::vector<CommitJob> wave;
    for (int i = 0; i < 4; ++i) {
        auto t = Transaction::begin(spool.paths(), begin_envelope(), {}, s);
        REQUIRE(t.ok());
        t->add_recipient(rcpt("bob@example.test"));
        t->add_data(kBody, rc());
        auto job = t->finish(rc(), 0);
        REQUIRE(job.ok());
        wave.push_back(std::move(job).value());
    }
    s.fail(Op::Fsync, EIO, 9);  // 4 messages + 4 envelopes, then the directory
    WaveStats st = run_wave(wave, spool.paths(), s);
    CHECK(st.committed == 0);
    CHECK(st.failed == 4);
    CHECK(list_dir(spool.paths().queue).empty());
    CHECK(list_dir(spool.paths().incoming).empty());
}

TEST_CASE("transaction: permanent refusals and abandoned transactions", "[queue][commit]") {
    TempSpool spool;
    const auto& p = spool.paths();

    SECTION("over the size limit: 5.3.4, the file goes at once") {
        TransactionLimits limits;
        limits.max_message_size = 100;
        limits.size_slack = 10;
        auto t = Transaction::begin(p, begin_envelope(), limits);
        REQUIRE(t.ok());
        t->add_recipient(rcpt("bob@example.test"));
        t->add_data(std::string(60, 'a'), rc());
        t->add_data(std::string(50, 'a'), rc());  // 110: still inside the slack
        CHECK_FALSE(t->failed());
        t->add_data("x", rc());
        CHECK(t->failed());
        CHECK(list_dir(p.incoming).empty());
        t->add_data(std::string(1000, 'a'), rc());  // swallowed
        auto job = t->finish(rc(), 0);
        REQUIRE_FALSE(job.ok());
        CHECK_FALSE(job.error().temporary);
        CHECK(job.error().text.rfind("5.3.4", 0) == 0);
    }
    SECTION("no recipients: 5.5.1") {
        auto t = Transaction::begin(p, begin_envelope(), {});
        REQUIRE(t.ok());
        t->add_data(kBody, rc());
        auto job = t->finish(rc(), 0);
        REQUIRE_FALSE(job.ok());
        CHECK(job.error().text.rfind("5.5.1", 0) == 0);
        CHECK(list_dir(p.incoming).empty());
    }
    SECTION("too many recipients: 5.5.3") {
        TransactionLimits limits;
        limits.envelope.max_recipients = 2;
        auto t = Transaction::begin(p, begin_envelope(), limits);
        REQUIRE(t.ok());
        for (int i = 0; i < 3; ++i) t->add_recipient(rcpt("r@example.test"));
        auto job = t->finish(rc(), 0);
        REQUIRE_FALSE(job.ok());
        CHECK(job.error().text.rfind("5.5.3", 0) == 0);
    }
    SECTION("dropped mid-transaction (abort, lost connection): incoming/ID is removed") {
        {
            auto t = Transaction::begin(p, begin_envelope(), {});
            REQUIRE(t.ok());
            t->add_recipient(rcpt("bob@example.test"));
            t->add_data(kBody, rc());
            CHECK(list_dir(p.incoming) == std::vector<std::string>{t->id().str()});
        }
        CHECK(list_dir(p.incoming).empty());
    }
    SECTION("no data at all still gets the Received: line") {
        auto t = Transaction::begin(p, begin_envelope(), {});
        REQUIRE(t.ok());
        t->add_recipient(rcpt("bob@example.test"));
        auto job = t->finish(rc(), 0);
        REQUIRE(job.ok());
        CHECK(job->file->size() > 0);
        CHECK(job->envelope_text.find("size: " + std::to_string(job->file->size()) + "\n") !=
              std::string::npos);
    }
}

namespace {

// The real syscalls, except that the fsync of a directory waits at a gate
// until the test opens it: the first wave is held in its directory fsync while
// the other commits place their files and queue up behind it.
class GateSys final : public sys::Sys {
  public:
    void open_gate() {
        {
            std::lock_guard lock(mu_);
            open_ = true;
        }
        cv_.notify_all();
    }
    // Returns once a directory fsync waits at the gate.
    void wait_for_directory_fsync() {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return waiting_ > 0; });
    }
    sys::SysResult fsync(int fd) override {
        struct stat st {};
        if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
            std::unique_lock lock(mu_);
            ++waiting_;
            cv_.notify_all();
            cv_.wait(lock, [this] { return open_; });
        }
        return sys::real().fsync(fd);
    }
    sys::SysResult sync_file_range(int fd, unsigned flags) override {
        if (fail_writeback_) return sys::sys_fail(ENOSPC);
        return sys::real().sync_file_range(fd, flags);
    }
    // Every sync_file_range fails with ENOSPC.
    void fail_writeback() { fail_writeback_ = true; }
    sys::SysResult open(const std::string& p, int f, mode_t m) override {
        return sys::real().open(p, f, m);
    }
    sys::SysResult read(int fd, void* b, size_t n) override { return sys::real().read(fd, b, n); }
    sys::SysResult write(int fd, const void* b, size_t n) override {
        return sys::real().write(fd, b, n);
    }
    sys::SysResult close(int fd) override { return sys::real().close(fd); }
    sys::SysResult rename(const std::string& a, const std::string& b) override {
        return sys::real().rename(a, b);
    }
    sys::SysResult link(const std::string& a, const std::string& b) override {
        return sys::real().link(a, b);
    }
    sys::SysResult unlink(const std::string& p) override { return sys::real().unlink(p); }
    sys::SysResult mkdir(const std::string& p, mode_t m) override {
        return sys::real().mkdir(p, m);
    }
    sys::SysResult fchown(int fd, uid_t u, gid_t g) override {
        return sys::real().fchown(fd, u, g);
    }
    sys::SysResult fchmod(int fd, mode_t m) override { return sys::real().fchmod(fd, m); }
    sys::SysResult fstat(int fd, struct stat* st) override { return sys::real().fstat(fd, st); }
    sys::SysResult lstat(const std::string& p, struct stat* st) override {
        return sys::real().lstat(p, st);
    }
    pid_t getpid() override { return sys::real().getpid(); }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = false;
    int waiting_ = 0;
    std::atomic<bool> fail_writeback_{false};
};

}  // namespace

TEST_CASE("commit: the group committer runs waves off the loop and reports on it",
          "[queue][commit]") {
    TempSpool spool;
    GateSys gate;
    EventBasePtr base(event_base_new());
    REQUIRE(base);
    std::vector<CommitJob> done;
    auto gc = GroupCommitter::create(
        base.get(), spool.paths(), [&](CommitJob&& j) { done.push_back(std::move(j)); }, gate);
    REQUIRE(gc.ok());
    const size_t kJobs = 20;
    std::vector<CommitJob> jobs;
    for (size_t i = 0; i < kJobs; ++i) {
        auto t = Transaction::begin(spool.paths(), begin_envelope(), {}, gate);
        REQUIRE(t.ok());
        t->add_recipient(rcpt("bob@example.test"));
        t->add_data(kBody, rc());
        auto job = t->finish(rc(), i);
        REQUIRE(job.ok());
        jobs.push_back(std::move(job).value());
    }
    // The first message's wave waits in its directory fsync; the others are
    // synced and renamed meanwhile and wait for the next wave.
    (*gc)->submit(std::move(jobs[0]));
    gate.wait_for_directory_fsync();
    for (size_t i = 1; i < kJobs; ++i) (*gc)->submit(std::move(jobs[i]));
    while ((*gc)->waiting_for_directory() < kJobs - 1) std::this_thread::yield();
    CHECK(list_dir(spool.paths().queue).size() == 2 * kJobs);
    // Nothing is reported before the directory fsync that covers it.
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    CHECK(done.empty());
    gate.open_gate();
    for (int spins = 0; done.size() < kJobs && spins < 10000; ++spins)
        event_base_loop(base.get(), EVLOOP_ONCE);
    REQUIRE(done.size() == kJobs);
    for (const CommitJob& j : done) CHECK(j.result.ok());
    // Two directory fsyncs for twenty messages: the first wave, then everything
    // that queued up behind it.
    CHECK((*gc)->waves() == 2);
    CHECK((*gc)->largest_wave() == kJobs - 1);
    CHECK(list_dir(spool.paths().queue).size() == 2 * kJobs);
    CHECK(list_dir(spool.paths().incoming).empty());
}

TEST_CASE("commit: a failed writeback in the group committer is reported, never committed",
          "[queue][commit]") {
    TempSpool spool;
    GateSys gate;
    gate.open_gate();
    EventBasePtr base(event_base_new());
    REQUIRE(base);
    std::vector<CommitJob> done;
    auto gc = GroupCommitter::create(
        base.get(), spool.paths(), [&](CommitJob&& j) { done.push_back(std::move(j)); }, gate);
    REQUIRE(gc.ok());
    auto t = Transaction::begin(spool.paths(), begin_envelope(), {}, gate);
    REQUIRE(t.ok());
    t->add_recipient(rcpt("bob@example.test"));
    t->add_data(kBody, rc());
    auto job = t->finish(rc(), 0);
    REQUIRE(job.ok());
    gate.fail_writeback();
    (*gc)->submit(std::move(job).value());
    for (int spins = 0; done.empty() && spins < 10000; ++spins)
        event_base_loop(base.get(), EVLOOP_ONCE);
    REQUIRE(done.size() == 1);
    REQUIRE_FALSE(done[0].result.ok());
    Refusal r = io_refusal(done[0].result.error());
    CHECK(r.temporary);
    CHECK(r.text.rfind("4.3.1", 0) == 0);
    CHECK(list_dir(spool.paths().incoming).empty());
    CHECK(list_dir(spool.paths().queue).empty());
}

TEST_CASE("commit: stopping the committer finishes what was submitted, reporting nothing",
          "[queue][commit]") {
    TempSpool spool;
    EventBasePtr base(event_base_new());
    size_t reported = 0;
    {
        auto gc =
            GroupCommitter::create(base.get(), spool.paths(), [&](CommitJob&&) { ++reported; });
        REQUIRE(gc.ok());
        for (int i = 0; i < 5; ++i) {
            auto t = Transaction::begin(spool.paths(), begin_envelope(), {});
            REQUIRE(t.ok());
            t->add_recipient(rcpt("bob@example.test"));
            auto job = t->finish(rc(), 0);
            REQUIRE(job.ok());
            (*gc)->submit(std::move(job).value());
        }
    }  // destroyed without running the loop
    CHECK(reported == 0);
    CHECK(list_dir(spool.paths().incoming).empty());
    // Every message is complete, as after a crash past its commit.
    CHECK(list_dir(spool.paths().queue).size() == 10);
}
