// sendmail(1)'s command line, its message reader (the lone-dot rule with and
// without -i, LF → CRLF, the size limit) fed whole and one byte at a time,
// and the hand-over: enqueue frames, a fake queue-manager, the maildrop
// record and the postdrop runner.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <poll.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/ipc/channel.hpp"
#include "common/ipc/queue_msgs.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/maildrop.hpp"
#include "tools/mail_input.hpp"
#include "tools/submit.hpp"

using namespace pbx;
using namespace pbx::mail;
using std::string;
using std::string_view;

namespace {

Result<Options, UsageError> parse(std::initializer_list<string_view> args,
                                  Mode mode = Mode::Deliver) {
    std::vector<string_view> v(args);
    return parse_args(v, mode);
}

}  // namespace

// ---------------------------------------------------------------- arguments

TEST_CASE("sendmail args: what cron, mailx and scripts pass", "[sendmail][args]") {
    SECTION("recipients only") {
        auto o = parse({"alice", "bob@example.org"});
        REQUIRE(o.ok());
        CHECK(o->mode == Mode::Deliver);
        CHECK(o->recipients == std::vector<string>{"alice", "bob@example.org"});
        CHECK(o->dot_ends_input);
        CHECK_FALSE(o->extract_recipients);
        CHECK_FALSE(o->sender.has_value());
    }
    SECTION("cron: -FCronDaemon -i -B8BITMIME -oem root") {
        auto o = parse({"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"});
        REQUIRE(o.ok());
        CHECK(o->full_name == "CronDaemon");
        CHECK_FALSE(o->dot_ends_input);
        CHECK(o->body == "8BITMIME");
        CHECK(o->ignored == std::vector<string>{"-oem"});
        CHECK(o->recipients == std::vector<string>{"root"});
    }
    SECTION("mailx: -oi -- rcpt; a recipient after -- may start with '-'") {
        auto o = parse({"-oi", "--", "-odd@example.org"});
        REQUIRE(o.ok());
        CHECK_FALSE(o->dot_ends_input);
        CHECK(o->recipients == std::vector<string>{"-odd@example.org"});
    }
    SECTION("clustered flags and attached or separate values") {
        auto o = parse({"-ti", "-f", "<me@example.org>", "-F", "Me Myself", "x@y"});
        REQUIRE(o.ok());
        CHECK(o->extract_recipients);
        CHECK_FALSE(o->dot_ends_input);
        CHECK(o->sender == "me@example.org");
        CHECK(o->full_name == "Me Myself");
        auto p = parse({"-tfme@example.org"});
        REQUIRE(p.ok());
        CHECK(p->extract_recipients);
        CHECK(p->sender == "me@example.org");
    }
    SECTION("-r is -f; <> and '' are the null sender") {
        auto o = parse({"-r", "<>", "x"});
        REQUIRE(o.ok());
        CHECK(o->sender == "");
        auto p = parse({"-f", "", "x"});
        REQUIRE(p.ok());
        CHECK(p->sender == "");
    }
    SECTION("options stop at the first operand (no permutation)") {
        auto o = parse({"root", "-t"});
        REQUIRE(o.ok());
        CHECK_FALSE(o->extract_recipients);
        CHECK(o->recipients == std::vector<string>{"root", "-t"});
    }
    SECTION("DSN: -N -R -V") {
        auto o = parse({"-N", "success,DELAY", "-R", "hdrs", "-V", "env-1", "x"});
        REQUIRE(o.ok());
        CHECK(o->notify == (spool::kNotifySuccess | spool::kNotifyDelay));
        CHECK(o->ret == "HDRS");
        CHECK(o->envid == "env-1");
        auto n = parse({"-Nnever", "x"});
        REQUIRE(n.ok());
        CHECK(n->notify == spool::kNotifyNever);
    }
    SECTION("modes") {
        CHECK(parse({"-bs"})->mode == Mode::Smtp);
        CHECK(parse({"-bp"})->mode == Mode::ListQueue);
        CHECK(parse({"-bi"})->mode == Mode::Aliases);
        CHECK(parse({"-I"})->mode == Mode::Aliases);
        CHECK(parse({"-q"})->mode == Mode::Flush);
        CHECK(parse({"-bm", "x"})->mode == Mode::Deliver);
        CHECK(parse({}, Mode::ListQueue)->mode == Mode::ListQueue);
        CHECK(parse({"-v"}, Mode::Aliases)->verbose);
    }
    SECTION("ignored options are accepted") {
        auto o = parse({"-odb", "-oQ/tmp", "-h", "5", "-L", "label", "-X", "/tmp/log", "-U", "-G",
                        "-n", "-m", "-O", "DeliveryMode=b", "-Am", "x"});
        REQUIRE(o.ok());
        CHECK(o->recipients == std::vector<string>{"x"});
        CHECK(o->ignored.size() == 11);
    }
    SECTION("-C names the configuration") {
        auto o = parse({"-C", "/etc/other.conf", "-bp"});
        REQUIRE(o.ok());
        CHECK(o->config_path == "/etc/other.conf");
    }
}

