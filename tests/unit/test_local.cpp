// local-delivery's worker side: the pipe runner (environment, stdin, time
// and output limits, exit codes), file deliveries, ~/.forward reading and its
// ownership rules, the child → parent report format, and the pooled
// worker's channel (one job after another on one socketpair). Real processes and
// temporary files; no privileges needed.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/ipc/channel.hpp"
#include "common/mailbox/headers.hpp"
#include "common/unique_fd.hpp"
#include "local-delivery/dotforward.hpp"
#include "local-delivery/pipe.hpp"
#include "local-delivery/pool.hpp"
#include "local-delivery/worker.hpp"

using namespace pbx::local;
using namespace std::chrono_literals;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-local-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir() { (void)!std::system(("rm -rf '" + path + "'").c_str()); }
};

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void spit(const std::string& path, std::string_view text, mode_t mode = 0644) {
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f << text;
    }
    REQUIRE(chmod(path.c_str(), mode) == 0);
}

// An unlinked temporary file holding `text`, like the queue-manager's fd.
pbx::UniqueFd message_fd(std::string_view text) {
    char tmpl[] = "/tmp/pbx-msg-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    unlink(tmpl);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    return pbx::UniqueFd(fd);
}

PipeSpec spec_of(std::string command) {
    PipeSpec s;
    s.command = std::move(command);
    s.env = {"PATH=/usr/bin:/bin"};
    s.cwd = "/";
    s.time_limit = 10s;
    return s;
}

constexpr std::string_view kMessage =
    "From: <a@example.net>\r\nSubject: hi\r\n\r\nFrom the body\r\nline two\r\n";

}  // namespace

TEST_CASE("pipe: environment", "[local][pipe]") {
    auto env =
        pipe_environment({"s@example.net", "sam+list@example.org", "sam", "/home/sam", "+-"});
    std::vector<std::string> expect{
        "SENDER=s@example.net", "RECIPIENT=sam+list@example.org",
        "LOCAL=sam+list",       "EXTENSION=list",
        "DOMAIN=example.org",   "USER=sam",
        "LOGNAME=sam",          "HOME=/home/sam",
        "SHELL=/bin/sh",        "PATH=/usr/bin:/bin",
    };
    CHECK(env == expect);
    auto bare = pipe_environment({"", "postmaster", "nobody", "/", ""});
    CHECK(bare[0] == "SENDER=");
    CHECK(bare[2] == "LOCAL=postmaster");
    CHECK(bare[3] == "EXTENSION=");
    CHECK(bare[4] == "DOMAIN=");
    // No extension without a delimiter, nor for a leading one.
    CHECK(pipe_environment({"", "+x@d", "u", "/", "+"})[3] == "EXTENSION=");
}

TEST_CASE("pipe: the command sees exactly the clean environment and the message", "[local][pipe]") {
    TempDir dir;
    auto s = spec_of("env | sort > " + dir.path + "/env; cat > " + dir.path + "/in; pwd > " +
                     dir.path + "/pwd");
    s.env = pipe_environment({"s@example.net", "r@example.org", "me", dir.path, "+"});
    s.cwd = dir.path;
    s.input = "line one\nline two\n";
    setenv("PBX_SHOULD_NOT_LEAK", "1", 1);
    PipeResult r = run_pipe(s);
    unsetenv("PBX_SHOULD_NOT_LEAK");
    CHECK(r.end == PipeResult::End::Exited);
    CHECK(r.code == 0);
    CHECK(slurp(dir.path + "/in") == "line one\nline two\n");
    CHECK(slurp(dir.path + "/pwd") == dir.path + "\n");
    std::string env = slurp(dir.path + "/env");
    CHECK(env.find("PBX_SHOULD_NOT_LEAK") == std::string::npos);
    CHECK(env.find("SENDER=s@example.net\n") != std::string::npos);
    CHECK(env.find("RECIPIENT=r@example.org\n") != std::string::npos);
    CHECK(env.find("HOME=" + dir.path + "\n") != std::string::npos);
    CHECK(env.find("PATH=/usr/bin:/bin\n") != std::string::npos);
    CHECK(env.find("SHELL=/bin/sh\n") != std::string::npos);
    // A cwd that cannot be entered falls back to /.
    auto t = spec_of("pwd");
    t.cwd = "/nonexistent/dir";
    CHECK(run_pipe(t).output == "/\n");
}

