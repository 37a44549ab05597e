// common/auth: the users and aliases parsers, recipient resolution, crypt(3)
// verification and the failure-delay arithmetic.
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/auth/aliases.hpp"
#include "common/auth/password.hpp"
#include "common/auth/resolve.hpp"
#include "common/auth/senders.hpp"
#include "common/auth/throttle.hpp"
#include "common/auth/users.hpp"
#include "common/auth/users_edit.hpp"
#include "common/config/config.hpp"
#include "tests/unit/test_auth_tables.hpp"

using namespace pbx::auth;
namespace tables = pbx::auth::test_tables;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

UserTable users_of(std::string_view text) {
    auto t = UserTable::parse(text, "users");
    INFO((t ? std::string() : t.error().to_string()));
    REQUIRE(t.ok());
    return std::move(t).value();
}

AliasMap aliases_of(std::string_view text) {
    auto m = AliasMap::parse(text, "aliases");
    INFO((m ? std::string() : m.error().to_string()));
    REQUIRE(m.ok());
    return std::move(m).value();
}

// A system account database in memory.
class FakeSystemUsers final : public SystemUsers {
  public:
    struct Acct {
        uid_t uid;
        std::optional<std::string> hash;
    };
    std::map<std::string, Acct, std::less<>> accounts;

    std::optional<SystemAccount> account(std::string_view name) const override {
        auto it = accounts.find(name);
        if (it == accounts.end()) return std::nullopt;
        return SystemAccount{it->first, it->second.uid, it->second.uid, "/home/" + it->first};
    }
    std::optional<std::string> password_hash(std::string_view name) const override {
        auto it = accounts.find(name);
        if (it == accounts.end()) return std::nullopt;
        return it->second.hash;
    }
};

}  // namespace

TEST_CASE("users: valid files", "[auth][users]") {
    for (const char* text : tables::kValidUsers) {
        INFO(text);
        auto t = UserTable::parse(text, "users");
        INFO((t ? std::string() : t.error().to_string()));
        CHECK(t.ok());
    }
    auto t = users_of(
        "# virtual users\n"
        "alice:$6$s$h:5000:5001:/var/vmail/alice:\n"
        "\n"
        "bob:*:5000:5000:/home/bob:/var/mail/bob\n"
        "carol:!:5000:5000:/home/carol/:mail/inbox\n"
        "dave:x:5000:5000:/home/dave:Maildir/\n"
        "erin:x:5000:5000:/srv/erin:/srv/boxes/erin/");
    REQUIRE(t.size() == 5);
    const VirtualUser* a = t.find("alice");
    REQUIRE(a);
    CHECK(a->password_hash == "$6$s$h");
    CHECK(a->uid == 5000);
    CHECK(a->gid == 5001);
    CHECK(a->home == "/var/vmail/alice");
    CHECK(a->mailbox == "/var/vmail/alice/Maildir/");
    CHECK(a->format == MailboxFormat::Maildir);
    CHECK(a->line == 2);
    CHECK_FALSE(a->login_disabled());
    CHECK(t.find("ALICE") == a);
    CHECK(t.find("Alice") == a);
    CHECK(t.find("alice2") == nullptr);
    CHECK(t.find("") == nullptr);

    const VirtualUser* b = t.find("bob");
    REQUIRE(b);
    CHECK(b->mailbox == "/var/mail/bob");
    CHECK(b->format == MailboxFormat::Mbox);
    CHECK(b->login_disabled());
    const VirtualUser* c = t.find("carol");
    REQUIRE(c);
    CHECK(c->home == "/home/carol");
    CHECK(c->mailbox == "/home/carol/mail/inbox");
    CHECK(c->format == MailboxFormat::Mbox);
    CHECK(c->login_disabled());
    CHECK(t.find("dave")->mailbox == "/home/dave/Maildir/");
    CHECK(t.find("erin")->mailbox == "/srv/boxes/erin/");
    CHECK(t.find("erin")->format == MailboxFormat::Maildir);
}

TEST_CASE("users: invalid files name file:line", "[auth][users]") {
    for (const auto& bad : tables::kInvalidUsers) {
        INFO(bad.text);
        auto t = UserTable::parse(bad.text, "/etc/pillarbox/users");
        REQUIRE_FALSE(t.ok());
        INFO(t.error().to_string());
        CHECK(t.error().file == "/etc/pillarbox/users");
        CHECK(t.error().line == bad.line);
        CHECK(t.error().message.find(bad.fragment) != std::string::npos);
        CHECK(t.error().to_string().rfind("/etc/pillarbox/users:" + std::to_string(bad.line) + ": ",
                                          0) == 0);
    }
}