TEST_CASE("sendmail args: refused with a reason", "[sendmail][args]") {
    struct Case {
        std::vector<string_view> args;
        Mode mode;
        string_view says;
    };
    const Case cases[] = {
        {{}, Mode::Deliver, "no recipients"},
        {{"-i"}, Mode::Deliver, "no recipients"},
        {{"-Z", "x"}, Mode::Deliver, "unknown option -Z"},
        {{"-f"}, Mode::Deliver, "needs a value"},
        {{"-f", "a b@c", "x"}, Mode::Deliver, "bare address"},
        {{"-f", "a\n@c", "x"}, Mode::Deliver, "line break"},
        {{"-F", "a\rb", "x"}, Mode::Deliver, "line break"},
        {{"-bd"}, Mode::Deliver, "not supported"},
        {{"-bv", "x"}, Mode::Deliver, "not supported"},
        {{"-q30m"}, Mode::Deliver, "interval is not supported"},
        {{"-B", "binary", "x"}, Mode::Deliver, "7BIT or 8BITMIME"},
        {{"-N", "sometimes", "x"}, Mode::Deliver, "-N takes"},
        {{"-N", "success,never", "x"}, Mode::Deliver, "-N takes"},
        {{"-R", "all", "x"}, Mode::Deliver, "full or hdrs"},
        {{"-V", "has space", "x"}, Mode::Deliver, "printable"},
        {{"-bp", "x"}, Mode::Deliver, "no recipient arguments"},
        {{"root"}, Mode::ListQueue, "no recipient arguments"},
        {{"-bs", "x"}, Mode::Deliver, "no recipient arguments"},
    };
    for (const auto& c : cases) {
        auto o = parse_args(c.args, c.mode);
        INFO("case: " << (c.args.empty() ? string("(none)") : string(c.args[0])));
        REQUIRE_FALSE(o.ok());
        CHECK_THAT(o.error().message, Catch::Contains(string(c.says)));
    }
}

TEST_CASE("sendmail args: limits", "[sendmail][args]") {
    ArgLimits lim;
    lim.max_recipient_args = 2;
    lim.max_sender = 8;
    lim.max_full_name = 4;
    std::vector<string_view> three = {"a", "b", "c"};
    CHECK_FALSE(parse_args(three, Mode::Deliver, lim).ok());
    std::vector<string_view> sender = {"-f", "123456789", "a"};
    CHECK_FALSE(parse_args(sender, Mode::Deliver, lim).ok());
    std::vector<string_view> name = {"-F", "12345", "a"};
    CHECK_FALSE(parse_args(name, Mode::Deliver, lim).ok());
    string envid(101, 'e');
    std::vector<string_view> v = {"-V", envid, "a"};
    CHECK_FALSE(parse_args(v, Mode::Deliver).ok());
}

TEST_CASE("sendmail: the program name picks the mode", "[sendmail][args]") {
    CHECK(mode_for_program("sendmail") == Mode::Deliver);
    CHECK(mode_for_program("/usr/sbin/sendmail") == Mode::Deliver);
    CHECK(mode_for_program("/usr/bin/mailq") == Mode::ListQueue);
    CHECK(mode_for_program("newaliases") == Mode::Aliases);
    CHECK(mode_for_program("") == Mode::Deliver);
    CHECK(mode_for_program("mailq/") == Mode::Deliver);
}