TEST_CASE("pipe: exit codes, signals and verdicts", "[local][pipe]") {
    struct Case {
        const char* command;
        Verdict verdict;
        const char* dsn;
        const char* text;
    };
    const Case cases[] = {
        {"cat >/dev/null", Verdict::Sent, "2.0.0", "delivered to command"},
        {"echo busy; exit 75", Verdict::Deferred, "4.3.0",
         "command deferred delivery (exit 75): busy"},
        {"echo 'no such list' >&2; exit 1", Verdict::Failed, "5.3.0",
         "command failed with exit status 1: no such list"},
        {"exit 67", Verdict::Failed, "5.3.0", "command failed with exit status 67"},
        {"printf 'a\\tb\\n\\033[31mred\\r\\n'; exit 2", Verdict::Failed, "5.3.0",
         "command failed with exit status 2: a b ?[31mred"},
        {"kill -TERM $$", Verdict::Failed, "5.3.0", "command killed by signal 15"},
        {"/nonexistent/program", Verdict::Failed, "5.3.0", nullptr},
    };
    for (const Case& c : cases) {
        INFO(c.command);
        PipeResult r = run_pipe(spec_of(c.command));
        Outcome o = pipe_outcome(r, 10s);
        CHECK(o.verdict == c.verdict);
        CHECK(o.dsn == c.dsn);
        if (c.text) CHECK(o.text == c.text);
    }
    // The command does not have to read its input.
    auto s = spec_of("exit 0");
    s.input = std::string(1 << 20, 'x');
    CHECK(pipe_outcome(run_pipe(s), 10s).verdict == Verdict::Sent);
}

TEST_CASE("pipe: time limit kills the process group", "[local][pipe]") {
    TempDir dir;
    auto s = spec_of("(sleep 30; touch " + dir.path + "/survived) & echo started; sleep 30");
    s.time_limit = 300ms;
    auto start = std::chrono::steady_clock::now();
    PipeResult r = run_pipe(s);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.end == PipeResult::End::TimedOut);
    CHECK(took < 5s);
    Outcome o = pipe_outcome(r, 300ms);
    CHECK(o.verdict == Verdict::Failed);
    CHECK(o.text.find("time limit") != std::string::npos);
    CHECK(o.text.find("started") != std::string::npos);
    // A background process that keeps the pipe open does not hold us up.
    auto bg = spec_of("sleep 30 >/dev/null 2>&1 & echo done");
    start = std::chrono::steady_clock::now();
    PipeResult b = run_pipe(bg);
    CHECK(b.end == PipeResult::End::Exited);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    auto holder = spec_of("sleep 30 & echo done");  // stdout inherited by sleep
    start = std::chrono::steady_clock::now();
    PipeResult h = run_pipe(holder);
    CHECK(h.end == PipeResult::End::Exited);
    CHECK(h.output == "done\n");
    CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("pipe: output limit", "[local][pipe]") {
    auto s = spec_of("head -c 100000 /dev/zero | tr '\\0' y; exit 1");
    s.output_limit = 1000;
    PipeResult r = run_pipe(s);
    CHECK(r.end == PipeResult::End::Exited);
    CHECK(r.code == 1);
    CHECK(r.output == std::string(1000, 'y'));
    Outcome o = pipe_outcome(r, 10s);
    CHECK(o.text.size() < 400);  // the reply shows a bounded piece
    CHECK(one_line("  a \n\n b\x01\xff  ", 100) == "a b??");
    CHECK(one_line(std::string(50, 'z'), 10) == std::string(10, 'z'));
}