TEST_CASE("users: limits", "[auth][users]") {
    UsersLimits small;
    small.max_line = 40;
    small.max_entries = 2;
    small.max_name = 8;
    std::string ok = "a:x:1:1:/a:\nb:x:1:1:/b:\n";
    CHECK(UserTable::parse(ok, "u", small).ok());
    auto many = UserTable::parse(ok + "c:x:1:1:/c:\n", "u", small);
    REQUIRE_FALSE(many.ok());
    CHECK(many.error().line == 3);
    CHECK(many.error().message.find("more than 2 users") != std::string::npos);
    auto lng = UserTable::parse("a:x:1:1:/" + std::string(40, 'a') + ":\n", "u", small);
    REQUIRE_FALSE(lng.ok());
    CHECK(lng.error().message.find("line longer than 40") != std::string::npos);
    auto name = UserTable::parse("abcdefghi:x:1:1:/a:\n", "u", small);
    REQUIRE_FALSE(name.ok());
    CHECK(name.error().message.find("longer than 8") != std::string::npos);
}

TEST_CASE("aliases: valid files", "[auth][aliases]") {
    for (const char* text : tables::kValidAliases) {
        INFO(text);
        auto m = AliasMap::parse(text, "aliases");
        INFO((m ? std::string() : m.error().to_string()));
        CHECK(m.ok());
    }
    auto m = aliases_of(
        "# /etc/aliases\n"
        "postmaster: root\n"
        "MAILER-DAEMON: postmaster\n"
        "staff: alice, Bob@Example.NET,\n"
        "  # comment inside the entry\n"
        "\n"
        "\t\"|/usr/local/bin/ticket --queue staff, urgent\",\n"
        "       /var/log/staff-mail, :INCLUDE:/etc/mail/staff.list,\n"
        "root: \\root, \"/var/spool/root mail/\"\n"
        "quoted: \"|/bin/echo \\\"b\\\" \\\\c\" , |/bin/true\n");
    REQUIRE(m.size() == 5);
    const AliasEntry* pm = m.find("PostMaster");
    REQUIRE(pm);
    CHECK(pm->line == 2);
    REQUIRE(pm->targets.size() == 1);
    CHECK(pm->targets[0] == AliasTarget{AliasTargetKind::Local, "root", false});
    CHECK(m.contains("mailer-daemon"));

    const AliasEntry* staff = m.find("staff");
    REQUIRE(staff);
    CHECK(staff->line == 4);
    REQUIRE(staff->targets.size() == 5);
    CHECK(staff->targets[0] == AliasTarget{AliasTargetKind::Local, "alice", false});
    CHECK(staff->targets[1] == AliasTarget{AliasTargetKind::Address, "Bob@Example.NET", false});
    CHECK(staff->targets[2] == AliasTarget{AliasTargetKind::Command,
                                           "/usr/local/bin/ticket --queue staff, urgent", false});
    CHECK(staff->targets[3] == AliasTarget{AliasTargetKind::File, "/var/log/staff-mail", false});
    CHECK(staff->targets[4] ==
          AliasTarget{AliasTargetKind::Include, "/etc/mail/staff.list", false});

    const AliasEntry* root = m.find("root");
    REQUIRE(root);
    REQUIRE(root->targets.size() == 2);
    CHECK(root->targets[0] == AliasTarget{AliasTargetKind::Local, "root", true});
    CHECK(root->targets[1] == AliasTarget{AliasTargetKind::File, "/var/spool/root mail/", false});

    const AliasEntry* q = m.find("quoted");
    REQUIRE(q);
    REQUIRE(q->targets.size() == 2);
    CHECK(q->targets[0] == AliasTarget{AliasTargetKind::Command, "/bin/echo \"b\" \\c", false});
    CHECK(q->targets[1] == AliasTarget{AliasTargetKind::Command, "/bin/true", false});
}

TEST_CASE("aliases: invalid files name file:line", "[auth][aliases]") {
    for (const auto& bad : tables::kInvalidAliases) {
        INFO(bad.text);
        auto m = AliasMap::parse(bad.text, "/etc/aliases");
        REQUIRE_FALSE(m.ok());
        INFO(m.error().to_string());
        CHECK(m.error().file == "/etc/aliases");
        CHECK(m.error().line == bad.line);
        CHECK(m.error().message.find(bad.fragment) != std::string::npos);
    }
}

