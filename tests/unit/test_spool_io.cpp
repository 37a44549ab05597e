// The spool's file I/O: atomic_write and friends with injected failures
// (sys::FakeSys: EIO, ENOSPC, EINTR, short writes; no root needed), the
// directory layout, the queue scanner and the maildrop file reader. Each
// test works in its own temporary directory.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/spool/atomic_write.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/fake_sys.hpp"
#include "common/spool/layout.hpp"
#include "common/spool/maildrop.hpp"

using namespace pbx::spool;
using pbx::sys::FakeSys;
using pbx::sys::Op;
using std::string;

namespace {

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/pbx-spool-test.XXXXXX";
        char* p = mkdtemp(tmpl);
        REQUIRE(p != nullptr);
        path_ = p;
    }
    ~TempDir() { remove_tree(path_); }
    const string& path() const { return path_; }
    string operator/(const string& name) const { return path_ + "/" + name; }

  private:
    static void remove_tree(const string& path) {
        struct stat st {};
        if (lstat(path.c_str(), &st) != 0) return;
        if (S_ISDIR(st.st_mode)) {
            chmod(path.c_str(), 0700);
            if (DIR* d = opendir(path.c_str())) {
                while (struct dirent* e = readdir(d)) {
                    string n = e->d_name;
                    if (n != "." && n != "..") remove_tree(path + "/" + n);
                }
                closedir(d);
            }
            rmdir(path.c_str());
        } else {
            unlink(path.c_str());
        }
    }
    string path_;
};

