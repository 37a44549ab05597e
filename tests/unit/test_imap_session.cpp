// imapd/session with a folder watch (SessionConfig::watch, inotify in
// imapd): the session rescans only when told of a change it did not make.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "imapd/session.hpp"

using namespace pbx::imap;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-imap-session-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

void put(const fs::path& p, std::string_view text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

std::string run(Session& s, std::string_view line) {
    s.feed(line);
    return s.take_output();
}

}  // namespace

TEST_CASE("session: a watched folder is rescanned only for changes of others") {
    TempDir t;
    for (const char* d : {"cur", "new", "tmp"}) fs::create_directories(t.path / d);
    put(t.path / "cur" / "1.a.host:2,", "Subject: 1\n\none\n");
    put(t.path / "cur" / "2.b.host:2,", "Subject: 2\n\ntwo\n");
    std::vector<std::string> watched;
    SessionConfig cfg;
    cfg.user = "u";
    cfg.root = t.path.string();
    cfg.watch = [&](const std::string& dir) {
        watched.push_back(dir);
        return true;
    };
    Session s(cfg);
    s.start();
    (void)s.take_output();
    std::string out = run(s, "a SELECT INBOX\r\n");
    CHECK(out.find("* 2 EXISTS") != std::string::npos);
    REQUIRE(watched.size() >= 1);
    CHECK(watched.back() == t.path.string());

    // Another writer adds a message; no event yet: not looked for.
    put(t.path / "cur" / "3.c.host:2,", "Subject: 3\n\nthree\n");
    out = run(s, "b NOOP\r\n");
    CHECK(out.find("EXISTS") == std::string::npos);

    // Our own STORE, and the events of its rename: still no rescan.
    out = run(s, "c STORE 1 +FLAGS (\\Seen)\r\n");
    CHECK(out.find("c OK") != std::string::npos);
    CHECK(fs::exists(t.path / "cur" / "1.a.host:2,S"));
    s.fs_event("cur/1.a.host:2,");
    s.fs_event("cur/1.a.host:2,S");
    out = run(s, "d NOOP\r\n");
    CHECK(out.find("EXISTS") == std::string::npos);

    // The other writer's event: the next command sees its message.
    s.fs_event("cur/3.c.host:2,");
    out = run(s, "e NOOP\r\n");
    CHECK(out.find("* 3 EXISTS") != std::string::npos);

    // An unknown change (queue overflow) rescans too.
    fs::rename(t.path / "cur" / "2.b.host:2,", t.path / "cur" / "2.b.host:2,F");
    s.fs_event("");
    out = run(s, "f NOOP\r\n");
    INFO(out);
    CHECK(out.find("* 2 FETCH (UID 2 FLAGS (\\Flagged))") != std::string::npos);

    // CLOSE ends the watch.
    out = run(s, "g CLOSE\r\n");
    CHECK(out.find("g OK") != std::string::npos);
    CHECK(watched.back().empty());
}

TEST_CASE("session: without a watch, another writer's message shows at once") {
    TempDir t;
    for (const char* d : {"cur", "new", "tmp"}) fs::create_directories(t.path / d);
    SessionConfig cfg;
    cfg.user = "u";
    cfg.root = t.path.string();
    cfg.watch = [](const std::string&) { return false; };  // no inotify left
    Session s(cfg);
    s.start();
    (void)s.take_output();
    CHECK(run(s, "a SELECT INBOX\r\n").find("* 0 EXISTS") != std::string::npos);
    put(t.path / "new" / "1.a.host", "Subject: 1\n\none\n");
    CHECK(run(s, "b NOOP\r\n").find("* 1 EXISTS") != std::string::npos);
}