TEST_CASE("aliases: limits", "[auth][aliases]") {
    AliasesLimits small;
    small.max_line = 30;
    small.max_entry = 50;
    small.max_targets = 3;
    small.max_entries = 2;
    CHECK(AliasMap::parse("a: b, c, d\ne: f\n", "al", small).ok());
    auto targets = AliasMap::parse("a: b, c, d, e\n", "al", small);
    REQUIRE_FALSE(targets.ok());
    CHECK(targets.error().message.find("more than 3 targets") != std::string::npos);
    auto entries = AliasMap::parse("a: b\nc: d\ne: f\n", "al", small);
    REQUIRE_FALSE(entries.ok());
    CHECK(entries.error().line == 3);
    auto line = AliasMap::parse("a: " + std::string(30, 'b') + "\n", "al", small);
    REQUIRE_FALSE(line.ok());
    CHECK(line.error().message.find("line longer than 30") != std::string::npos);
    auto entry = AliasMap::parse("a: bbbbbbbbbb,\n  cccccccccc,\n  dddddddddd,\n  eeeeeeeeee\n",
                                 "al", small);
    REQUIRE_FALSE(entry.ok());
    CHECK(entry.error().line == 4);
    CHECK(entry.error().message.find("entry longer than 50") != std::string::npos);
}

TEST_CASE("users and aliases: every prefix of a valid file parses or fails cleanly",
          "[auth][users][aliases]") {
    // The parsers take whole files; cutting one anywhere must give a result
    // or an error with a line inside the text, never a crash or a bad line.
    std::string users = std::string(tables::kValidUsers[4]) + tables::kValidUsers[2];
    for (size_t n = 0; n <= users.size(); ++n) {
        auto t = UserTable::parse(std::string_view(users).substr(0, n), "u");
        if (!t) CHECK(t.error().line >= 1);
    }
    std::string aliases = tables::kValidAliases[5];
    for (size_t n = 0; n <= aliases.size(); ++n) {
        auto m = AliasMap::parse(std::string_view(aliases).substr(0, n), "a");
        if (!m) CHECK(m.error().line >= 1);
    }
}

namespace {

struct ResolveCase {
    const char* address;
    RcptStatus status;
    LocalKind kind;         // when Local
    const char* name;       // when Local or Unknown
    const char* canonical;  // when Local
};

}  // namespace