string slurp(const string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void put(const string& path, const string& data) {
    std::ofstream out(path, std::ios::binary);
    out << data;
}

bool exists(const string& path) {
    struct stat st {};
    return lstat(path.c_str(), &st) == 0;
}

mode_t mode_of(const string& path) {
    struct stat st {};
    REQUIRE(lstat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

std::vector<string> names_in(const string& dir) {
    std::vector<string> out;
    DIR* d = opendir(dir.c_str());
    REQUIRE(d != nullptr);
    while (struct dirent* e = readdir(d)) {
        string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

// ---------------------------------------------------------------- atomic_write

TEST_CASE("atomic_write: writes, replaces, syncs in the right order", "[spool][io]") {
    TempDir dir;
    string target = dir / "ID.env";
    FakeSys fs;
    auto r = atomic_write(target, "first\n", {.mode = 0640}, fs);
    REQUIRE(r.ok());
    CHECK(slurp(target) == "first\n");
    CHECK(mode_of(target) == 0640);
    CHECK(names_in(dir.path()) == std::vector<string>{"ID.env"});

    // The protocol: create temp, write, fsync, close, rename, fsync the directory.
    std::vector<string> ops;
    for (const string& t : fs.trace()) ops.push_back(t.substr(0, t.find(' ')));
    CHECK(ops == std::vector<string>{"open", "write", "fsync", "close", "rename", "open", "fsync",
                                     "close"});
    CHECK(fs.trace()[0].find(string(kTempMarker)) != string::npos);
    CHECK(fs.trace()[5] == "open " + dir.path());

    REQUIRE(atomic_write(target, "second\n", {}, fs).ok());
    CHECK(slurp(target) == "second\n");
    CHECK(mode_of(target) == 0600);
    CHECK(names_in(dir.path()) == std::vector<string>{"ID.env"});
}

TEST_CASE("atomic_write: short writes and EINTR are retried", "[spool][io]") {
    TempDir dir;
    string target = dir / "f";
    string data(1000, 'x');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
    FakeSys fs;
    fs.set_max_write(7);
    fs.fail(Op::Write, EINTR, 3);
    fs.fail(Op::Write, EINTR, 10);
    fs.fail(Op::Fsync, EINTR, 1);
    fs.fail(Op::Open, EINTR, 1);
    REQUIRE(atomic_write(target, data, {}, fs).ok());
    CHECK(slurp(target) == data);
    CHECK(fs.calls(Op::Write) == 143 + 2);  // ceil(1000/7) + two interrupted
    CHECK(names_in(dir.path()) == std::vector<string>{"f"});
}

TEST_CASE("atomic_write: failures leave no temp file and the old target intact", "[spool][io]") {
    struct Case {
        const char* what;
        Op op;
        int err;
        int nth;
        const char* fragment;
    };
    const Case cases[] = {
        {"create fails", Op::Open, EACCES, 1, "create"},
        {"first write EIO", Op::Write, EIO, 1, "write"},
        {"later write ENOSPC", Op::Write, ENOSPC, 5, "No space left"},
        {"fsync EIO", Op::Fsync, EIO, 1, "fsync"},
        {"close EIO", Op::Close, EIO, 1, "close"},
        {"rename EXDEV", Op::Rename, EXDEV, 1, "rename"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        TempDir dir;
        string target = dir / "ID.env";
        put(target, "old contents\n");
        FakeSys fs;
        fs.set_max_write(4);
        fs.fail(c.op, c.err, c.nth);
        auto r = atomic_write(target, "new contents, longer than before\n", {}, fs);
        REQUIRE_FALSE(r.ok());
        INFO(r.error().message);
        CHECK(r.error().sys_errno == c.err);
        CHECK(r.error().message.find(c.fragment) != string::npos);
        CHECK(slurp(target) == "old contents\n");
        CHECK(names_in(dir.path()) == std::vector<string>{"ID.env"});
    }
}

TEST_CASE("atomic_write: a failed directory fsync is reported", "[spool][io]") {
    TempDir dir;
    string target = dir / "ID.env";
    put(target, "old\n");
    FakeSys fs;
    fs.fail(Op::Fsync, EIO, 2);  // the file's fsync passes, the directory's fails
    auto r = atomic_write(target, "new\n", {}, fs);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sys_errno == EIO);
    CHECK(r.error().message.find("fsync directory") != string::npos);
    // The rename happened: the new file is in place, only its durability is unknown.
    CHECK(slurp(target) == "new\n");
    CHECK(names_in(dir.path()) == std::vector<string>{"ID.env"});
}

TEST_CASE("atomic_write: a taken temp name is skipped", "[spool][io]") {
    TempDir dir;
    FakeSys fs;
    fs.fail(Op::Open, EEXIST, 1);
    fs.fail(Op::Open, EEXIST, 2);
    REQUIRE(atomic_write(dir / "t", "x", {}, fs).ok());
    CHECK(slurp(dir / "t") == "x");
    CHECK(fs.calls(Op::Open) == 3 + 1);
    FakeSys always;
    always.fail(Op::Open, EEXIST, 1, true);
    auto r = atomic_write(dir / "u", "x", {}, always);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sys_errno == EEXIST);
}

TEST_CASE("atomic_write: no-replace mode and a separate temp directory (Maildir)", "[spool][io]") {
    TempDir dir;
    REQUIRE(mkdir((dir / "tmp").c_str(), 0700) == 0);
    REQUIRE(mkdir((dir / "new").c_str(), 0700) == 0);
    AtomicWriteOptions opt;
    opt.temp_dir = dir / "tmp";
    opt.replace = false;
    FakeSys fs;
    REQUIRE(atomic_write(dir / "new/1700000000.M1P2.host", "mail\n", opt, fs).ok());
    CHECK(slurp(dir / "new/1700000000.M1P2.host") == "mail\n");
    CHECK(names_in(dir / "tmp").empty());
    CHECK(fs.calls(Op::Link) == 1);
    CHECK(fs.calls(Op::Rename) == 0);
    // An existing target is never replaced.
    auto r = atomic_write(dir / "new/1700000000.M1P2.host", "other\n", opt, fs);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sys_errno == EEXIST);
    CHECK(slurp(dir / "new/1700000000.M1P2.host") == "mail\n");
    CHECK(names_in(dir / "tmp").empty());
}

TEST_CASE("atomic_write: sync_dir off skips the directory (maildrop helper)", "[spool][io]") {
    TempDir dir;
    FakeSys fs;
    AtomicWriteOptions opt;
    opt.sync_dir = false;
    REQUIRE(atomic_write(dir / "d", "x", opt, fs).ok());
    CHECK(fs.calls(Op::Fsync) == 1);
    CHECK(fs.calls(Op::Open) == 1);
}

TEST_CASE("DurableFile: pieces, commit, abandon, failures", "[spool][io]") {
    TempDir dir;
    FakeSys fs;
    {
        auto f = DurableFile::create(dir / "incoming", 0600, fs);
        REQUIRE(f.ok());
        REQUIRE(f->append("Received: x\n").ok());
        REQUIRE(f->append("\nbody\n").ok());
        CHECK(f->size() == 18);
        REQUIRE(f->commit().ok());
    }
    CHECK(slurp(dir / "incoming") == "Received: x\n\nbody\n");
    CHECK(mode_of(dir / "incoming") == 0600);

    // O_EXCL: an existing file is never overwritten.
    auto again = DurableFile::create(dir / "incoming", 0600, fs);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().sys_errno == EEXIST);
    CHECK(slurp(dir / "incoming") == "Received: x\n\nbody\n");

    // Abandoned (never committed): removed.
    {
        auto f = DurableFile::create(dir / "gone", 0600, fs);
        REQUIRE(f.ok());
        REQUIRE(f->append("partial").ok());
        DurableFile moved = std::move(*f);
        CHECK(exists(dir / "gone"));
    }
    CHECK_FALSE(exists(dir / "gone"));

    // A failed write or fsync: the error is reported, and the file goes away.
    for (Op op : {Op::Write, Op::Fsync}) {
        INFO(pbx::sys::op_name(op));
        FakeSys bad;
        bad.fail(op, ENOSPC);
        {
            auto f = DurableFile::create(dir / "bad", 0600, bad);
            REQUIRE(f.ok());
            auto a = f->append("data");
            auto c = a.ok() ? f->commit() : pbx::Status(a);
            REQUIRE_FALSE(c.ok());
            CHECK(c.error().sys_errno == ENOSPC);
        }
        CHECK_FALSE(exists(dir / "bad"));
    }

    FakeSys w;
    REQUIRE(write_file_durable(dir / "whole", "abc", 0640, w).ok());
    CHECK(slurp(dir / "whole") == "abc");
    CHECK(mode_of(dir / "whole") == 0640);
    CHECK(w.calls(Op::Fsync) == 1);
}

TEST_CASE("rename_durable and fsync_dir", "[spool][io]") {
    TempDir dir;
    REQUIRE(mkdir((dir / "incoming").c_str(), 0700) == 0);
    REQUIRE(mkdir((dir / "queue").c_str(), 0700) == 0);
    put(dir / "incoming/ID", "msg");
    FakeSys fs;
    REQUIRE(rename_durable(dir / "incoming/ID", dir / "queue/ID.msg", fs).ok());
    CHECK(slurp(dir / "queue/ID.msg") == "msg");
    CHECK_FALSE(exists(dir / "incoming/ID"));
    CHECK(fs.trace().back() == "close");
    CHECK(fs.trace()[1] == "open " + dir / "queue");

    FakeSys bad;
    bad.fail(Op::Rename, ENOENT);
    auto r = rename_durable(dir / "incoming/none", dir / "queue/x", bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sys_errno == ENOENT);
    auto d = fsync_dir(dir / "no-such-dir");
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().sys_errno == ENOENT);
}

TEST_CASE("read_file_limited: limits, symlinks, non-files", "[spool][io]") {
    TempDir dir;
    put(dir / "f", "0123456789");
    auto ok = read_file_limited(dir / "f", 10);
    REQUIRE(ok.ok());
    CHECK(*ok == "0123456789");
    auto big = read_file_limited(dir / "f", 9);
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().sys_errno == EFBIG);
    REQUIRE(symlink((dir / "f").c_str(), (dir / "link").c_str()) == 0);
    auto link = read_file_limited(dir / "link", 100);
    REQUIRE_FALSE(link.ok());
    CHECK(link.error().sys_errno == ELOOP);
    auto d = read_file_limited(dir.path(), 100);
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().sys_errno == EINVAL);
    FakeSys fs;
    fs.fail(Op::Read, EINTR);
    auto intr = read_file_limited(dir / "f", 10, fs);
    REQUIRE(intr.ok());
    CHECK(*intr == "0123456789");
    fs.fail(Op::Read, EIO);
    auto eio = read_file_limited(dir / "f", 10, fs);
    REQUIRE_FALSE(eio.ok());
    CHECK(eio.error().sys_errno == EIO);
}