TEST_CASE("deliver: a pipe gets the message with Return-Path and Delivered-To, LF ends",
          "[local][pipe]") {
    TempDir dir;
    auto fd = message_fd(kMessage);
    Job job;
    job.kind = JobKind::Pipe;
    job.message_fd = fd.get();
    job.sender = "a@example.net";
    job.rcpt = "list@example.org";
    job.user = "me";
    job.home = dir.path;
    job.command = "cat > in; echo \"$RECIPIENT $SENDER $USER\" > env";
    job.time_limit = 10s;
    Outcome o = deliver(job);
    CHECK(o.verdict == Verdict::Sent);
    CHECK(slurp(dir.path + "/in") ==
          "Return-Path: <a@example.net>\nDelivered-To: list@example.org\n"
          "From: <a@example.net>\nSubject: hi\n\nFrom the body\nline two\n");
    CHECK(slurp(dir.path + "/env") == "list@example.org a@example.net me\n");
    // A loop is caught before the command runs.
    auto looped = message_fd("Delivered-To: list@example.org\r\n\r\nx\r\n");
    job.message_fd = looped.get();
    CHECK(deliver(job).dsn == "5.4.6");
}

TEST_CASE("deliver: file targets append mbox with the usual checks", "[local][file]") {
    TempDir dir;
    auto fd = message_fd(kMessage);
    Job job;
    job.kind = JobKind::File;
    job.message_fd = fd.get();
    job.sender = "a@example.net";
    job.rcpt = "archive@example.org";
    job.path = dir.path + "/archive";
    Outcome o = deliver(job);
    CHECK(o.verdict == Verdict::Sent);
    CHECK(o.text == "delivered to file");
    Outcome again = deliver(job);
    CHECK(again.verdict == Verdict::Sent);
    std::string box = slurp(job.path);
    CHECK(box.starts_with("From a@example.net "));
    CHECK(box.find("\n>From the body\n") != std::string::npos);
    CHECK(box.find("\nFrom a@example.net ", 10) != std::string::npos);
    struct stat st {};
    REQUIRE(stat(job.path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // A symlink is refused; a directory path ending in '/' is a Maildir.
    REQUIRE(symlink(job.path.c_str(), (dir.path + "/link").c_str()) == 0);
    job.path = dir.path + "/link";
    CHECK(deliver(job).verdict != Verdict::Sent);
    job.path = dir.path + "/md/";
    CHECK(deliver(job).verdict == Verdict::Sent);
    CHECK(access((dir.path + "/md/new").c_str(), F_OK) == 0);
}

TEST_CASE(".forward: ownership and mode rules", "[local][forward]") {
    TempDir dir;
    std::string f = dir.path + "/.forward";
    uid_t me = geteuid();
    SECTION("absent: nothing, no note") {
        auto d = read_dotforward(dir.path, me, 65536);
        CHECK(d.state == DotForward::State::None);
        CHECK(d.note.empty());
        CHECK(read_dotforward("/nonexistent/home", me, 65536).state == DotForward::State::None);
    }
    SECTION("the user's, not writable by others: used") {
        spit(f, "\\me, \"|/usr/bin/vacation me\"\n", 0644);
        auto d = read_dotforward(dir.path, me, 65536);
        CHECK(d.state == DotForward::State::Text);
        CHECK(d.text == "\\me, \"|/usr/bin/vacation me\"\n");
        spit(f, "x\n", 0600);
        CHECK(read_dotforward(dir.path + "/", me, 65536).state == DotForward::State::Text);
    }
    SECTION("group- or world-writable: ignored with a note") {
        for (mode_t m : {0664, 0646, 0666, 0620}) {
            spit(f, "x@example.net\n", m);
            auto d = read_dotforward(dir.path, me, 65536);
            CHECK(d.state == DotForward::State::None);
            CHECK(d.note.find("writable by group or others") != std::string::npos);
        }
    }
    SECTION("someone else's: ignored with a note") {
        spit(f, "x@example.net\n", 0644);
        auto d = read_dotforward(dir.path, me + 1, 65536);
        CHECK(d.state == DotForward::State::None);
        CHECK(d.note.find("belongs to uid") != std::string::npos);
    }
    SECTION("a symlink, a directory, too large, empty") {
        spit(dir.path + "/real", "x@example.net\n", 0644);
        REQUIRE(symlink((dir.path + "/real").c_str(), f.c_str()) == 0);
        CHECK(read_dotforward(dir.path, me, 65536).note.find("symbolic link") != std::string::npos);
        unlink(f.c_str());
        REQUIRE(mkdir(f.c_str(), 0755) == 0);
        CHECK(read_dotforward(dir.path, me, 65536).note.find("not a regular") != std::string::npos);
        rmdir(f.c_str());
        spit(f, std::string(100, 'a'), 0644);
        CHECK(read_dotforward(dir.path, me, 50).note.find("larger") != std::string::npos);
        spit(f, " \n\n", 0644);
        auto d = read_dotforward(dir.path, me, 65536);
        CHECK(d.state == DotForward::State::None);
        CHECK(d.note.empty());
    }
}

TEST_CASE("run_job: .forward first, then the mailbox", "[local][forward]") {
    TempDir dir;
    auto fd = message_fd(kMessage);
    Job job;
    job.kind = JobKind::Mailbox;
    job.message_fd = fd.get();
    job.sender = "a@example.net";
    job.rcpt = "me@example.org";
    job.mailbox = dir.path + "/mbox";
    job.format_maildir = false;
    job.dotforward = true;
    job.home = dir.path;
    // No .forward: delivered.
    auto r = parse_report(run_job(job));
    REQUIRE(r);
    REQUIRE(r->outcome);
    CHECK(r->outcome->verdict == Verdict::Sent);
    // A usable one comes back to the parent whole.
    spit(dir.path + "/.forward", "\\me\nother@example.net\n", 0600);
    r = parse_report(run_job(job));
    REQUIRE(r);
    CHECK_FALSE(r->outcome);
    REQUIRE(r->dotforward);
    CHECK(*r->dotforward == "\\me\nother@example.net\n");
    // An unsafe one: a note, and the mailbox.
    chmod((dir.path + "/.forward").c_str(), 0666);
    r = parse_report(run_job(job));
    REQUIRE(r);
    REQUIRE(r->notes.size() == 1);
    CHECK(r->notes[0].find("writable") != std::string::npos);
    REQUIRE(r->outcome);
    CHECK(r->outcome->verdict == Verdict::Sent);
}

TEST_CASE(".forward: what it asks for", "[local][forward]") {
    pbx::auth::ResolverSettings s;
    s.domains = {"example.org", "example.net"};
    s.recipient_delimiter = "+";
    using V = std::vector<std::string>;
    struct Case {
        const char* text;
        bool self;
        V commands, files, forward_to;
    };
    const Case cases[] = {
        {"\\sam\n", true, {}, {}, {}},
        {"sam\n", true, {}, {}, {}},
        {"SAM@Example.NET\n", true, {}, {}, {}},
        {"sam+list@example.org\n", true, {}, {}, {}},
        {"sam@elsewhere.com\n", false, {}, {}, {"sam@elsewhere.com"}},
        {"+sam@example.org\n", false, {}, {}, {"+sam@example.org"}},
        {"samuel\n", false, {}, {}, {"samuel@example.org"}},
        {"\\bob\n", false, {}, {}, {"bob@example.org"}},
        {"# vacation\n\\sam, \"|/usr/bin/vacation sam\"\n",
         true,
         {"/usr/bin/vacation sam"},
         {},
         {}},
        {"/home/sam/archive, bob@x.net, BOB@x.net, carol\n",
         false,
         {},
         {"/home/sam/archive"},
         {"bob@x.net", "carol@example.org"}},
        {"|/usr/bin/procmail\n|/usr/bin/procmail\n",
         false,
         {"/usr/bin/procmail", "/usr/bin/procmail"},
         {},
         {}},
    };
    for (const Case& c : cases) {
        INFO(c.text);
        ForwardPlan p = plan_dotforward(c.text, "sam", "sam@example.org", s, "fallback.test");
        CHECK(p.ignored.empty());
        CHECK(p.self == c.self);
        CHECK(p.commands == c.commands);
        CHECK(p.files == c.files);
        CHECK(p.forward_to == c.forward_to);
    }
    // Bare names get the recipient's domain, or the fallback.
    CHECK(plan_dotforward("bob", "sam", "sam", s, "fallback.test").forward_to ==
          V{"bob@fallback.test"});
    CHECK(plan_dotforward("a, b, \\sam, |x, /y", "sam", "sam@example.net", s, "f").deliveries() ==
          4);
    // Unusable files: ignored as a whole.
    const char* ignored[] = {
        ":include:/etc/list\n",
        "bob, :include:/etc/list\n",
        "|/usr/bin/procmail -f-\n",
        "bad name!\n",
        "\"|unterminated\n",
        "",
        "# nothing\n",
        "x\x01\n",
    };
    for (const char* text : ignored) {
        INFO(text);
        ForwardPlan p = plan_dotforward(text, "sam", "sam@example.org", s, "f");
        CHECK_FALSE(p.ignored.empty());
        CHECK(p.deliveries() == 1);
    }
}

TEST_CASE("line ends for commands and for forwarding", "[local][mailbox]") {
    using pbx::mailbox::to_crlf;
    using pbx::mailbox::to_lf;
    CHECK(to_lf("a\r\nb\r\n") == "a\nb\n");
    CHECK(to_lf("a\rb\n\r") == "a\rb\n\r");
    CHECK(to_crlf("a\nb\r\nc") == "a\r\nb\r\nc");
    CHECK(to_crlf("\n\n") == "\r\n\r\n");
    CHECK(to_crlf(to_lf("x\r\ny\r\n")) == "x\r\ny\r\n");
}

TEST_CASE("child reports: valid and invalid", "[local][report]") {
    CHECK(parse_report("sent 2.0.0 delivered to maildir (mbox)\n"));
    CHECK(parse_report("note a\nnote b\nfailed 5.3.0 x y\n")->notes.size() == 2);
    CHECK(*parse_report("dotforward 3\nabc")->dotforward == "abc");
    CHECK(*parse_report("note n\ndotforward 0\n")->dotforward == "");
    const char* bad[] = {
        "",
        "sent 2.0.0 ok",                   // no newline
        "sent 2.0.0 ok\nsent 2.0.0 ok\n",  // two outcomes
        "sent 5.0.0 ok\n",                 // verdict and code disagree
        "dotforward 4\nabc",               // short
        "dotforward 2\nabc",               // long
        "dotforward x\nabc",
        "dotforward 99999999\n",
        "note only\n",
        "weird 2.0.0 x\n",
    };
    for (const char* b : bad) {
        INFO(b);
        CHECK_FALSE(parse_report(b));
    }
    std::string many;
    for (int i = 0; i < 9; ++i) many += "note x\n";
    CHECK_FALSE(parse_report(many + "sent 2.0.0 ok\n"));
    // Every prefix of a valid report is rejected or accepted without a crash.
    std::string good = "note a\ndotforward 5\nhello";
    for (size_t n = 0; n < good.size(); ++n) CHECK_FALSE(parse_report(good.substr(0, n)));
}

namespace {

size_t count_files(const std::string& dir) {
    size_t n = 0;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] != '.') ++n;
        closedir(d);
    }
    return n;
}

}  // namespace