TEST_CASE("resolution table", "[auth][resolve]") {
    auto users = users_of(
        "alice:x:5000:5000:/var/vmail/alice:\n"
        "bob:x:5000:5000:/var/vmail/bob:\n"
        "bob-x:x:5000:5000:/var/vmail/bob-x:\n");
    auto aliases = aliases_of(
        "staff: alice, bob\n"
        "owner-list: alice\n"
        "daemon: root\n");
    FakeSystemUsers sys;
    sys.accounts["carol"] = {1001, "$6$x"};
    sys.accounts["mail"] = {8, "*"};
    sys.accounts["nobody"] = {65534, "*"};

    ResolverSettings s;
    s.domains = {"example.org", "example.net"};

    using S = RcptStatus;
    using K = LocalKind;
    const ResolveCase cases[] = {
        {"alice@example.org", S::Local, K::User, "alice", "alice@example.org"},
        {"Alice@EXAMPLE.Org", S::Local, K::User, "alice", "alice@example.org"},
        {"ALICE@example.net", S::Local, K::User, "alice", "alice@example.net"},
        {"alice+news@example.org", S::Local, K::User, "alice", "alice+news@example.org"},
        {"Alice+NeWs@example.org", S::Local, K::User, "alice", "alice+NeWs@example.org"},
        {"alice+@example.org", S::Local, K::User, "alice", "alice+@example.org"},
        {"alice+a+b@example.org", S::Local, K::User, "alice", "alice+a+b@example.org"},
        {"+alice@example.org", S::Unknown, K::User, "+alice", ""},
        {"\"alice\"@example.org", S::Local, K::User, "alice", "alice@example.org"},
        {"alice", S::Local, K::User, "alice", "alice"},
        {"staff@example.org", S::Local, K::Alias, "staff", "staff@example.org"},
        {"staff+x@example.org", S::Local, K::Alias, "staff", "staff+x@example.org"},
        {"owner-list@example.org", S::Local, K::Alias, "owner-list", "owner-list@example.org"},
        {"daemon@example.org", S::Local, K::Alias, "daemon", "daemon@example.org"},
        {"postmaster@example.org", S::Local, K::Postmaster, "postmaster", "postmaster@example.org"},
        {"PostMaster@Example.NET", S::Local, K::Postmaster, "postmaster", "postmaster@example.net"},
        {"POSTMASTER", S::Local, K::Postmaster, "postmaster", "postmaster"},
        {"postmaster+x@example.org", S::Local, K::Postmaster, "postmaster",
         "postmaster+x@example.org"},
        {"postmaster@elsewhere.example", S::Remote, K::User, "", ""},
        {"nobody-here@example.org", S::Unknown, K::User, "nobody-here", ""},
        {"carol@example.org", S::Unknown, K::User, "carol", ""},  // system_users = no
        {"mail@example.org", S::Unknown, K::User, "mail", ""},
        {"alice@example.com", S::Remote, K::User, "", ""},
        {"alice@sub.example.org", S::Remote, K::User, "", ""},
        {"alice@example.org.", S::Invalid, K::User, "", ""},
        {"alice@", S::Invalid, K::User, "", ""},
        {"@example.org", S::Invalid, K::User, "", ""},
        {"", S::Invalid, K::User, "", ""},
        {"al ice@example.org", S::Invalid, K::User, "", ""},
        {"alice@exa\tmple.org", S::Invalid, K::User, "", ""},
        {"\"al\"ice\"@example.org", S::Invalid, K::User, "", ""},
        {"\"\"@example.org", S::Invalid, K::User, "", ""},
    };
    for (const auto& c : cases) {
        INFO(c.address);
        Resolution r = resolve_recipient(c.address, s, users, aliases, NoSystemUsers{});
        CHECK(to_string(r.status) == to_string(c.status));
        if (c.status == S::Local) {
            CHECK(to_string(r.kind) == to_string(c.kind));
            CHECK(r.name == c.name);
            CHECK(r.canonical() == c.canonical);
        }
        if (c.status == S::Unknown) CHECK(r.name == c.name);
        if (c.status == S::Invalid) CHECK(!r.reason.empty());
    }

    // Too long.
    std::string lng = std::string(65, 'a') + "@example.org";
    CHECK(resolve_recipient(lng, s, users, aliases, sys).status == S::Invalid);
    CHECK(resolve_recipient(std::string(400, 'a'), s, users, aliases, sys).status == S::Invalid);

    SECTION("recipient_delimiter") {
        s.recipient_delimiter = "";
        CHECK(resolve_recipient("alice+x@example.org", s, users, aliases, sys).status ==
              S::Unknown);
        s.recipient_delimiter = "+-";
        auto r = resolve_recipient("alice-x@example.org", s, users, aliases, sys);
        CHECK(r.status == S::Local);
        CHECK(r.canonical() == "alice-x@example.org");
        CHECK(r.detail == "x");
        CHECK(r.delimiter == '-');
        // The whole name is tried first: bob-x is a user of its own.
        r = resolve_recipient("bob-x@example.org", s, users, aliases, sys);
        CHECK(r.name == "bob-x");
        CHECK(r.detail.empty());
        r = resolve_recipient("bob-y@example.org", s, users, aliases, sys);
        CHECK(r.name == "bob");
        CHECK(r.detail == "y");
    }

    SECTION("system users") {
        CHECK(resolve_recipient("carol@example.org", s, users, aliases, sys).status == S::Unknown);
        s.system_users = true;
        auto r = resolve_recipient("Carol+x@example.org", s, users, aliases, sys);
        CHECK(r.status == S::Local);
        CHECK(r.kind == K::SystemUser);
        CHECK(r.canonical() == "carol+x@example.org");
        // System accounts below uid 1000 and nobody: only through aliases.
        CHECK(resolve_recipient("mail@example.org", s, users, aliases, sys).status == S::Unknown);
        CHECK(resolve_recipient("nobody@example.org", s, users, aliases, sys).status == S::Unknown);
        sys.accounts["daemon"] = {1, "*"};
        CHECK(resolve_recipient("daemon@example.org", s, users, aliases, sys).kind == K::Alias);
        // Virtual users and aliases come before system accounts.
        sys.accounts["alice"] = {1002, "$6$x"};
        CHECK(resolve_recipient("alice@example.org", s, users, aliases, sys).kind == K::User);
    }
}