TEST_CASE("dir_name and base_name", "[spool][io]") {
    CHECK(dir_name("a/b/c") == "a/b");
    CHECK(dir_name("c") == ".");
    CHECK(dir_name("/c") == "/");
    CHECK(base_name("a/b/c") == "c");
    CHECK(base_name("c") == "c");
}

TEST_CASE("envelope files: read_envelope_file", "[spool][io]") {
    TempDir dir;
    Envelope e;
    e.id = QueueId::generate();
    e.protocol = "ESMTP";
    e.recipients.push_back(Recipient{.address = "bob@example.org"});
    auto text = write_envelope(e);
    REQUIRE(text.ok());
    REQUIRE(atomic_write(dir / "x.env", *text).ok());
    auto r = read_envelope_file(dir / "x.env");
    REQUIRE(r.ok());
    CHECK(*r == e);
    EnvelopeLimits tiny;
    tiny.max_file_size = 10;
    auto big = read_envelope_file(dir / "x.env", tiny);
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().code == EnvelopeErrc::TooLarge);
    auto none = read_envelope_file(dir / "none.env");
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().code == EnvelopeErrc::Io);
}

// ---------------------------------------------------------------- layout

TEST_CASE("layout: paths", "[spool][layout]") {
    QueueId id = *QueueId::parse("060a24181e40000004d2");
    SpoolPaths p("/var/spool/pillarbox");
    CHECK(p.incoming == "/var/spool/pillarbox/incoming");
    CHECK(p.incoming_file(id) == "/var/spool/pillarbox/incoming/060a24181e40000004d2");
    CHECK(p.message_file(id) == "/var/spool/pillarbox/queue/060a24181e40000004d2.msg");
    CHECK(p.envelope_file(id) == "/var/spool/pillarbox/queue/060a24181e40000004d2.env");
    CHECK(p.held_envelope_file(id) == "/var/spool/pillarbox/hold/060a24181e40000004d2.env");
    CHECK(p.maildrop_file(id) == "/var/spool/pillarbox/maildrop/060a24181e40000004d2");
    CHECK(SpoolPaths("/").queue == "/queue");
    CHECK(SpoolPaths("/x/").corrupt == "/x/corrupt");
    CHECK(SpoolPaths(".").hold == "./hold");
}

