// common/auth/expand: what `resolve` answers. Aliases to lists, users and
// system users (with their .forward flag), remote addresses (forward),
// :include: files, |commands and /files and the ownership rules that guard
// them, loops and limits; the target-line syntax of include files and
// ~/.forward.
#include <catch2/catch.hpp>

#include <cerrno>
#include <map>
#include <string>
#include <string_view>

#include "common/auth/expand.hpp"

using namespace pbx::auth;

namespace {

class Accounts final : public SystemUsers {
  public:
    std::map<std::string, SystemAccount, std::less<>> accounts{
        {"nobody", {"nobody", 65534, 65534, "/nonexistent"}},
        {"root", {"root", 0, 0, "/root"}},
        {"sam", {"sam", 1001, 1001, "/home/sam"}},
        {"daemon", {"daemon", 1, 1, "/usr/sbin"}},
    };
    std::optional<SystemAccount> account(std::string_view name) const override {
        auto it = accounts.find(name);
        if (it == accounts.end()) return std::nullopt;
        return it->second;
    }
    std::optional<std::string> password_hash(std::string_view) const override { return {}; }
};

FileStamp stamp(uid_t owner, mode_t mode) {
    FileStamp s;
    s.exists = true;
    s.owner = owner;
    s.mode = S_IFREG | mode;
    return s;
}

struct IncludeFile {
    std::string text;
    FileStamp st;
};

struct World {
    ResolverSettings settings;
    UserTable users;
    AliasMap aliases;
    Accounts system;
    FileStamp aliases_stamp = stamp(0, 0644);
    std::map<std::string, IncludeFile> includes;

    World(std::string_view alias_text) {
        settings.domains = {"example.org"};
        settings.system_users = true;
        auto u = UserTable::parse(
            "alice:x:5000:5000:/var/vmail/alice:\n"
            "bob:x:5001:5001:/var/vmail/bob:/var/vmail/bob/mbox\n",
            "users");
        REQUIRE(u.ok());
        users = std::move(u).value();
        auto a = AliasMap::parse(alias_text, "aliases");
        INFO((a ? std::string() : a.error().to_string()));
        REQUIRE(a.ok());
        aliases = std::move(a).value();
    }

    Expansion expand(std::string_view address, const ExpandLimits& limits = {}) {
        ExpandContext ctx{settings,
                          users,
                          aliases,
                          aliases_stamp,
                          system,
                          "nobody",
                          nullptr,
                          [this](const std::string& path, size_t max) -> pbx::Result<ReadFile> {
                              auto it = includes.find(path);
                              if (it == includes.end())
                                  return pbx::fail_errno("open " + path, ENOENT);
                              if (it->second.text.size() > max)
                                  return pbx::fail(path + ": too large");
                              return ReadFile{it->second.text, it->second.st};
                          }};
        return expand_recipient(address, ctx, limits);
    }
};

std::string describe(const Expansion& x) {
    std::string out(to_string(x.status));
    if (!x.reason.empty()) out += " (" + x.reason + ")";
    for (const DeliveryTarget& t : x.targets) {
        out += " | " + std::string(to_string(t.kind)) + " " + t.user;
        if (t.kind == TargetKind::Mailbox)
            out += " " + t.mailbox + (t.dotforward ? " +fwd" : "");
        else
            out += " " + t.target;
    }
    return out;
}

constexpr const char* kAliases =
    "staff: alice, bob, sam\n"
    "lists: staff, alice, \\sam\n"
    "remote: carol@elsewhere.net, alice, CAROL@Elsewhere.net\n"
    "ticket: \"|/usr/local/bin/ticket --queue staff\"\n"
    "archive: /var/archive/mail, alice\n"
    "both: ticket, archive\n"
    "inc: :include:/etc/mail/staff.list\n"
    "badinc: :include:/etc/mail/unsafe.list\n"
    "missing: :include:/etc/mail/missing.list\n"
    "incloop: :include:/etc/mail/loop.list\n"
    "loop1: loop2\n"
    "loop2: loop1\n"
    "nobody-alias: ghost\n"
    "daemon: alice\n";

}  // namespace