TEST_CASE("resolver settings from the configuration", "[auth][resolve]") {
    auto cfg = pbx::config::Config::parse(
        "domains = Example.ORG, example.net\nrecipient_delimiter = +-\nsystem_users = yes\n",
        "t.conf");
    REQUIRE(cfg.ok());
    auto s = ResolverSettings::from_config(*cfg);
    CHECK(s.domains == std::vector<std::string>{"example.org", "example.net"});
    CHECK(s.recipient_delimiter == "+-");
    CHECK(s.system_users);
    CHECK(s.is_local_domain("EXAMPLE.org"));
    CHECK_FALSE(s.is_local_domain("example.org."));
    CHECK_FALSE(s.is_local_domain(""));
    CHECK_FALSE(s.is_local_domain("example.com"));
    auto d = ResolverSettings::from_config(pbx::config::Config{});
    CHECK(d.domains == std::vector<std::string>{"localhost"});
    CHECK(d.recipient_delimiter == "+");
    CHECK_FALSE(d.system_users);
}

TEST_CASE("crypt(3) verification with real hashes of each scheme", "[auth][password]") {
    // Made outside Pillarbox: openssl passwd -6, python crypt with bcrypt and
    // yescrypt settings from libxcrypt's crypt_gensalt.
    const char* external[] = {
        "$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2sc"
        "Ftv/uamSo5z0",
        "$2b$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2",
        "$y$j9T$k2XAnEHBqQ1Ct2aMXFKNa/$Ry7oZ9ThqkDutyuKduodO92iRCkOPEVA3D3cGUEN1J1",
    };
    for (const char* h : external) {
        INFO(h);
        CHECK(crypt_verify("correct horse", h));
        CHECK_FALSE(crypt_verify("correct horsE", h));
        CHECK_FALSE(crypt_verify("", h));
        CHECK_FALSE(crypt_verify(std::string_view("correct horse\0x", 15), h));
    }
    for (const char* prefix : {"$y$", "$6$", "$2b$", ""}) {
        INFO(prefix);
        auto h = crypt_hash("s3cret pass", prefix);
        REQUIRE(h.ok());
        CHECK(h->rfind(prefix, 0) == 0);
        CHECK(crypt_verify("s3cret pass", *h));
        CHECK_FALSE(crypt_verify("s3cret pas", *h));
    }
    CHECK_FALSE(crypt_verify("x", "*"));
    CHECK_FALSE(crypt_verify("x", "!"));
    CHECK_FALSE(crypt_verify("x", ""));
    CHECK_FALSE(crypt_verify("x", "$unknown$abc"));
    CHECK(constant_time_equal("abc", "abc"));
    CHECK_FALSE(constant_time_equal("abc", "abd"));
    CHECK_FALSE(constant_time_equal("abc", "abcd"));
}