TEST_CASE("layout: ensure_layout creates and repairs the directories", "[spool][layout]") {
    TempDir dir;
    SpoolPaths p(dir / "spool");
    SpoolOwner owner{getuid(), getgid(), getgid()};
    REQUIRE(ensure_layout(p, owner).ok());
    CHECK(mode_of(p.root) == 0710);
    CHECK(mode_of(p.incoming) == 0700);
    CHECK(mode_of(p.queue) == 0700);
    CHECK(mode_of(p.hold) == 0700);
    CHECK(mode_of(p.corrupt) == 0700);
    CHECK(mode_of(p.maildrop) == 01730);

    // Idempotent, and it corrects a wrong mode.
    REQUIRE(chmod(p.queue.c_str(), 0755) == 0);
    REQUIRE(ensure_layout(p, owner).ok());
    CHECK(mode_of(p.queue) == 0700);

    // A symlink or a file where a directory belongs is refused.
    REQUIRE(rmdir(p.hold.c_str()) == 0);
    REQUIRE(symlink(p.queue.c_str(), p.hold.c_str()) == 0);
    auto r = ensure_layout(p, owner);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(p.hold) != string::npos);
    REQUIRE(unlink(p.hold.c_str()) == 0);
    put(p.hold, "");
    CHECK_FALSE(ensure_layout(p, owner).ok());
    REQUIRE(unlink(p.hold.c_str()) == 0);

    FakeSys fs;
    fs.fail(Op::Mkdir, EACCES);
    auto m = ensure_layout(SpoolPaths(dir / "other"), owner, fs);
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().sys_errno == EACCES);
    FakeSys chown_fails;
    chown_fails.fail(Op::Fchown, EPERM);
    // Owner differs from the directory's (root tests: uid 0 → 1), so chown runs.
    SpoolOwner other{getuid() + 1, getgid(), getgid()};
    auto c = ensure_layout(SpoolPaths(dir / "third"), other, chown_fails);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().sys_errno == EPERM);
}

