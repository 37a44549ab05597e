// imapd/store: the uid list format, Maildir names and flags, mailbox name
// checks, LIST patterns, and a folder on disk: UIDs stable across syncs,
// external changes, a corrupt or lost uid list.
#include <sys/stat.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "imapd/store.hpp"

using namespace pbx::imap;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-imap-store-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

void put(const fs::path& p, std::string_view text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("uid list: format and validation") {
    UidList l;
    l.validity = 1234;
    l.next = 10;
    l.entries = {{1, "a.M1"}, {5, "b c"}, {9, "d"}};
    std::string text = format_uidlist(l);
    CHECK(text == "pillarbox-uidlist 1 V1234 N10\n1 :a.M1\n5 :b c\n9 :d\n");
    std::string error;
    auto back = parse_uidlist(text, error);
    REQUIRE(back);
    CHECK(back->validity == 1234);
    CHECK(back->next == 10);
    REQUIRE(back->entries.size() == 3);
    CHECK(back->entries[1].base == "b c");
    // Unknown header fields and per-line fields are skipped (room for modseqs).
    CHECK(parse_uidlist("pillarbox-uidlist 1 V1 N3 M77\n1 M5 :x\n", error));
    const char* bad[] = {
        "",
        "pillarbox-uidlist 1 V1 N3",                // no newline
        "other 1 V1 N3\n",                          // magic
        "pillarbox-uidlist 1 N3\n",                 // no V
        "pillarbox-uidlist 1 V0 N3\n",              // V0
        "pillarbox-uidlist 1 V1 N3\n2 :a\n1 :b\n",  // not ascending
        "pillarbox-uidlist 1 V1 N3\n3 :a\n",        // not below N
        "pillarbox-uidlist 1 V1 N3\n1 :a\n2 :a\n",  // repeated
        "pillarbox-uidlist 1 V1 N3\n1 :a/b\n",      // slash
        "pillarbox-uidlist 1 V1 N3\n1 a\n",         // no " :"
        "pillarbox-uidlist 1 V1 N3\nx :a\n",        // uid
        "pillarbox-uidlist 1 V1 N3\n1 :a",          // unterminated
    };
    for (const char* b : bad) {
        INFO(b);
        CHECK_FALSE(parse_uidlist(b, error));
    }
}

TEST_CASE("maildir names and flags") {
    auto i = parse_maildir_name("123.M1P2.host,S=5:2,FSa");
    CHECK(i.base == "123.M1P2.host,S=5");
    CHECK(i.flags == (kFlagFlagged | kFlagSeen));
    CHECK(i.keywords == 1);
    CHECK(parse_maildir_name("plain").base == "plain");
    CHECK(parse_maildir_name("plain").flags == 0);
    CHECK(maildir_name("b", kFlagSeen | kFlagDeleted | kFlagDraft | kFlagAnswered, 0b101) ==
          "b:2,DRSTac");
}

TEST_CASE("mailbox names: hostile ones are refused") {
    std::string error;
    struct C {
        std::string_view name;
        std::string_view rel;  // "!" = refused
    };
    const C cases[] = {
        {"INBOX", ""},
        {"inbox", ""},
        {"Sent", ".Sent"},
        {"a.b", ".a.b"},
        {"~user", "!"},
        {"..", "!"},
        {"a..b", "!"},
        {".a", "!"},
        {"a.", "!"},
        {"/etc", "!"},
        {"a/b", "!"},
        {"../x", "!"},
        {"", "!"},
        {"a*", "!"},
        {"a%", "!"},
        {"a\x01", "!"},
        {"caf\xc3\xa9", "!"},
        {"caf&AOk-", ".caf&AOk-"},
        {"&-", ".&-"},
        {"&AGE-", "!"},
        {"&", "!"},
        {"&Jjo", "!"},
        {"&2D3eAA-", ".&2D3eAA-"},
        {"&2D0-", "!"},
    };
    for (const auto& c : cases) {
        INFO(std::string(c.name));
        auto rel = folder_relpath(c.name, error);
        if (c.rel == "!")
            CHECK_FALSE(rel);
        else
            CHECK(rel.value() == c.rel);
    }
}

TEST_CASE("LIST pattern matching") {
    CHECK(list_match("*", "a.b.c"));
    CHECK(list_match("%", "a"));
    CHECK_FALSE(list_match("%", "a.b"));
    CHECK(list_match("a.%", "a.b"));
    CHECK_FALSE(list_match("a.%", "a.b.c"));
    CHECK(list_match("a*", "a.b.c"));
    CHECK(list_match("a%c", "abc"));
    CHECK_FALSE(list_match("a%c", "a.c"));
    CHECK(list_match("", ""));
    CHECK_FALSE(list_match("", "a"));
    CHECK(list_match("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
    CHECK_FALSE(list_match("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

TEST_CASE("folder: uids stable, external changes, corrupt list rebuilt") {
    TempDir t;
    MailStore store(t.path.string());
    REQUIRE(store.ensure_defaults());
    CHECK(store.exists("Sent"));
    CHECK(store.exists("Trash"));
    auto names = store.list();
    CHECK(names.front() == "INBOX");
    CHECK(std::find(names.begin(), names.end(), "Archive") != names.end());
    Folder f(t.path.string());
    put(t.path / "new" / "100.a.host", "Subject: 1\n\none\n");
    put(t.path / "new" / "200.b.host", "Subject: 2\n\ntwo\n");
    auto r = f.sync(true);
    REQUIRE(r);
    REQUIRE(r->messages.size() == 2);
    CHECK(r->messages[0].uid == 1);
    CHECK(r->messages[1].uid == 2);
    CHECK(r->recent.size() == 2);
    CHECK(fs::exists(t.path / "cur" / "100.a.host:2,"));
    uint32_t validity = r->validity;
    // An external writer adds one and renames another with flags.
    put(t.path / "cur" / "300.c.host:2,S", "Subject: 3\n\nthree\n");
    fs::rename(t.path / "cur" / "100.a.host:2,", t.path / "cur" / "100.a.host:2,FS");
    r = f.sync(true);
    REQUIRE(r);
    REQUIRE(r->messages.size() == 3);
    CHECK(r->messages[0].flags == (kFlagFlagged | kFlagSeen));
    CHECK(r->messages[2].uid == 3);
    CHECK(r->recent.empty());
    // Removal by hand: the uid is gone, never reused.
    fs::remove(t.path / "cur" / "200.b.host:2,");
    r = f.sync(false);
    REQUIRE(r);
    REQUIRE(r->messages.size() == 2);
    CHECK(r->next == 4);
    // set_flags, expunge, append.
    auto moved = f.set_flags("300.c.host", kFlagSeen | kFlagAnswered, 0);
    REQUIRE(moved);
    CHECK(moved->value() == "cur/300.c.host:2,RS");
    auto app = f.append("Subject: 4\r\n\r\nfour\r\n", kFlagDraft, 0, 86400);
    REQUIRE(app);
    CHECK(app->first == 4);
    CHECK(app->second == validity);
    REQUIRE(f.expunge({"100.a.host"}));
    r = f.sync(false);
    REQUIRE(r);
    REQUIRE(r->messages.size() == 2);
    CHECK(r->messages[0].uid == 3);
    CHECK(r->messages[1].uid == 4);
    CHECK(r->messages[1].flags == kFlagDraft);
    struct stat st {};
    REQUIRE(stat((t.path / r->messages[1].file).c_str(), &st) == 0);
    CHECK(st.st_mtime == 86400);
    CHECK(r->validity == validity);
    // A corrupt uid list is rebuilt with a new UIDVALIDITY, not trusted.
    put(t.path / "pillarbox-uidlist", "pillarbox-uidlist 1 V5 N2\n7 :zzz\n");
    sleep(1);
    r = f.sync(false);
    REQUIRE(r);
    CHECK(r->rebuilt);
    CHECK(r->validity != validity);
    CHECK(r->messages.size() == 2);
    CHECK(slurp(t.path / "pillarbox-uidlist").rfind("pillarbox-uidlist 1 V", 0) == 0);
    // Keywords.
    CHECK(f.keyword_index("$Junk", false) == -1);
    CHECK(f.keyword_index("$Junk", true) == 0);
    CHECK(f.keyword_index("$junk", true) == 0);
    CHECK(f.keyword_index("Work", true) == 1);
    CHECK(slurp(t.path / "dovecot-keywords") == "0 $Junk\n1 Work\n");
}

TEST_CASE("store: create, rename with children, delete, subscriptions") {
    TempDir t;
    MailStore store(t.path.string());
    REQUIRE(store.ensure_defaults());
    REQUIRE(store.create("a"));
    REQUIRE(store.create("a.b"));
    REQUIRE(store.create("a.b.c"));
    CHECK_FALSE(store.create("a"));
    CHECK_FALSE(store.create("INBOX"));
    CHECK_FALSE(store.create("../x"));
    REQUIRE(store.rename("a", "z"));
    CHECK(store.exists("z.b.c"));
    CHECK_FALSE(store.exists("a.b"));
    CHECK_FALSE(store.rename("z", "z.q"));
    REQUIRE(store.remove("z.b"));
    CHECK(store.exists("z.b.c"));
    CHECK_FALSE(store.remove("INBOX"));
    put(t.path / "new" / "1.x.h", "x");
    REQUIRE(store.rename("INBOX", "Old"));
    CHECK(fs::exists(t.path / ".Old" / "new" / "1.x.h"));
    CHECK_FALSE(fs::exists(t.path / "new" / "1.x.h"));
    REQUIRE(store.set_subscribed("z", true));
    auto subs = store.subscriptions();
    CHECK(std::find(subs.begin(), subs.end(), "z") != subs.end());
    CHECK(std::find(subs.begin(), subs.end(), "Sent") != subs.end());
    REQUIRE(store.set_subscribed("z", false));
    subs = store.subscriptions();
    CHECK(std::find(subs.begin(), subs.end(), "z") == subs.end());
    // A deleted special-use folder is not created again.
    REQUIRE(store.remove("Junk"));
    REQUIRE(store.ensure_defaults());
    CHECK_FALSE(store.exists("Junk"));
}

TEST_CASE("cache file: round trip, checksum, corrupt input refused") {
    CacheMap m;
    m["1.a.host"] = CacheEntry{123,
                               456,
                               "(\"env\")",
                               "(\"TEXT\" \"PLAIN\")",
                               "{4}\r\nx\ny\n",
                               "subject: lunch\nfrom: a <a@b>\n"};
    m["2.b host"] = CacheEntry{0, 0, "", "", "", ""};
    std::string text = format_cache(m);
    auto back = parse_cache(text);
    REQUIRE(back);
    REQUIRE(back->size() == 2);
    CHECK(back->at("1.a.host").vsize == 123);
    CHECK(back->at("1.a.host").date == 456);
    CHECK(back->at("1.a.host").bodystructure == "{4}\r\nx\ny\n");
    CHECK(back->at("1.a.host").search_fields == "subject: lunch\nfrom: a <a@b>\n");
    CHECK(back->at("2.b host").envelope.empty());
    CHECK(back->at("2.b host").search_fields.empty());
    CHECK(text.starts_with("pillarbox-cache 2 "));
    // The checksum sees every byte, whatever the length.
    for (std::string_view x : {"", "a", "abcdefgh", "abcdefghi", "0123456789abcdef0"}) {
        std::string y(x);
        for (size_t i = 0; i < y.size(); ++i) {
            std::string z = y;
            z[i] = static_cast<char>(z[i] ^ 1);
            CHECK(cache_checksum(z) != cache_checksum(y));
        }
        CHECK(cache_checksum(y + '\0') != cache_checksum(y));
    }
    // Any changed byte, a cut, or another magic: refused.
    for (size_t i = 0; i < text.size(); i += 7) {
        std::string bad = text;
        bad[i] = static_cast<char>(bad[i] ^ 0x20);
        CHECK_FALSE(parse_cache(bad));
    }
    CHECK_FALSE(parse_cache(text.substr(0, text.size() - 1)));
    CHECK_FALSE(parse_cache(""));
    CHECK(parse_cache(format_cache({}))->empty());
    // On disk: saved, loaded, an invalid file is ignored.
    TempDir t;
    Folder f(t.path.string());
    REQUIRE(f.save_cache(m));
    CHECK(f.load_cache().size() == 2);
    put(t.path / "pillarbox-cache", "garbage");
    CHECK(f.load_cache().empty());
    // A valid file of format 1 (no SEARCH fields) is outdated: ignored.
    put(t.path / "pillarbox-cache", "pillarbox-cache 1 0000000000000000\n8 1 2 0 0 0\n1.a.host");
    CHECK(f.load_cache().empty());
    // Lengths that do not fit the file (or would wrap when added): refused.
    for (std::string rec :
         {"1 1 1 1 1 1 99\nxy", "1 1 1 18446744073709551615 1 1 1\nxyz", "1 1 1 1 1 1\nxyzab"}) {
        std::string body = rec;
        char sum[32];
        std::snprintf(sum, sizeof sum, "%016llx",
                      static_cast<unsigned long long>(cache_checksum(body)));
        INFO(rec);
        CHECK_FALSE(parse_cache("pillarbox-cache 2 " + std::string(sum) + "\n" + body));
    }
}

TEST_CASE("folder: flags and expunge from the names last seen, a scan only when renamed") {
    TempDir t;
    Folder f(t.path.string());
    REQUIRE(MailStore(t.path.string()).ensure_defaults());
    put(t.path / "cur" / "1.a.host:2,", "Subject: 1\n\none\n");
    put(t.path / "cur" / "2.b.host:2,", "Subject: 2\n\ntwo\n");
    put(t.path / "cur" / "3.c.host:2,", "Subject: 3\n\nthree\n");
    REQUIRE(f.sync(false));
    // From the known name.
    auto r = f.set_flags("1.a.host", kFlagSeen, 0, "cur/1.a.host:2,");
    REQUIRE(r);
    CHECK(r->value() == "cur/1.a.host:2,S");
    CHECK(fs::exists(t.path / "cur" / "1.a.host:2,S"));
    // Renamed elsewhere meanwhile: found by a scan, not lost.
    fs::rename(t.path / "cur" / "2.b.host:2,", t.path / "cur" / "2.b.host:2,F");
    r = f.set_flags("2.b.host", kFlagSeen, 0, "cur/2.b.host:2,");
    REQUIRE(r);
    CHECK(r->value() == "cur/2.b.host:2,S");
    CHECK(!fs::exists(t.path / "cur" / "2.b.host:2,F"));
    // A known name of another message is not used.
    r = f.set_flags("3.c.host", kFlagDraft, 0, "cur/1.a.host:2,S");
    REQUIRE(r);
    CHECK(r->value() == "cur/3.c.host:2,D");
    CHECK(fs::exists(t.path / "cur" / "1.a.host:2,S"));
    // Gone: nullopt.
    r = f.set_flags("9.z.host", kFlagSeen, 0, "cur/9.z.host:2,");
    REQUIRE(r);
    CHECK(!r->has_value());
    // Expunge: one known where it is, one renamed elsewhere in between.
    fs::rename(t.path / "cur" / "3.c.host:2,D", t.path / "cur" / "3.c.host:2,DS");
    auto e = f.expunge({"1.a.host", "3.c.host"}, {"cur/1.a.host:2,S", "cur/3.c.host:2,D"});
    REQUIRE(e);
    REQUIRE(e->has_value());  // one had to be looked for: the folder after a scan
    REQUIRE((*e)->messages.size() == 1);
    CHECK((*e)->messages[0].base == "2.b.host");
    CHECK(!fs::exists(t.path / "cur" / "3.c.host:2,DS"));
    // The uid list lost entries only: written, the remaining uid kept.
    auto s = f.sync(false);
    REQUIRE(s);
    REQUIRE(s->messages.size() == 1);
    CHECK(s->messages[0].uid == 2);
    CHECK(slurp(t.path / "pillarbox-uidlist").find(":1.a.host") == std::string::npos);
}

TEST_CASE("folder: append and expunge without a scan") {
    TempDir t;
    Folder f(t.path.string());
    REQUIRE(MailStore(t.path.string()).ensure_defaults());
    put(t.path / "cur" / "1.a.host:2,", "Subject: 1\n\none\n");
    auto s = f.sync(false);
    REQUIRE(s);
    uint32_t validity = s->validity;
    // Another writer's file, not synced yet: the append takes the next uid
    // without a scan, the other file gets the one after at the next sync.
    put(t.path / "new" / "2.b.host", "Subject: 2\n\ntwo\n");
    std::string file;
    auto app = f.append("Subject: 3\r\n\r\nthree\r\n", kFlagSeen, 0, 0, &file);
    REQUIRE(app);
    CHECK(app->first == 2);
    CHECK(app->second == validity);
    CHECK(file.starts_with("cur/"));
    CHECK(file.ends_with(":2,S"));
    CHECK(slurp(t.path / "pillarbox-uidlist").find("2.b.host") == std::string::npos);
    s = f.sync(false);
    REQUIRE(s);
    REQUIRE(s->messages.size() == 3);
    CHECK(s->messages[1].uid == 2);
    CHECK(s->messages[1].file == file);
    CHECK(s->messages[2].uid == 3);
    CHECK(s->messages[2].base == "2.b.host");
    CHECK(s->next == 4);
    // Expunge where known: no scan, the list keeps the entries until the
    // next sync, which drops them; the uids are never given again.
    auto e = f.expunge({"1.a.host", s->messages[1].base}, {"cur/1.a.host:2,", s->messages[1].file});
    REQUIRE(e);
    CHECK_FALSE(e->has_value());
    CHECK(!fs::exists(t.path / "cur" / "1.a.host:2,"));
    CHECK(slurp(t.path / "pillarbox-uidlist").find("1.a.host") != std::string::npos);
    s = f.sync(false);
    REQUIRE(s);
    REQUIRE(s->messages.size() == 1);
    CHECK(s->messages[0].uid == 3);
    CHECK(slurp(t.path / "pillarbox-uidlist").find("1.a.host") == std::string::npos);
    app = f.append("Subject: 4\r\n\r\nfour\r\n", 0, 0, 0);
    REQUIRE(app);
    CHECK(app->first == 4);
    // No uid list (or a corrupt one): the append rebuilds it with a scan.
    fs::remove(t.path / "pillarbox-uidlist");
    sleep(1);  // a new UIDVALIDITY is the time
    app = f.append("Subject: 5\r\n\r\nfive\r\n", 0, 0, 0);
    REQUIRE(app);
    CHECK(app->second != validity);
    s = f.sync(false);
    REQUIRE(s);
    CHECK(s->messages.size() == 3);
    CHECK(s->validity == app->second);
}