TEST_CASE("password checker: virtual and system users", "[auth][password]") {
    auto alice = crypt_hash("alice pw", "$6$");
    auto carol = crypt_hash("carol pw", "$6$");
    REQUIRE(alice.ok());
    REQUIRE(carol.ok());
    auto users = users_of("alice:" + *alice +
                          ":5000:5000:/v/alice:\n"
                          "locked:!" +
                          *alice + ":5000:5000:/v/locked:\n");
    FakeSystemUsers sys;
    sys.accounts["carol"] = {1001, *carol};
    sys.accounts["dan"] = {1002, std::nullopt};  // shadow unreadable
    sys.accounts["mail"] = {8, *carol};
    sys.accounts["eve"] = {1003, "!" + *carol};
    ResolverSettings s;
    s.domains = {"example.org"};

    auto dummy = PasswordChecker::make_dummy_hash();
    REQUIRE(dummy.ok());
    PasswordChecker pc(*dummy);
    auto check = [&](std::string_view user, std::string_view pw) {
        return pc.verify(user, pw, s, users, sys);
    };

    auto ok = check("alice", "alice pw");
    CHECK(ok.status == VerifyStatus::Ok);
    CHECK(ok.user == "alice");
    CHECK(check("ALICE", "alice pw").status == VerifyStatus::Ok);
    CHECK(check("Alice@Example.ORG", "alice pw").user == "alice");
    CHECK(check("Alice@Example.ORG", "alice pw").status == VerifyStatus::Ok);
    CHECK(check("alice@example.com", "alice pw").status == VerifyStatus::Fail);
    CHECK(check("alice@example.org.", "alice pw").status == VerifyStatus::Fail);
    auto bad = check("alice", "wrong");
    CHECK(bad.status == VerifyStatus::Fail);
    CHECK(bad.reason == "bad password");
    CHECK(check("alice", "").status == VerifyStatus::Fail);
    CHECK(check("alice", std::string(2000, 'x')).status == VerifyStatus::Fail);
    CHECK(check("", "alice pw").status == VerifyStatus::Fail);
    CHECK(check("locked", "alice pw").status == VerifyStatus::Fail);
    auto unknown = check("nobody-here", "x");
    CHECK(unknown.status == VerifyStatus::Fail);
    CHECK(unknown.reason == "unknown user");

    // system_users = no: system accounts cannot log in.
    CHECK(check("carol", "carol pw").status == VerifyStatus::Fail);
    s.system_users = true;
    CHECK(check("carol", "carol pw").status == VerifyStatus::Ok);
    CHECK(check("carol", "alice pw").status == VerifyStatus::Fail);
    CHECK(check("dan", "x").status == VerifyStatus::TempFail);
    CHECK(check("mail", "carol pw").status == VerifyStatus::Fail);
    CHECK(check("eve", "carol pw").status == VerifyStatus::Fail);
}