// ------------------------------------------------------------- message input

namespace {

struct ReadCase {
    string_view name;
    string input;
    bool dot_ends;
    string expect;
};

const std::vector<ReadCase>& read_cases() {
    static const std::vector<ReadCase> cases = {
        {"LF to CRLF", "a\nb\n", true, "a\r\nb\r\n"},
        {"CRLF kept", "a\r\nb\r\n", true, "a\r\nb\r\n"},
        {"mixed", "a\r\nb\nc\r\n", true, "a\r\nb\r\nc\r\n"},
        {"bare CR kept", "a\rb\n", true, "a\rb\r\n"},
        {"CR CR LF", "a\r\r\n", true, "a\r\r\n"},
        {"last line without LF", "a\nb", true, "a\r\nb\r\n"},
        {"empty input", "", true, ""},
        {"lone dot ends", "a\n.\nafter\n", true, "a\r\n"},
        {"lone dot CRLF ends", "a\r\n.\r\nafter\r\n", true, "a\r\n"},
        {"dot first line", ".\nafter\n", true, ""},
        {"final dot without LF", "a\n.", true, "a\r\n"},
        {"dot with text is data", "a\n.b\n..\n", true, "a\r\n.b\r\n..\r\n"},
        {"dot and space is data", "a\n. \n", true, "a\r\n. \r\n"},
        {"dot with CR CR is data", "a\n.\r\r\n", true, "a\r\n.\r\r\n"},
        {"-i: lone dot is data", "a\n.\nafter\n", false, "a\r\n.\r\nafter\r\n"},
        {"-i: final dot kept", "a\n.", false, "a\r\n.\r\n"},
        {"8-bit", "\xc3\xa9t\xc3\xa9\n", true, "\xc3\xa9t\xc3\xa9\r\n"},
        {"NUL passes", string("a\0b\n", 4), true, string("a\0b\r\n", 5)},
    };
    return cases;
}

MessageReader run_reader(const ReadCase& c, bool byte_by_byte, uint64_t max = 1 << 20) {
    MessageReader r(c.dot_ends, max);
    if (byte_by_byte) {
        for (char ch : c.input) r.feed(string_view(&ch, 1));
    } else {
        r.feed(c.input);
    }
    r.finish();
    return r;
}

}  // namespace

TEST_CASE("sendmail input: dot rule and line ends, whole and byte by byte", "[sendmail][input]") {
    for (const auto& c : read_cases()) {
        for (bool trickle : {false, true}) {
            INFO(c.name << (trickle ? " (byte by byte)" : " (whole)"));
            MessageReader r = run_reader(c, trickle);
            CHECK(r.state() == MessageReader::State::Done);
            CHECK(r.message() == c.expect);
        }
    }
}

TEST_CASE("sendmail input: the dot line stops reading", "[sendmail][input]") {
    MessageReader r(true, 1000);
    CHECK(r.feed("a\n.\n") == MessageReader::State::Done);
    CHECK(r.feed("more\n") == MessageReader::State::Done);
    CHECK(r.finish() == MessageReader::State::Done);
    CHECK(r.message() == "a\r\n");
}

TEST_CASE("sendmail input: the size limit counts converted octets", "[sendmail][input]") {
    // "ab\n" is 4 octets once converted.
    for (bool trickle : {false, true}) {
        ReadCase fits{"fits", "ab\n", true, "ab\r\n"};
        CHECK(run_reader(fits, trickle, 4).state() == MessageReader::State::Done);
        MessageReader big = run_reader(fits, trickle, 3);
        CHECK(big.state() == MessageReader::State::TooLarge);
        CHECK(big.message().empty());
        ReadCase tail{"no LF", "abcd", true, ""};
        CHECK(run_reader(tail, trickle, 5).state() == MessageReader::State::TooLarge);
    }
    MessageReader r(true, 2);
    CHECK(r.feed("abc") == MessageReader::State::TooLarge);
    CHECK(r.feed("\n.\n") == MessageReader::State::TooLarge);
}