TEST_CASE("expand: users, lists, system users and forwards", "[auth][expand]") {
    World w(kAliases);
    w.includes["/etc/mail/staff.list"] = {
        "# staff\n"
        "alice, bob\n"
        "\n"
        "\"|/bin/logger staff\"\n"
        "remote@elsewhere.net\n",
        stamp(0, 0644)};
    w.includes["/etc/mail/unsafe.list"] = {"alice\n\"|/bin/sh -c evil\"\n", stamp(1001, 0644)};
    w.includes["/etc/mail/loop.list"] = {":include:/etc/mail/loop.list\n", stamp(0, 0600)};

    struct Case {
        const char* address;
        const char* expect;
    };
    const Case cases[] = {
        {"alice@example.org", "found | mailbox alice /var/vmail/alice/Maildir/"},
        {"Bob@EXAMPLE.org", "found | mailbox bob /var/vmail/bob/mbox"},
        // A system user: /var/mail/NAME, and ~/.forward counts.
        {"sam@example.org", "found | mailbox sam /var/mail/sam +fwd"},
        {"sam+tag@example.org", "found | mailbox sam /var/mail/sam +fwd"},
        {"staff@example.org",
         "found | mailbox alice /var/vmail/alice/Maildir/ | mailbox bob /var/vmail/bob/mbox | "
         "mailbox sam /var/mail/sam +fwd"},
        // Duplicates collapse; "\sam" is sam without .forward, but sam was
        // already there (with .forward) through staff.
        {"lists@example.org",
         "found | mailbox alice /var/vmail/alice/Maildir/ | mailbox bob /var/vmail/bob/mbox | "
         "mailbox sam /var/mail/sam +fwd"},
        {"remote@example.org",
         "found | forward  carol@elsewhere.net | mailbox alice /var/vmail/alice/Maildir/"},
        {"ticket@example.org", "found | pipe nobody /usr/local/bin/ticket --queue staff"},
        {"archive@example.org",
         "found | file nobody /var/archive/mail | mailbox alice /var/vmail/alice/Maildir/"},
        {"both",
         "found | pipe nobody /usr/local/bin/ticket --queue staff | file nobody "
         "/var/archive/mail | mailbox alice /var/vmail/alice/Maildir/"},
        {"inc@example.org",
         "found | mailbox alice /var/vmail/alice/Maildir/ | mailbox bob /var/vmail/bob/mbox | "
         "pipe nobody /bin/logger staff | forward  remote@elsewhere.net"},
        {"badinc@example.org",
         "refused (/etc/mail/unsafe.list: command targets need a file owned by root and not "
         "writable by group or others)"},
        {"missing@example.org",
         "tempfail (open /etc/mail/missing.list: No such file or directory)"},
        {"incloop@example.org", "loop (include loop through /etc/mail/loop.list)"},
        {"loop1@example.org", "loop (alias loop through loop1)"},
        {"ghost@example.org", "unknown (no such user: ghost@example.org)"},
        {"nobody-alias@example.org", "unknown (no such user: ghost)"},
        // Accounts below 1000 receive mail only through an alias.
        {"daemon@example.org", "found | mailbox alice /var/vmail/alice/Maildir/"},
        {"someone@elsewhere.net", "found | forward  someone@elsewhere.net"},
    };
    for (const Case& c : cases) {
        INFO(c.address);
        CHECK(describe(w.expand(c.address)) == c.expect);
    }
    // Pipe and file targets carry default_privs' ids, never 0.
    auto x = w.expand("both@example.org");
    REQUIRE(x.targets.size() == 3);
    CHECK(x.targets[0].uid == 65534);
    CHECK(x.targets[0].gid == 65534);
    CHECK(x.targets[0].home == "/nonexistent");
}

TEST_CASE("expand: ownership of the aliases file guards commands, files and includes",
          "[auth][expand]") {
    struct Case {
        uid_t owner;
        mode_t mode;
        bool allowed;
    };
    const Case cases[] = {
        {0, 0644, true},  {0, 0600, true},  {0, 0444, true},     {0, 0664, false},
        {0, 0646, false}, {0, 0666, false}, {1001, 0644, false}, {1001, 0600, false},
    };
    for (const Case& c : cases) {
        INFO("owner " << c.owner << " mode " << std::oct << c.mode);
        World w(kAliases);
        w.aliases_stamp = stamp(c.owner, c.mode);
        w.includes["/etc/mail/staff.list"] = {"alice\n", stamp(0, 0644)};
        for (const char* a : {"ticket@example.org", "archive@example.org", "inc@example.org"}) {
            INFO(a);
            auto x = w.expand(a);
            CHECK((x.status == ExpandStatus::Found) == c.allowed);
            if (!c.allowed) {
                CHECK(x.status == ExpandStatus::Refused);
                CHECK(x.targets.empty());
            }
        }
        // Plain addresses never depend on the owner.
        CHECK(w.expand("staff@example.org").status == ExpandStatus::Found);
    }
    SECTION("a missing aliases file stamp (no file) allows nothing privileged") {
        World w(kAliases);
        w.aliases_stamp = FileStamp{};
        CHECK(w.expand("ticket").status == ExpandStatus::Refused);
    }
}