TEST_CASE("failure delay arithmetic", "[auth][throttle]") {
    DelayPolicy p;  // 1 s first, 15 s cap, 300 s quiet period
    const std::pair<uint32_t, long> delays[] = {
        {0, 0},     {1, 1000},  {2, 2000},   {3, 4000},           {4, 8000},
        {5, 15000}, {6, 15000}, {40, 15000}, {UINT32_MAX, 15000},
    };
    for (auto [n, ms] : delays) {
        INFO(n);
        CHECK(failure_delay(n, p).count() == ms);
    }
    const std::tuple<uint32_t, long, uint32_t> decays[] = {
        {8, 0, 8},   {8, 299, 8}, {8, 300, 4},  {8, 599, 4},
        {8, 600, 2}, {8, 900, 1}, {8, 1200, 0}, {UINT32_MAX, 300 * 40, 0},
        {0, 5, 0},   {8, -10, 8},
    };
    for (auto [n, secs, left] : decays) {
        INFO(n << " after " << secs << "s");
        CHECK(decay_failures(n, seconds(secs), p) == left);
    }
    CHECK(client_key("192.0.2.7") == "192.0.2.7");
    CHECK(client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64");
    CHECK(client_key("2001:db8:1:2::ffff") == client_key("2001:db8:1:2:aaaa::1"));
    CHECK(client_key("::ffff:192.0.2.7") == "::ffff:192.0.2.7");
    CHECK(client_key("not an address") == "not an address");
}

TEST_CASE("throttle: failures grow, successes are held alike and reset", "[auth][throttle]") {
    Throttle t;
    auto now = Clock::time_point{} + std::chrono::hours(1000);
    CHECK(t.on_attempt("192.0.2.1", "alice", Attempt::Success, now) == milliseconds(0));
    CHECK(t.on_attempt("192.0.2.1", "alice", Attempt::Failure, now) == milliseconds(1000));
    CHECK(t.on_attempt("192.0.2.1", "alice", Attempt::Failure, now) == milliseconds(2000));
    // Another client, same user: the user's count decides.
    CHECK(t.on_attempt("192.0.2.2", "Alice", Attempt::Failure, now) == milliseconds(4000));
    // The first client guessing other users: its own count decides.
    CHECK(t.on_attempt("192.0.2.1", "bob", Attempt::Failure, now) == milliseconds(4000));
    CHECK(t.on_attempt("192.0.2.1", "carol", Attempt::Failure, now) == milliseconds(8000));
    CHECK(t.on_attempt("192.0.2.1", "dave", Attempt::Failure, now) == milliseconds(15000));
    CHECK(t.on_attempt("192.0.2.1", "erin", Attempt::Failure, now) == milliseconds(15000));
    // A temporary failure is held as long as the counts say, changing nothing.
    CHECK(t.on_attempt("192.0.2.1", "x", Attempt::Other, now) == milliseconds(15000));
    // A success after failures looks like a failure from the outside ...
    CHECK(t.on_attempt("192.0.2.9", "alice", Attempt::Success, now) == milliseconds(8000));
    // ... and clears the user's count (the 192.0.2.9 client had none).
    CHECK(t.users().count("alice", now) == 0);
    CHECK(t.on_attempt("192.0.2.9", "alice", Attempt::Failure, now) == milliseconds(1000));
    // Quiet periods halve the counts: 192.0.2.1 had 6 failures.
    CHECK(t.clients().count("192.0.2.1", now) == 6);
    CHECK(t.clients().count("192.0.2.1", now + seconds(300)) == 3);
    CHECK(t.on_attempt("192.0.2.1", "zed", Attempt::Failure, now + seconds(600)) ==
          milliseconds(2000));
}

TEST_CASE("throttle: the counters stay bounded", "[auth][throttle]") {
    DelayPolicy p;
    p.max_tracked = 100;
    p.max_key = 16;
    FailureCounter c(p);
    auto now = Clock::time_point{} + std::chrono::hours(1000);
    for (int i = 0; i < 1000; ++i) {
        c.record_failure("client-" + std::to_string(i), now + milliseconds(i));
        CHECK(c.tracked() <= 100);
    }
    // The most recent keys survive.
    CHECK(c.count("client-999", now + seconds(1)) == 1);
    // Keys are cut at max_key bytes.
    c.record_failure(std::string(16, 'k') + "tail-a", now);
    CHECK(c.count(std::string(16, 'k') + "tail-b", now) == 1);
    // Decayed entries are forgotten first.
    FailureCounter d(p);
    for (int i = 0; i < 100; ++i) d.record_failure("old-" + std::to_string(i), now);
    d.record_failure("new", now + std::chrono::hours(10));
    CHECK(d.tracked() == 1);
}

TEST_CASE("sender ownership table", "[auth][senders]") {
    auto users = users_of(
        "alice:x:5000:5000:/var/vmail/alice:\n"
        "bob:x:5000:5000:/var/vmail/bob:\n"
        "admin:x:5000:5000:/var/vmail/admin:\n");
    auto aliases = aliases_of(
        "staff: alice, bob\n"
        "team: staff\n"
        "sales: \\alice\n"
        "ext: someone@elsewhere.example\n"
        "loop1: loop2\n"
        "loop2: loop1\n"
        "pipe: \"|/bin/true\"\n"
        "postmaster: admin\n");
    FakeSystemUsers sys;
    sys.accounts["carol"] = {1001, "$6$x"};
    sys.accounts["daemon"] = {1, "*"};
    ResolverSettings s;
    s.domains = {"example.org", "example.net"};
    s.system_users = true;
    auto map = parse_sender_map({"alice:Info@Partner.example", "bob:@lists.example", "admin:*"});
    REQUIRE(map.ok());

    struct Case {
        const char* user;
        const char* address;
        bool owned;
    };
    const Case cases[] = {
        {"alice", "alice@example.org", true},
        {"alice", "ALICE@Example.NET", true},
        {"Alice", "alice@example.org", true},
        {"alice", "alice+news@example.org", true},
        {"alice", "\"alice\"@example.org", true},
        {"alice", "", true},                          // the null sender
        {"alice", "bob@example.org", false},          // someone else
        {"alice", "alice@elsewhere.example", false},  // not our domain
        {"alice", "alice@example.org.", false},
        {"alice", "alice", false},             // a bare name is no sender
        {"alice", "staff@example.org", true},  // an alias that reaches her
        {"bob", "staff@example.org", true},
        {"bob", "team@example.org", true},  // nested
        {"carol", "staff@example.org", false},
        {"alice", "sales@example.org", true},  // \alice
        {"bob", "sales@example.org", false},
        {"alice", "ext@example.org", false},
        {"alice", "loop1@example.org", false},  // a loop ends, owned by nobody
        {"alice", "pipe@example.org", false},
        {"alice", "postmaster@example.org", false},
        {"admin", "postmaster@example.org", true},
        {"alice", "nobody@example.org", false},
        {"carol", "carol@example.net", true},     // a system user
        {"daemon", "daemon@example.org", false},  // not a regular account
        {"alice", "info@partner.example", true},  // the map, any case
        {"alice", "sales@partner.example", false},
        {"bob", "anything@lists.example", true},
        {"bob", "x@sub.lists.example", false},
        {"bob", "alice@example.org", false},
        {"admin", "ceo@bank.example", true},  // user:*
        {"", "alice@example.org", false},
    };
    for (const auto& c : cases) {
        INFO(c.user << " " << c.address);
        CHECK(owns_sender(c.user, c.address, *map, s, users, aliases, sys) == c.owned);
    }

    // Bounds: a long chain of aliases is cut, not followed without end.
    std::string chain;
    for (int i = 0; i < 30; ++i)
        chain += "a" + std::to_string(i) + ": a" + std::to_string(i + 1) + "\n";
    chain += "a30: alice\n";
    auto deep = aliases_of(chain);
    CHECK(owns_sender("alice", "a25@example.org", {}, s, users, deep, sys));
    CHECK_FALSE(owns_sender("alice", "a0@example.org", {}, s, users, deep, sys));
}

TEST_CASE("sender map entries", "[auth][senders]") {
    CHECK(parse_sender_map({}).ok());
    auto ok = parse_sender_map({"Alice:X@Y.example", "bob:@d.example", "carol:*"});
    REQUIRE(ok.ok());
    CHECK(ok->at(0).user == "alice");
    CHECK(ok->at(0).pattern == "x@y.example");
    for (const char* bad : {"alice", "alice:", ":x@y", "alice:x", "alice:x@", "Al/ice:x@y",
                            "alice:a b@c", "alice:@"}) {
        INFO(bad);
        auto r = parse_sender_map({bad});
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().find(bad) != std::string::npos);
    }
}