TEST_CASE("layout: scan_queue classifies pairs, held messages and orphans", "[spool][layout]") {
    TempDir dir;
    SpoolPaths p(dir / "spool");
    REQUIRE(ensure_layout(p, {getuid(), getgid(), getgid()}).ok());
    const string a = "060a24181e40000004d2";  // active
    const string b = "060a24181e40010004d2";  // held
    const string c = "060a24181e40020004d2";  // message only
    const string d = "060a24181e40030004d2";  // envelope only
    const string e = "060a24181e40040004d2";  // hold envelope only
    const string f = "060a24181e40050004d2";  // active and also in hold/
    const string g = "05ffffffffffff0004d2";  // active, earlier
    for (const string& id : {a, b, c, f, g}) put(p.queue + "/" + id + ".msg", "m");
    for (const string& id : {a, d, f, g}) put(p.queue + "/" + id + ".env", "e");
    for (const string& id : {b, e, f}) put(p.hold + "/" + id + ".env", "e");
    put(p.queue + "/" + a + ".env.tmp.123.0", "partial");
    put(p.queue + "/README", "");
    put(p.queue + "/" + a + ".txt", "");
    put(p.queue + "/060A24181E40000004D2.msg", "");
    put(p.hold + "/" + a + ".msg", "");  // messages never live in hold/
    REQUIRE(mkdir((p.queue + "/" + e + ".msg").c_str(), 0700) == 0);

    auto scan = scan_queue(p);
    REQUIRE(scan.ok());
    auto ids = [](const std::vector<QueueId>& v) {
        std::vector<string> out;
        for (const auto& id : v) out.push_back(id.str());
        return out;
    };
    CHECK(ids(scan->active) == std::vector<string>{g, a, f});
    CHECK(ids(scan->held) == std::vector<string>{b});
    CHECK(scan->orphans == std::vector<string>{"hold/" + e + ".env", "hold/" + f + ".env",
                                               "queue/" + c + ".msg", "queue/" + d + ".env"});
    CHECK(scan->temp_files == std::vector<string>{"queue/" + a + ".env.tmp.123.0"});
    CHECK(scan->invalid ==
          std::vector<string>{"hold/" + a + ".msg", "queue/060A24181E40000004D2.msg",
                              "queue/" + a + ".txt", "queue/" + e + ".msg", "queue/README"});

    auto missing = scan_queue(SpoolPaths(dir / "none"));
    CHECK_FALSE(missing.ok());
}

TEST_CASE("layout: scan_flat_dir and move_to_corrupt", "[spool][layout]") {
    TempDir dir;
    SpoolPaths p(dir / "spool");
    REQUIRE(ensure_layout(p, {getuid(), getgid(), getgid()}).ok());
    const string a = "060a24181e40000004d2";
    const string b = "060a24181e40010004d2";
    put(p.maildrop + "/" + b, "");
    put(p.maildrop + "/" + a, "");
    put(p.maildrop + "/" + a + ".tmp.77.1", "");
    put(p.maildrop + "/junk", "");
    auto s = scan_flat_dir(p.maildrop);
    REQUIRE(s.ok());
    REQUIRE(s->ids.size() == 2);
    CHECK(s->ids[0].str() == a);
    CHECK(s->ids[1].str() == b);
    CHECK(s->temp_files == std::vector<string>{a + ".tmp.77.1"});
    CHECK(s->invalid == std::vector<string>{"junk"});

    put(p.queue + "/" + a + ".msg", "first");
    auto m1 = move_to_corrupt(p, "queue/" + a + ".msg");
    REQUIRE(m1.ok());
    CHECK(*m1 == "corrupt/" + a + ".msg");
    put(p.queue + "/" + a + ".msg", "second");
    auto m2 = move_to_corrupt(p, "queue/" + a + ".msg");
    REQUIRE(m2.ok());
    CHECK(*m2 == "corrupt/" + a + ".msg.1");
    CHECK(slurp(p.corrupt + "/" + a + ".msg") == "first");
    CHECK(slurp(p.corrupt + "/" + a + ".msg.1") == "second");
    CHECK(names_in(p.queue).empty());
    REQUIRE(mkdir((p.queue + "/stray").c_str(), 0700) == 0);
    auto m3 = move_to_corrupt(p, "queue/stray");
    REQUIRE(m3.ok());
    CHECK(*m3 == "corrupt/stray");

    for (const char* bad :
         {"../etc/passwd", "/etc/passwd", "queue/../x", "", "queue//x", "queue/", "./queue/x"}) {
        INFO(bad);
        CHECK_FALSE(move_to_corrupt(p, bad).ok());
    }
    CHECK_FALSE(move_to_corrupt(p, "queue/none").ok());
}