TEST_CASE("sendmail input: eight_bit", "[sendmail][input]") {
    MessageReader a(true, 100), b(true, 100);
    a.feed("plain\n");
    b.feed("caf\xc3\xa9\n");
    CHECK_FALSE(a.eight_bit());
    CHECK(b.eight_bit());
}

TEST_CASE("sendmail -bs: CrlfFilter keeps state across reads", "[sendmail][input]") {
    const string in = "EHLO x\nMAIL FROM:<a@b>\r\nDATA\r\n.\n";
    const string want = "EHLO x\r\nMAIL FROM:<a@b>\r\nDATA\r\n.\r\n";
    CrlfFilter whole;
    CHECK(whole.convert(in) == want);
    CrlfFilter trickle;
    string out;
    for (char c : in) out += trickle.convert(string_view(&c, 1));
    CHECK(out == want);
}

// ---------------------------------------------------------------- hand-over

TEST_CASE("sendmail: exit codes for queue-manager refusals", "[sendmail][submit]") {
    CHECK(exit_code_for_refusal(true, "4.3.0 disk full") == kExTempFail);
    CHECK(exit_code_for_refusal(false, "5.1.3 bad address") == kExNoUser);
    CHECK(exit_code_for_refusal(false, "5.3.4 too big") == kExDataErr);
    CHECK(exit_code_for_refusal(false, "5.7.1 alice may not use the sender <x>") == kExNoPerm);
    CHECK(exit_code_for_refusal(false, "5.5.4 unknown origin") == kExUnavailable);
    CHECK(exit_code_for_refusal(false, "") == kExUnavailable);
}

TEST_CASE("sendmail: begin and rcpt frames", "[sendmail][submit]") {
    Submission s;
    s.sender = "alice";
    s.ret = "HDRS";
    s.envid = "e1";
    s.body = "8BITMIME";
    s.smtputf8 = true;
    s.message = "x\r\n";
    ipc::Message b = make_begin(s);
    CHECK(b.get_str("origin") == "sendmail");
    CHECK(b.get_str("sender") == "alice");
    CHECK(b.get_str("protocol") == "local");
    CHECK(b.get_str("ret") == "HDRS");
    CHECK(b.get_str("envid") == "e1");
    CHECK(b.get_str("body") == "8BITMIME");
    CHECK(b.get_u64("smtputf8") == 1u);
    CHECK(b.get_u64("size_declared") == 3u);
    // Nothing that could name a uid or a client travels.
    CHECK_FALSE(b.has("client_address"));
    CHECK_FALSE(b.has("auth_user"));

    Submission plain;
    ipc::Message p = make_begin(plain);
    CHECK_FALSE(p.has("ret"));
    CHECK_FALSE(p.has("envid"));
    CHECK_FALSE(p.has("smtputf8"));

    ipc::Message r = make_rcpt(Recipient{"bob@example.org", spool::kNotifyFailure, "rfc822;b@x"});
    CHECK(r.get_str("address") == "bob@example.org");
    CHECK(r.get_u64("notify") == static_cast<uint64_t>(spool::kNotifyFailure));
    CHECK(r.get_str("orcpt") == "rfc822;b@x");
    ipc::Message r2 = make_rcpt(Recipient{"c@d", 0, ""});
    CHECK_FALSE(r2.has("notify"));
    CHECK_FALSE(r2.has("orcpt"));
}

namespace {

namespace fs = std::filesystem;

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-sendmail-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// A one-connection fake queue-manager: answers `reply` to the transaction
// (or admin request) and records the frames it got.
struct FakeQueueManager {
    std::vector<string> got;  // message names, "data" with its bytes
    string data;
    std::thread thread;
    UniqueFd listener;