TEST_CASE("expand: an include file's own owner guards its commands", "[auth][expand]") {
    for (auto [owner, mode, allowed] : {std::tuple{0u, 0644u, true}, std::tuple{0u, 0620u, false},
                                        std::tuple{1001u, 0600u, false}}) {
        World w(kAliases);
        w.includes["/etc/mail/staff.list"] = {"alice, /var/tmp/list-archive\n", stamp(owner, mode)};
        CHECK((w.expand("inc").status == ExpandStatus::Found) == allowed);
        // Addresses from an include file that is not root's still work.
        w.includes["/etc/mail/staff.list"] = {"alice\n", stamp(owner, mode)};
        CHECK(describe(w.expand("inc")) == "found | mailbox alice /var/vmail/alice/Maildir/");
    }
}

TEST_CASE("expand: home_mailbox for system users", "[auth][expand]") {
    World w(kAliases);
    w.settings.home_mailbox = "Maildir/";
    CHECK(describe(w.expand("sam")) == "found | mailbox sam /home/sam/Maildir/ +fwd");
    CHECK(w.expand("sam").targets[0].format == MailboxFormat::Maildir);
    w.settings.home_mailbox = "Mailbox";
    CHECK(describe(w.expand("sam")) == "found | mailbox sam /home/sam/Mailbox +fwd");
    CHECK(w.expand("sam").targets[0].format == MailboxFormat::Mbox);
    // Virtual users keep their own mailbox.
    CHECK(describe(w.expand("alice")) == "found | mailbox alice /var/vmail/alice/Maildir/");
    for (const char* bad : {"/var/mail/x", "../other/Maildir/", "a/../../b"}) {
        w.settings.home_mailbox = bad;
        CHECK(w.expand("sam").status == ExpandStatus::TempFail);
    }
}

TEST_CASE("expand: default_privs and limits", "[auth][expand]") {
    World w(kAliases);
    w.system.accounts.erase("nobody");
    CHECK(w.expand("ticket").status == ExpandStatus::TempFail);
    w.system.accounts["nobody"] = {"nobody", 0, 0, "/"};
    CHECK(w.expand("ticket").status == ExpandStatus::Refused);

    World deep("a0: a1\na1: a2\na2: a3\na3: a4\na4: alice\n");
    ExpandLimits l;
    l.max_depth = 3;
    CHECK(deep.expand("a0", l).status == ExpandStatus::Loop);
    l.max_depth = 10;
    CHECK(deep.expand("a0", l).status == ExpandStatus::Found);

    World many("many: a@x.net, b@x.net, c@x.net, d@x.net\n");
    l.max_targets = 3;
    CHECK(many.expand("many", l).status == ExpandStatus::Unsupported);
    l.max_targets = 4;
    CHECK(many.expand("many", l).targets.size() == 4);
}

TEST_CASE("target lines: include files and ~/.forward", "[auth][expand]") {
    struct Valid {
        const char* text;
        std::vector<AliasTarget> expect;
    };
    using K = AliasTargetKind;
    const Valid valid[] = {
        {"alice\n", {{K::Local, "alice", false}}},
        {"\\sam, \"|/usr/bin/procmail -f-\"\n",
         {{K::Local, "sam", true}, {K::Command, "/usr/bin/procmail -f-", false}}},
        {"# comment\n\n  bob@example.net\n/home/sam/archive\n",
         {{K::Address, "bob@example.net", false}, {K::File, "/home/sam/archive", false}}},
        {"|/usr/bin/vacation\n", {{K::Command, "/usr/bin/vacation", false}}},
        {"a,b,\nc", {{K::Local, "a", false}, {K::Local, "b", false}, {K::Local, "c", false}}},
        {":include:/etc/x\n", {{K::Include, "/etc/x", false}}},
    };
    for (const Valid& v : valid) {
        INFO(v.text);
        auto r = parse_target_lines(v.text);
        INFO((r ? std::string() : r.error()));
        REQUIRE(r.ok());
        CHECK(*r == v.expect);
    }
    const char* invalid[] = {
        "",
        "# only a comment\n\n",
        "|/usr/bin/procmail -f-\n",  // white space outside quotes
        "\"|unterminated\n",
        "alice,,bob\n",
        "bad name!\n",
        "x@\n",
        ":include:relative\n",
        "alice\x01\n",
    };
    for (const char* text : invalid) {
        INFO(text);
        CHECK_FALSE(parse_target_lines(text).ok());
    }
    std::string longline(5000, 'a');
    CHECK_FALSE(parse_target_lines(longline).ok());
    // Every prefix of a valid file parses or fails cleanly.
    std::string text = "\\sam, \"|/usr/bin/procmail -f-\"\n# x\nbob@example.net, /var/x\n";
    for (size_t n = 0; n <= text.size(); ++n) (void)parse_target_lines(text.substr(0, n));
}
