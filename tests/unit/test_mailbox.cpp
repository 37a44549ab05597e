// common/mailbox: Maildir names and delivery, mbox format, quoting and
// rollback, the added headers and loop detection.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/mailbox/headers.hpp"
#include "common/mailbox/maildir.hpp"
#include "common/mailbox/mbox.hpp"
#include "common/spool/fake_sys.hpp"

using namespace pbx;
using namespace pbx::mailbox;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-mailbox-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
    return out;
}

}  // namespace

TEST_CASE("maildir host escaping and unique names") {
    struct Case {
        std::string_view host, escaped;
    };
    const Case cases[] = {
        {"mail.example.test", "mail.example.test"},
        {"a/b", "a\\057b"},
        {"a:b", "a\\072b"},
        {"/:", "\\057\\072"},
        {"", ""},
    };
    for (const auto& c : cases) {
        INFO(c.host);
        CHECK(escape_maildir_host(c.host) == c.escaped);
    }
    UniqueParts p{1700000000, 12345, 4242, 7, "mx:1/a", 1234};
    CHECK(maildir_unique_name(p) == "1700000000.M12345P4242Q7.mx\\0721\\057a,S=1234");
    p.virtual_size = 1260;
    CHECK(maildir_unique_name(p) == "1700000000.M12345P4242Q7.mx\\0721\\057a,S=1234,W=1260");
}

TEST_CASE("maildir virtual size (W=): LF counts as CRLF, CRLF stays") {
    CHECK(virtual_size("") == 0);
    CHECK(virtual_size("a") == 1);
    CHECK(virtual_size("\n") == 2);
    CHECK(virtual_size("a\nb\r\nc\n") == 9);
    CHECK(virtual_size("\r\n\r\n") == 4);
    CHECK(virtual_size("a\rb\n") == 5);
}