TEST_CASE("pool: a job survives the trip through a frame", "[local][pool]") {
    auto msg = message_fd(kMessage);
    Job job;
    job.message_fd = msg.get();
    job.sender = "s@example.net";
    job.rcpt = "alice@example.test";
    job.mailbox = "/var/mail/alice";
    job.format_maildir = false;
    job.host = "mx.example.test";
    job.counter = 42;
    job.dotforward = true;
    job.user = "alice";
    job.home = "/home/alice";
    auto m = job_message(job);
    REQUIRE(m);
    REQUIRE(pbx::ipc::encode(*m));
    pbx::UniqueFd fd;
    auto back = job_from_message(*m, fd);
    REQUIRE(back);
    CHECK(fd);
    CHECK(fd.get() != msg.get());  // a duplicate: the frame owns its own fd
    CHECK(back->message_fd == fd.get());
    CHECK(back->kind == JobKind::Mailbox);
    CHECK(back->sender == job.sender);
    CHECK(back->rcpt == job.rcpt);
    CHECK(back->mailbox == job.mailbox);
    CHECK_FALSE(back->format_maildir);
    CHECK(back->host == job.host);
    CHECK(back->counter == 42);
    CHECK(back->dotforward);
    CHECK(back->user == "alice");
    CHECK(back->home == "/home/alice");
    auto report = pbx::ipc::Message::named(kWorkerProtocol, "report");
    report.set_bytes("report", "sent 2.0.0 x\n");
    CHECK_FALSE(job_from_message(report, fd));
}