// ---------------------------------------------------------------- maildrop files

TEST_CASE("maildrop files: written by atomic_write, read back with the owner", "[spool][io]") {
    TempDir dir;
    SpoolPaths p(dir / "spool");
    REQUIRE(ensure_layout(p, {getuid(), getgid(), getgid()}).ok());
    Maildrop d;
    d.uid = getuid();
    d.time = Seconds(std::chrono::seconds(1700000000));
    d.sender = "alice@example.net";
    d.recipients = {"bob@example.org"};
    d.message = "Subject: hi\n\nhello\n";
    auto text = write_maildrop(d);
    REQUIRE(text.ok());
    QueueId id = QueueId::generate();
    AtomicWriteOptions opt;
    opt.mode = kMaildropFileMode;
    opt.sync_dir = false;
    REQUIRE(atomic_write(p.maildrop_file(id), *text, opt).ok());
    CHECK(mode_of(p.maildrop_file(id)) == 0444);

    string buffer;
    uid_t owner = 12345;
    auto r = read_maildrop_file(p.maildrop_file(id), {}, &buffer, &owner);
    REQUIRE(r.ok());
    CHECK(owner == getuid());
    CHECK(r->uid == getuid());
    CHECK(r->message == "Subject: hi\n\nhello\n");
    CHECK(r->recipients == d.recipients);

    MaildropLimits tiny;
    tiny.max_message_size = 1;
    tiny.max_header_size = 10;
    auto big = read_maildrop_file(p.maildrop_file(id), tiny, &buffer, nullptr);
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().code == MaildropErrc::TooLarge);
}

// ---------------------------------------------------------------- the man page

#ifdef PBX_SOURCE_DIR
namespace {

// The example block of pillarbox-spool(5) that starts with `first`, un-roffed:
// "\-" is "-", "\&" alone is an empty line, and a line ending in " \e" is
// folded onto the next (which is indented by two spaces).
string man_example(const string& page, const string& first) {
    size_t start = page.find("\n" + first + "\n");
    REQUIRE(start != string::npos);
    size_t end = page.find("\nend\n", start);
    REQUIRE(end != string::npos);
    string block = page.substr(start + 1, end + 5 - (start + 1));
    string out;
    std::istringstream in(block);
    bool folding = false;
    for (string line; std::getline(in, line);) {
        if (folding) {
            REQUIRE(line.substr(0, 2) == "  ");
            line = " " + line.substr(2);
        }
        if (line == "\\&") line.clear();
        folding = line.size() >= 3 && line.substr(line.size() - 3) == " \\e";
        if (folding) line.resize(line.size() - 3);
        for (size_t p; (p = line.find("\\-")) != string::npos;) line.replace(p, 2, "-");
        out += line;
        if (!folding) out += "\n";
    }
    return out;
}

}  // namespace

TEST_CASE("pillarbox-spool(5): the examples are what the code reads and writes", "[spool][docs]") {
    string page = slurp(string(PBX_SOURCE_DIR) + "/man/pillarbox-spool.5");
    REQUIRE_FALSE(page.empty());

    string env_text = man_example(page, "pillarbox\\-envelope 1");
    auto env = read_envelope(env_text);
    INFO(env_text);
    INFO((env.ok() ? "" : env.error().to_string()));
    REQUIRE(env.ok());
    CHECK(env->recipients.size() == 2);
    auto again = write_envelope(*env);
    REQUIRE(again.ok());
    CHECK(*again == env_text);

    string drop_text = man_example(page, "pillarbox\\-maildrop 1");
    auto drop = read_maildrop(drop_text);
    INFO(drop_text);
    INFO((drop.ok() ? "" : drop.error().to_string()));
    REQUIRE(drop.ok());
    CHECK(drop->message == "Subject: hi\n\nhello\n");
    auto drop_again = write_maildrop(*drop);
    REQUIRE(drop_again.ok());
    CHECK(*drop_again == drop_text);
}
#endif