    FakeQueueManager(const string& path, std::function<ipc::Message()> reply,
                     bool hang_up_after_commit = false) {
        auto l = ipc::listen_unix(path, 0600);
        REQUIRE(l.ok());
        listener = std::move(*l);
        thread = std::thread([this, reply, hang_up_after_commit] {
            pollfd p{listener.get(), POLLIN, 0};
            if (::poll(&p, 1, 10000) != 1) return;
            UniqueFd c(::accept(listener.get(), nullptr, nullptr));
            if (!c) return;
            if (!ipc::handshake(c.get(), ipc::queue::kProtocol, std::chrono::seconds(10))) return;
            for (;;) {
                auto m = ipc::recv_frame(c.get(), ipc::queue::kProtocol, std::chrono::seconds(10));
                if (!m) return;
                got.emplace_back(m->name());
                if (m->name() == "data") data += *m->get_bytes("bytes");
                if (m->name() == "commit" || m->name() == "admin") {
                    if (hang_up_after_commit) return;
                    (void)ipc::send_frame(c.get(), reply(), std::chrono::seconds(10));
                    return;
                }
            }
        });
    }
    ~FakeQueueManager() {
        if (thread.joinable()) thread.join();
    }
};

Submission sample_submission() {
    Submission s;
    s.sender = "alice";
    s.recipients = {{"bob@example.org", 0, ""}, {"carol", 0, ""}};
    s.body = "7BIT";
    // Larger than one data chunk, to see chunking.
    s.message = "Subject: x\r\n\r\n" + string(ipc::queue::kMaxChunk + 10, 'a') + "\r\n";
    return s;
}

}  // namespace

TEST_CASE("sendmail: a transaction with a fake queue-manager", "[sendmail][submit]") {
    TempDir dir;
    string sock = (dir.path / "enqueue.sock").string();
    Submission s = sample_submission();

    SECTION("queued") {
        FakeQueueManager qm(sock, [] {
            ipc::Message m = ipc::Message::named(ipc::queue::kProtocol, "queued");
            m.set_str("queue_id", "0006aaaaaaaaaaaa0001");
            return m;
        });
        SubmitResult r = submit_to_queue(sock, s);
        qm.thread.join();
        CHECK(r.outcome == Outcome::Queued);
        CHECK(r.text == "0006aaaaaaaaaaaa0001");
        CHECK(qm.got == std::vector<string>{"begin", "rcpt", "rcpt", "data", "data", "commit"});
        CHECK(qm.data == s.message);
    }
    SECTION("refused") {
        FakeQueueManager qm(sock, [] {
            ipc::Message m = ipc::Message::named(ipc::queue::kProtocol, "failed");
            m.set_u64("temporary", 0);
            m.set_str("text", "5.7.1 no");
            return m;
        });
        SubmitResult r = submit_to_queue(sock, s);
        CHECK(r.outcome == Outcome::PermFail);
        CHECK(r.text == "5.7.1 no");
    }
    SECTION("no reply after commit: unreachable, so postdrop takes over") {
        FakeQueueManager qm(
            sock, [] { return ipc::Message::named(ipc::queue::kProtocol, "queued"); }, true);
        SubmitResult r = submit_to_queue(sock, s);
        CHECK(r.outcome == Outcome::Unreachable);
    }
    SECTION("no socket") {
        SubmitResult r = submit_to_queue(sock, s);
        CHECK(r.outcome == Outcome::Unreachable);
        AdminResult a = admin_request(sock, "list");
        CHECK_FALSE(a.reachable);
    }
    SECTION("a socket nobody listens on") {
        {
            auto l = ipc::listen_unix(sock, 0600);
            REQUIRE(l.ok());
        }  // closed: connect() is refused
        CHECK(submit_to_queue(sock, s).outcome == Outcome::Unreachable);
    }
    SECTION("admin list") {
        FakeQueueManager qm(sock, [] {
            ipc::Message m = ipc::Message::named(ipc::queue::kProtocol, "admin_reply");
            m.set_u64("ok", 1);
            m.set_str("text", "Mail queue is empty\n");
            return m;
        });
        AdminResult a = admin_request(sock, "list");
        CHECK(a.reachable);
        CHECK(a.ok);
        CHECK(a.text == "Mail queue is empty\n");
        qm.thread.join();
        CHECK(qm.got == std::vector<string>{"admin"});
    }
}