TEST_CASE("pool: when a batch waits for more jobs (BatchPacer, an injected clock)",
          "[local][pool]") {
    using T = BatchPacer::Clock::time_point;
    const T t0 = T{} + 1000s;
    SECTION("the first batch of a worker, and one after a quiet moment: at once") {
        BatchPacer p(5ms, 20);
        CHECK(p.gather_until(t0) == t0);
        p.batch_done(t0 + 2ms);
        CHECK(p.gather_until(t0 + 7ms) == t0 + 7ms);  // exactly `delay` after: quiet
        CHECK(p.gather_until(t0 + 1s) == t0 + 1s);
    }
    SECTION("jobs that keep coming: the batch waits up to `delay` after its first job") {
        BatchPacer p(5ms, 20);
        p.batch_done(t0);
        CHECK(p.gather_until(t0) == t0 + 5ms);  // already waiting when the last was done
        CHECK(p.gather_until(t0 + 4ms) == t0 + 9ms);
        T until = p.gather_until(t0 + 1ms);
        CHECK(p.keep_gathering(1, t0 + 1ms, until));
        CHECK(p.keep_gathering(19, t0 + 5ms, until));
        CHECK_FALSE(p.keep_gathering(3, t0 + 6ms, until));   // the deadline
        CHECK_FALSE(p.keep_gathering(20, t0 + 2ms, until));  // full: stored at once
        // Each batch's end is what counts: a later quiet moment ends the waits.
        p.batch_done(t0 + 6ms);
        CHECK(p.gather_until(t0 + 8ms) == t0 + 13ms);
        p.batch_done(t0 + 13ms);
        CHECK(p.gather_until(t0 + 50ms) == t0 + 50ms);
    }
    SECTION("delay 0 never waits; a batch holds one job at least") {
        BatchPacer p(0ms, 20);
        p.batch_done(t0);
        CHECK(p.gather_until(t0) == t0);
        CHECK_FALSE(p.keep_gathering(1, t0, p.gather_until(t0)));
        BatchPacer one(5ms, 0);
        CHECK(one.max_batch() == 1);
        one.batch_done(t0);
        CHECK_FALSE(one.keep_gathering(1, t0, one.gather_until(t0)));
    }
}