TEST_CASE("maildir delivery: tmp -> new, mode 0600, never overwrite") {
    TempDir t;
    std::string md = (t.path / "Maildir").string();
    REQUIRE(ensure_maildir(md).ok());
    for (const char* sub : {"", "/cur", "/new", "/tmp"}) {
        struct stat st {};
        REQUIRE(::stat((md + sub).c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0700);
    }
    REQUIRE(ensure_maildir(md + "/").ok());  // existing: fine

    sys::FakeSys s;
    auto r = maildir_deliver(md, "Subject: x\n\nbody\n", "host:1", 1, s);
    REQUIRE(r.ok());
    auto news = files_in(md + "/new");
    REQUIRE(news.size() == 1);
    CHECK(news[0].string() == r->path);
    CHECK(files_in(md + "/tmp").empty());
    CHECK(slurp(news[0]) == "Subject: x\n\nbody\n");
    CHECK(r->path.ends_with("host\\0721,S=17,W=20"));
    struct stat st {};
    REQUIRE(::stat(r->path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    // The commit protocol: write, fsync, link into new/, fsync of new/.
    bool linked = false;
    for (auto& line : s.trace()) linked = linked || line.starts_with("link ");
    CHECK(linked);
    CHECK(s.calls(sys::Op::Fsync) >= 2);

    SECTION("a failed fsync leaves nothing in new/ or tmp/") {
        sys::FakeSys f;
        f.fail(sys::Op::Fsync, EIO);
        auto bad = maildir_deliver(md, "x\n", "h", 2, f);
        REQUIRE(!bad.ok());
        CHECK(files_in(md + "/new").size() == 1);
        CHECK(files_in(md + "/tmp").empty());
    }
    SECTION("no W= for a message without a final line end (POP3 adds a CRLF)") {
        sys::FakeSys f;
        auto r2 = maildir_deliver(md, "Subject: y\n\nno end", "h", 4, f);
        REQUIRE(r2.ok());
        CHECK(r2->path.ends_with(",S=18"));
        CHECK(files_in(md + "/tmp").empty());
    }
    SECTION("ENOSPC is reported with its errno") {
        sys::FakeSys f;
        f.fail(sys::Op::Write, ENOSPC);
        auto bad = maildir_deliver(md, "x\n", "h", 3, f);
        REQUIRE(!bad.ok());
        CHECK(bad.error().sys_errno == ENOSPC);
    }
}

TEST_CASE("maildir batch: one fsync of each new/ for all of its messages") {
    TempDir t;
    std::string a = (t.path / "a").string(), b = (t.path / "b").string();
    REQUIRE(ensure_maildir(a).ok());
    REQUIRE(ensure_maildir(b).ok());
    std::vector<MaildirItem> items{{a, "one\n", "h", 1},
                                   {a + "/", "two\n", "h", 2},
                                   {b, "three\n", "h", 3},
                                   {a, "four\n", "h", 4}};
    sys::FakeSys s;
    MaildirBatchOptions opt;  // no pool: FakeSys counts on one thread
    auto r = maildir_deliver_batch(items, opt, s);
    REQUIRE(r.size() == 4);
    for (size_t i = 0; i < r.size(); ++i) {
        INFO(i);
        REQUIRE(r[i].ok());
        CHECK(slurp(r[i]->path) == items[i].content);
    }
    CHECK(files_in(a + "/new").size() == 3);
    CHECK(files_in(b + "/new").size() == 1);
    CHECK(files_in(a + "/tmp").empty());
    CHECK(files_in(b + "/tmp").empty());
    // Four files, two directories: every file's fsync comes before any link,
    // and the fsyncs of new/ after every link.
    CHECK(s.calls(sys::Op::Fsync) == 6);
    CHECK(s.calls(sys::Op::Link) == 4);
    std::vector<std::string> order;
    for (const auto& line : s.trace())
        if (line.starts_with("fsync") || line.starts_with("link"))
            order.push_back(line.substr(0, 4));
    CHECK(order == std::vector<std::string>{"fsyn", "fsyn", "fsyn", "fsyn", "link", "link", "link",
                                            "link", "fsyn", "fsyn"});
    // Every file's writeback is started, then waited for, before the first
    // fsync (one journal commit for the batch's files).
    CHECK(s.calls(sys::Op::SyncFileRange) == 8);
    std::vector<std::string> first_fsync;
    for (const auto& line : s.trace()) {
        if (line.starts_with("fsync")) break;
        if (line.starts_with("sync_file_range")) first_fsync.push_back(line);
    }
    CHECK(first_fsync.size() == 8);

    SECTION("on threads, with the real syscalls") {
        std::vector<std::string> texts;
        for (int i = 0; i < 12; ++i) texts.push_back("message " + std::to_string(i) + "\n");
        std::vector<MaildirItem> many;
        for (int i = 0; i < 12; ++i)
            many.push_back(
                {i % 3 ? a : b, texts[static_cast<size_t>(i)], "h", static_cast<uint64_t>(10 + i)});
        pbx::spool::ThreadPool pool(4);
        MaildirBatchOptions on_threads;
        on_threads.pool = &pool;
        auto rr = maildir_deliver_batch(many, on_threads);
        REQUIRE(rr.size() == 12);
        for (size_t i = 0; i < rr.size(); ++i) {
            INFO(i);
            REQUIRE(rr[i].ok());
            CHECK(slurp(rr[i]->path) == texts[i]);
        }
        CHECK(files_in(a + "/new").size() == 3 + 8);
        CHECK(files_in(b + "/new").size() == 1 + 4);
    }
}

TEST_CASE("maildir batch: a failure fails its own item, never another's") {
    TempDir t;
    std::string a = (t.path / "a").string(), b = (t.path / "b").string();
    REQUIRE(ensure_maildir(a).ok());
    REQUIRE(ensure_maildir(b).ok());
    MaildirBatchOptions opt;
    std::vector<MaildirItem> items{
        {a, "one\n", "h", 1}, {a, "two\n", "h", 2}, {b, "three\n", "h", 3}};

    SECTION("a failed write or file fsync: that item only, nothing of it left") {
        for (sys::Op op : {sys::Op::Write, sys::Op::Fsync}) {
            INFO(sys::op_name(op));
            sys::FakeSys s;
            s.fail(op, EIO, 2);  // the second item's
            auto r = maildir_deliver_batch(items, opt, s);
            REQUIRE(r.size() == 3);
            CHECK(r[0].ok());
            REQUIRE_FALSE(r[1].ok());
            CHECK(r[1].error().sys_errno == EIO);
            CHECK(r[2].ok());
            CHECK(files_in(a + "/tmp").empty());
            for (const auto& f : files_in(a + "/new")) CHECK(slurp(f) != "two\n");
        }
        CHECK(files_in(a + "/new").size() == 2);
        CHECK(files_in(b + "/new").size() == 2);
    }
    SECTION("a failed writeback: that item only, never fsynced, nothing of it left") {
        for (int nth : {2, 5}) {  // the second item's start, then its wait
            INFO(nth);
            sys::FakeSys s;
            s.fail(sys::Op::SyncFileRange, EIO, nth);
            auto r = maildir_deliver_batch(items, opt, s);
            REQUIRE(r.size() == 3);
            CHECK(r[0].ok());
            REQUIRE_FALSE(r[1].ok());
            CHECK(r[1].error().sys_errno == EIO);
            CHECK(r[2].ok());
            CHECK(s.calls(sys::Op::Fsync) == 2 + 2);  // two files, a/new and b/new
            CHECK(files_in(a + "/tmp").empty());
            for (const auto& f : files_in(a + "/new")) CHECK(slurp(f) != "two\n");
        }
    }
    SECTION("a batch of one: no writeback of its own (its fsync does it)") {
        sys::FakeSys s;
        std::vector<MaildirItem> one{{a, "x\n", "h", 9}};
        REQUIRE(maildir_deliver_batch(one, opt, s)[0].ok());
        CHECK(s.calls(sys::Op::SyncFileRange) == 0);
        CHECK(s.calls(sys::Op::Fsync) == 2);
    }
    SECTION("a failed fsync of new/: the items linked into it fail and leave new/") {
        sys::FakeSys s;
        s.fail(sys::Op::Fsync, EIO, 4);  // three files, then a/new
        auto r = maildir_deliver_batch(items, opt, s);
        REQUIRE(r.size() == 3);
        REQUIRE_FALSE(r[0].ok());
        REQUIRE_FALSE(r[1].ok());
        CHECK(r[0].error().sys_errno == EIO);
        CHECK(r[2].ok());  // b/new synced
        CHECK(files_in(a + "/new").empty());
        CHECK(files_in(a + "/tmp").empty());
        CHECK(files_in(b + "/new").size() == 1);
    }
    SECTION("a name already in new/ is never replaced") {
        sys::FakeSys s;
        s.fail(sys::Op::Link, EEXIST, 1);
        auto r = maildir_deliver_batch(items, opt, s);
        REQUIRE_FALSE(r[0].ok());
        CHECK(r[0].error().sys_errno == EEXIST);
        CHECK(r[1].ok());
        CHECK(r[2].ok());
        CHECK(files_in(a + "/tmp").empty());
    }
    SECTION("a missing Maildir is made when asked, else reported") {
        std::string c = (t.path / "c").string();
        std::vector<MaildirItem> one{{c, "x\n", "h", 9}};
        auto r = maildir_deliver_batch(one, opt);
        REQUIRE_FALSE(r[0].ok());
        CHECK(r[0].error().sys_errno == ENOENT);
        opt.create_missing = true;
        r = maildir_deliver_batch(one, opt);
        REQUIRE(r[0].ok());
        CHECK(files_in(c + "/new").size() == 1);
    }
}

TEST_CASE("mbox From line and mboxrd quoting") {
    CHECK(mbox_from_line("a@b", 0) == "From a@b Thu Jan  1 00:00:00 1970\n");
    CHECK(mbox_from_line("", 1764114717) == "From MAILER-DAEMON Tue Nov 25 23:51:57 2025\n");
    struct Case {
        std::string_view in, out;
    };
    const Case cases[] = {
        {"a\n", "a\n\n"},
        {"a", "a\n\n"},              // final newline added
        {"a\r\nb\r\n", "a\nb\n\n"},  // CRLF -> LF
        {"From x\n", ">From x\n\n"},
        {">From x\n", ">>From x\n\n"},
        {">>From x\r\n", ">>>From x\n\n"},
        {"From\n", "From\n\n"},  // no space: not a separator
        {" From x\n", " From x\n\n"},
        {"x\nFrom y\n>From z\nFromage\n", "x\n>From y\n>>From z\nFromage\n\n"},
        {"", "\n"},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        CHECK(mboxrd_quote(c.in) == c.out);
    }
}

TEST_CASE("mbox append, locking and rollback") {
    TempDir t;
    std::string mbox = (t.path / "alice").string();
    std::string m1 = mbox_format("Subject: one\n\nFrom here\n", "s@x", 0);
    REQUIRE(mbox_append(mbox, mbox_from_line("s@x", 0), mboxrd_quote("Subject: one\n\nFrom here\n"))
                .ok());
    CHECK(slurp(mbox) == m1);
    CHECK(!fs::exists(mbox + ".lock"));
    struct stat st {};
    REQUIRE(::stat(mbox.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);

    SECTION("a failure in the middle truncates back to the old length") {
        sys::FakeSys f;
        f.fail(sys::Op::Write, ENOSPC, 2);  // the From line goes, the body does not
        auto r = mbox_append(mbox, "From t@x Thu Jan  1 00:00:00 1970\n", "body\n\n", {}, f);
        REQUIRE(!r.ok());
        CHECK(r.error().sys_errno == ENOSPC);
        CHECK(slurp(mbox) == m1);
        CHECK(!fs::exists(mbox + ".lock"));
    }
    SECTION("a failed fsync also rolls back") {
        sys::FakeSys f;
        f.fail(sys::Op::Fsync, EIO);
        auto r = mbox_append(mbox, "From t@x Thu Jan  1 00:00:00 1970\n", "body\n\n", {}, f);
        REQUIRE(!r.ok());
        CHECK(slurp(mbox) == m1);
    }
    SECTION("a fresh dotlock held by another writer times out") {
        std::ofstream(mbox + ".lock") << "1";
        MboxOptions o;
        o.lock_timeout = std::chrono::seconds(0);
        o.lock_poll = std::chrono::milliseconds(1);
        auto r = mbox_append(mbox, "From a\n", "b\n\n", o);
        REQUIRE(!r.ok());
        CHECK(r.error().sys_errno == kLockTimeoutErrno);
        CHECK(slurp(mbox) == m1);
        CHECK(fs::exists(mbox + ".lock"));  // not ours: left alone
    }
    SECTION("a stale dotlock is removed") {
        std::ofstream(mbox + ".lock") << "1";
        timeval old[2] = {{1000, 0}, {1000, 0}};
        REQUIRE(utimes((mbox + ".lock").c_str(), old) == 0);
        REQUIRE(mbox_append(mbox, "From a\n", "b\n\n").ok());
        CHECK(slurp(mbox) == m1 + "From a\nb\n\n");
        CHECK(!fs::exists(mbox + ".lock"));
    }
    SECTION("a symlink is refused") {
        std::string link = (t.path / "evil").string();
        fs::create_symlink(mbox, link);
        CHECK(!mbox_append(link, "From a\n", "b\n\n").ok());
        CHECK(slurp(mbox) == m1);
    }
    SECTION("a hard-linked mbox is refused") {
        fs::create_hard_link(mbox, t.path / "other");
        CHECK(!mbox_append(mbox, "From a\n", "b\n\n").ok());
    }
}

TEST_CASE("delivery headers and loop detection") {
    CHECK(delivery_headers("A: b\r\n\r\nx", "s@x", "r@y") ==
          "Return-Path: <s@x>\r\nDelivered-To: r@y\r\n");
    CHECK(delivery_headers("A: b\n\nx", "", "r@y") == "Return-Path: <>\nDelivered-To: r@y\n");

    struct Case {
        std::string msg;  // owned: some are built below
        bool loop;
    };
    std::string many;
    for (int i = 0; i < 51; ++i) many += "Received: from x\r\n";
    std::string fifty;
    for (int i = 0; i < 50; ++i) fifty += "Received: from x\n";
    const Case cases[] = {
        {"Subject: a\n\nb\n", false},
        {"Delivered-To: r@y\n\nb\n", true},
        {"delivered-to:   <R@Y>\r\n\r\nb\r\n", true},
        {"Delivered-To: other@y\n\nb\n", false},
        {"Subject: a\n\nDelivered-To: r@y\n", false},  // in the body: not a header
        {fifty + "\nx\n", false},
    };
    for (const auto& c : cases) {
        INFO(c.msg);
        CHECK(detect_loop(c.msg, "r@y").has_value() == c.loop);
    }
    CHECK(detect_loop(many + "\r\nbody", "r@y").has_value());
}