TEST_CASE("users file edits keep everything else", "[auth][users][edit]") {
    const std::string text =
        "# users\n"
        "alice:$6$a:5000:5000:/var/vmail/alice:\n"
        "\n"
        "bob:$6$b:5000:5000:/var/vmail/bob:mbox\n";
    VirtualUser carol;
    carol.name = "carol";
    carol.password_hash = "$y$c";
    carol.uid = 5000;
    carol.gid = 5001;
    carol.home = "/var/vmail/carol";
    auto added = users_add(text, carol, "");
    REQUIRE(added.ok());
    CHECK(*added == text + "carol:$y$c:5000:5001:/var/vmail/carol:\n");
    CHECK_FALSE(users_add(*added, carol, "").ok());                 // exists
    CHECK_FALSE(users_add("alice:x:1:1:/a:", carol, "../x").ok());  // invalid result
    auto noeol = users_add("alice:x:1:1:/a:", carol, "");
    REQUIRE(noeol.ok());
    CHECK(*noeol == "alice:x:1:1:/a:\ncarol:$y$c:5000:5001:/var/vmail/carol:\n");

    auto changed = users_set_hash(text, "bob", "$y$new");
    REQUIRE(changed.ok());
    CHECK(*changed ==
          "# users\nalice:$6$a:5000:5000:/var/vmail/alice:\n\n"
          "bob:$y$new:5000:5000:/var/vmail/bob:mbox\n");
    CHECK_FALSE(users_set_hash(text, "nobody", "$y$x").ok());
    CHECK_FALSE(users_set_hash(text, "bob", "bad:hash").ok());

    auto removed = users_remove(text, "alice");
    REQUIRE(removed.ok());
    CHECK(*removed == "# users\n\nbob:$6$b:5000:5000:/var/vmail/bob:mbox\n");
    CHECK_FALSE(users_remove(text, "carol").ok());
    CHECK_FALSE(users_remove(text, "# users").ok());

    auto table = users_of(text + "dave:*:1:1:/d:\"x\n");
    const std::string json = users_json(table);
    CHECK(json.find("\"name\":\"alice\"") != std::string::npos);
    CHECK(json.find("$6$") == std::string::npos);  // never the hashes
    CHECK(json.find("\"mailbox\":\"/d/\\\"x\"") != std::string::npos);
    CHECK(json.find("\"login\":false") != std::string::npos);
    CHECK(json.front() == '[');
}

TEST_CASE("crypt_hash makes each scheme and verifies", "[auth][password]") {
    for (const char* prefix : {"$y$", "$6$", "$2b$"}) {
        INFO(prefix);
        auto h = crypt_hash("s3cret", prefix);
        REQUIRE(h.ok());
        CHECK(h->rfind(prefix, 0) == 0);
        CHECK(crypt_verify("s3cret", *h));
        CHECK_FALSE(crypt_verify("s3cret!", *h));
    }
}