TEST_CASE("pool: a worker stores one job after another, then ends at EOF", "[local][pool]") {
    // With a batch delay too: each job comes just after the previous batch
    // was answered, so the worker waits for more that never come (the
    // parent here sends one at a time) and then stores the one it has.
    WorkerOptions options;
    options.batch_delay = GENERATE(0ms, 20ms);
    INFO("batch delay " << options.batch_delay.count() << " us");
    TempDir d;
    std::string md = d.path + "/Maildir";
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pbx::UniqueFd parent(sv[0]), child(sv[1]);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(parent.release());
        _exit(serve_worker(child.get(), options) ? 0 : 1);
    }
    child.reset();
    REQUIRE(pbx::ipc::handshake(parent.get(), kWorkerProtocol, 10s).ok());
    for (uint64_t i = 1; i <= 3; ++i) {
        auto msg = message_fd(kMessage);
        Job job;
        job.message_fd = msg.get();
        job.sender = "s@example.net";
        job.rcpt = "alice@example.test";
        job.mailbox = md;  // missing at first: the worker makes it
        job.host = "h";
        job.counter = i;
        auto m = job_message(job);
        REQUIRE(m);
        REQUIRE(pbx::ipc::send_frame(parent.get(), *m, 10s).ok());
        auto r = pbx::ipc::recv_frame(parent.get(), kWorkerProtocol, 10s);
        REQUIRE(r);
        REQUIRE(r->name() == "report");
        auto rep = parse_report(std::string(*r->get_bytes("report")));
        REQUIRE(rep);
        REQUIRE(rep->outcome);
        CHECK(rep->outcome->verdict == Verdict::Sent);
        CHECK(rep->outcome->text == "delivered to maildir");
        CHECK(count_files(md + "/new") == i);
    }
    CHECK(count_files(md + "/tmp") == 0);
    parent.reset();  // EOF between jobs: the worker ends, successfully
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
}