TEST_CASE("sendmail: the maildrop record and postdrop's rewrite", "[sendmail][drop]") {
    Submission s = sample_submission();
    s.message = "Subject: x\r\n\r\nbody\r\n";
    auto rec = make_maildrop_input(s, 4242, 1700000000, 1 << 20);
    REQUIRE(rec.ok());
    auto d = spool::read_maildrop(*rec);
    REQUIRE(d.ok());
    CHECK(d->uid == 4242u);
    CHECK(d->sender == "alice");
    CHECK(d->recipients == std::vector<string>{"bob@example.org", "carol"});
    CHECK(d->message == s.message);

    // postdrop keeps the message and recipients but not the caller's uid or time.
    auto again = rewrite_maildrop_input(*rec, 1000, 1800000000, 1 << 20);
    REQUIRE(again.ok());
    auto d2 = spool::read_maildrop(*again);
    REQUIRE(d2.ok());
    CHECK(d2->uid == 1000u);
    CHECK(d2->time == spool::Seconds(std::chrono::seconds(1800000000)));
    CHECK(d2->recipients == d->recipients);
    CHECK(d2->message == s.message);

    // Anything that is not a strict record is refused.
    CHECK_FALSE(rewrite_maildrop_input("", 1000, 0, 1 << 20).ok());
    CHECK_FALSE(rewrite_maildrop_input(*rec + "x", 1000, 0, 1 << 20).ok());
    CHECK_FALSE(rewrite_maildrop_input(rec->substr(0, rec->size() - 5), 1000, 0, 1 << 20).ok());
    // Over the size limit.
    CHECK_FALSE(rewrite_maildrop_input(*rec, 1000, 0, 4).ok());
    CHECK_FALSE(make_maildrop_input(s, 1, 0, 4).ok());

    CHECK(effective_size_limit(0) == kHardMessageCeiling);
    CHECK(effective_size_limit(1000) == 1000u);
}

TEST_CASE("sendmail: run_postdrop", "[sendmail][drop]") {
    TempDir dir;
    string out = (dir.path / "out").string();
    string args_out = (dir.path / "args").string();
    string script = (dir.path / "fake-postdrop").string();
    {
        std::ofstream f(script);
        // The environment must be empty: PATH is unset, so only absolute paths.
        f << "#!/bin/sh\n"
          << "/bin/cat > " << out
          << "\n"
          // (the shell itself exports PWD)
          << "echo \"$# $1 $2 env=$(/usr/bin/env | /bin/grep -vc '^PWD=')\" > " << args_out << "\n"
          << "exit ${EXIT_WITH:-3}\n";
    }
    REQUIRE(::chmod(script.c_str(), 0755) == 0);
    const string input = "pretend record\n" + string(200000, 'x');
    DropResult r = run_postdrop(script, "/etc/some.conf", input);
    CHECK(r.error.empty());
    CHECK(r.exit_status == 3);
    std::ifstream got(out, std::ios::binary);
    string text((std::istreambuf_iterator<char>(got)), std::istreambuf_iterator<char>());
    CHECK(text == input);
    std::ifstream a(args_out);
    string line;
    std::getline(a, line);
    CHECK(line == "2 -c /etc/some.conf env=0");

    DropResult missing = run_postdrop((dir.path / "nope").string(), "", "x");
    CHECK(missing.exit_status == DropResult::kExitNotRun);
    CHECK_THAT(missing.error, Catch::Contains("No such file"));

    // A helper that exits at once without reading: our write fails with
    // EPIPE (not SIGPIPE), and exit status 0 is then not believed.
    string quick = (dir.path / "quick").string();
    {
        std::ofstream f(quick);
        f << "#!/bin/sh\nexit 0\n";
    }
    REQUIRE(::chmod(quick.c_str(), 0755) == 0);
    DropResult q = run_postdrop(quick, "", string(4 << 20, 'x'));
    CHECK(q.exit_status == DropResult::kExitNotRun);
    CHECK_THAT(q.error, Catch::Contains("Broken pipe"));
}