TEST_CASE("pool: a worker that gets something other than a job ends", "[local][pool]") {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pbx::UniqueFd parent(sv[0]), child(sv[1]);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(parent.release());
        _exit(serve_worker(child.get()) ? 0 : 1);
    }
    child.reset();
    REQUIRE(pbx::ipc::handshake(parent.get(), kWorkerProtocol, 10s).ok());
    auto report = pbx::ipc::Message::named(kWorkerProtocol, "report");
    report.set_bytes("report", "sent 2.0.0 x\n");
    REQUIRE(pbx::ipc::send_frame(parent.get(), report, 10s).ok());
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 1);
    // Garbage instead of a frame: the same.
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    parent = pbx::UniqueFd(sv[0]);
    child = pbx::UniqueFd(sv[1]);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(parent.release());
        _exit(serve_worker(child.get()) ? 0 : 1);
    }
    child.reset();
    REQUIRE(pbx::ipc::handshake(parent.get(), kWorkerProtocol, 10s).ok());
    std::string junk = std::string("\0\0\0\x20", 4) + std::string(32, 'x');  // no magic
    REQUIRE(write(parent.get(), junk.data(), junk.size()) == static_cast<ssize_t>(junk.size()));
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 1);
}

TEST_CASE("run_jobs: a batch answers every job in order, each with its own outcome",
          "[local][pool]") {
    TempDir d;
    std::string md = d.path + "/Maildir", other = d.path + "/Other";
    spit(d.path + "/file", "not a directory\n");
    auto msg = message_fd(kMessage);
    auto looped = message_fd("Delivered-To: alice@example.test\r\nSubject: again\r\n\r\nx\r\n");
    auto job = [&](const std::string& mailbox, int fd, uint64_t counter) {
        Job j;
        j.message_fd = fd;
        j.sender = "s@example.net";
        j.rcpt = "alice@example.test";
        j.mailbox = mailbox;
        j.host = "h";
        j.counter = counter;
        return j;
    };
    std::vector<Job> jobs{
        job(md, msg.get(), 1),                        // made, then stored
        job(d.path + "/file/Maildir", msg.get(), 2),  // cannot be made: deferred
        job(md, looped.get(), 3),                     // a loop: failed, nothing stored
        job(other, msg.get(), 4),                     // another Maildir of the batch
        job(md, msg.get(), 5),
    };
    Job mbox = job(d.path + "/mbox", msg.get(), 6);
    mbox.format_maildir = false;
    jobs.push_back(mbox);
    auto reports = run_jobs(jobs);
    REQUIRE(reports.size() == jobs.size());
    std::vector<Verdict> expect{Verdict::Sent, Verdict::Deferred, Verdict::Failed,
                                Verdict::Sent, Verdict::Sent,     Verdict::Sent};
    for (size_t i = 0; i < reports.size(); ++i) {
        INFO(i << ": " << reports[i]);
        auto r = parse_report(reports[i]);
        REQUIRE(r);
        REQUIRE(r->outcome);
        CHECK(r->outcome->verdict == expect[i]);
    }
    CHECK(parse_report(reports[2])->outcome->dsn == "5.4.6");
    CHECK(parse_report(reports[5])->outcome->text == "delivered to mbox");
    CHECK(count_files(md + "/new") == 2);
    CHECK(count_files(other + "/new") == 1);
    CHECK(count_files(md + "/tmp") == 0);
    CHECK(slurp(d.path + "/mbox").find("From the body") != std::string::npos);

    SECTION("a small byte budget commits in several groups, with the same outcomes") {
        auto again = run_jobs(jobs, WorkerLimits{}, 1);
        REQUIRE(again.size() == jobs.size());
        for (size_t i = 0; i < again.size(); ++i) {
            INFO(i << ": " << again[i]);
            CHECK(parse_report(again[i])->outcome->verdict == expect[i]);
        }
        CHECK(count_files(md + "/new") == 4);
    }
}

TEST_CASE("pool: several jobs in flight on one worker, answered in order; one failure alone",
          "[local][pool]") {
    // Without a batch delay, and with one and small batches (the worker
    // stops waiting when a batch is full, and answers every batch in order).
    WorkerOptions options;
    options.batch_delay = GENERATE(0ms, 20ms);
    options.max_batch = options.batch_delay.count() ? 3 : kWorkerMaxBatch;
    INFO("batch delay " << options.batch_delay.count() << " us, max " << options.max_batch);
    TempDir d;
    std::string md = d.path + "/Maildir";
    spit(d.path + "/file", "not a directory\n");
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pbx::UniqueFd parent(sv[0]), child(sv[1]);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(parent.release());
        _exit(serve_worker(child.get(), options) ? 0 : 1);
    }
    child.reset();
    REQUIRE(pbx::ipc::handshake(parent.get(), kWorkerProtocol, 10s).ok());
    // Ten jobs sent without waiting (the worker takes what has arrived as a
    // batch); the fourth cannot be stored.
    constexpr uint64_t kJobs = 10;
    for (uint64_t i = 1; i <= kJobs; ++i) {
        auto msg = message_fd(kMessage);
        Job job;
        job.message_fd = msg.get();
        job.sender = "s@example.net";
        job.rcpt = "alice@example.test";
        job.mailbox = i == 4 ? d.path + "/file/Maildir" : md;
        job.host = "h";
        job.counter = i;
        auto m = job_message(job);
        REQUIRE(m);
        REQUIRE(pbx::ipc::send_frame(parent.get(), *m, 10s).ok());
    }
    for (uint64_t i = 1; i <= kJobs; ++i) {
        INFO(i);
        auto r = pbx::ipc::recv_frame(parent.get(), kWorkerProtocol, 10s);
        REQUIRE(r);
        REQUIRE(r->name() == "report");
        auto rep = parse_report(std::string(*r->get_bytes("report")));
        REQUIRE(rep);
        REQUIRE(rep->outcome);
        CHECK(rep->outcome->verdict == (i == 4 ? Verdict::Deferred : Verdict::Sent));
    }
    CHECK(count_files(md + "/new") == kJobs - 1);
    CHECK(count_files(md + "/tmp") == 0);
    // Every stored file names its own job's counter: none was answered for
    // another.
    for (uint64_t i = 1; i <= kJobs; ++i) {
        bool found = false;
        DIR* dir = opendir((md + "/new").c_str());
        REQUIRE(dir);
        std::string q = "Q" + std::to_string(i) + ".h,";
        while (dirent* e = readdir(dir))
            found = found || std::string(e->d_name).find(q) != std::string::npos;
        closedir(dir);
        CHECK(found == (i != 4));
    }
    parent.reset();
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
}
