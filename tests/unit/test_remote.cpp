// remote-delivery's pure parts: MX record parsing and ordering (preference,
// random among equals, null MX, implicit MX, NXDOMAIN, SERVFAIL), next hops,
// the TLS policy table and the relay credentials file.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>

#include "remote-delivery/dns.hpp"
#include "remote-delivery/policy.hpp"

using namespace pbx::remote;
using pbx::smtp::client::TlsLevel;

namespace {

std::string wire(std::string_view name) {
    std::string out;
    size_t start = 0;
    while (start < name.size()) {
        size_t dot = name.find('.', start);
        if (dot == std::string_view::npos) dot = name.size();
        out += static_cast<char>(dot - start);
        out += name.substr(start, dot - start);
        start = dot + 1;
    }
    out += '\0';
    return out;
}

std::string mx_rdata(uint16_t pref, std::string_view name) {
    std::string out;
    out += static_cast<char>(pref >> 8);
    out += static_cast<char>(pref & 0xff);
    return out + wire(name);
}

}  // namespace

TEST_CASE("MX RDATA: valid and malformed") {
    auto r = parse_mx_rdata(mx_rdata(10, "MX1.Example.NET"));
    REQUIRE(r);
    CHECK(r->preference == 10);
    CHECK(r->host == "mx1.example.net");
    auto null = parse_mx_rdata(mx_rdata(0, ""));
    REQUIRE(null);
    CHECK(null->host.empty());
    const std::string bad[] = {
        "",
        std::string("\0", 1),
        std::string("\0\x0a", 2),  // no name
        std::string("\0\x0a\x05"
                    "abc",
                    6),                    // label runs past the end
        std::string("\0\x0a\xc0\x0c", 4),  // a compression pointer
        std::string("\0\x0a\x03"
                    "a b\x00",
                    7),                        // a space in a label
        mx_rdata(10, "mx.example.net") + "x",  // trailing bytes
        std::string("\0\x0a\x03"
                    "abc",
                    6),  // no final root label
    };
    for (const auto& b : bad) CHECK_FALSE(parse_mx_rdata(b));
    // Byte by byte: every prefix of a valid record is refused, never read past.
    std::string good = mx_rdata(5, "mail.example.org");
    for (size_t n = 0; n < good.size(); ++n) CHECK_FALSE(parse_mx_rdata(good.substr(0, n)));
}

TEST_CASE("MX order: by preference, random among equals, duplicates and '.' dropped") {
    std::vector<MxRecord> recs = {{20, "c.example"}, {10, "a.example"}, {10, "b.example"},
                                  {30, ""},          {20, "c.example"}, {5, "first.example"}};
    std::set<std::string> seen_second;
    for (unsigned seed = 0; seed < 64; ++seed) {
        std::mt19937 rng(seed);
        auto out = order_mx(recs, rng);
        REQUIRE(out.size() == 4);
        CHECK(out[0].host == "first.example");
        CHECK((out[1].host == "a.example" || out[1].host == "b.example"));
        CHECK((out[2].host == "a.example" || out[2].host == "b.example"));
        CHECK(out[1].host != out[2].host);
        CHECK(out[3].host == "c.example");
        seen_second.insert(out[1].host);
    }
    CHECK(seen_second.size() == 2);  // both orders happen
}

TEST_CASE("host plans: MX, implicit MX, null MX, NXDOMAIN, SERVFAIL") {
    std::mt19937 rng(1);
    MxAnswer ok{DnsStatus::Ok, {{20, "mx2.example"}, {10, "mx1.example"}}, ""};
    HostPlan p = plan_hosts("example", ok, rng);
    CHECK(p.kind == HostPlan::Kind::Hosts);
    CHECK(p.hosts == std::vector<std::string>{"mx1.example", "mx2.example"});

    p = plan_hosts("example", MxAnswer{DnsStatus::NoData, {}, ""}, rng);
    CHECK(p.kind == HostPlan::Kind::Hosts);
    CHECK(p.hosts == std::vector<std::string>{"example"});

    p = plan_hosts("nomail.example", MxAnswer{DnsStatus::Ok, {{0, ""}}, ""}, rng);
    CHECK(p.kind == HostPlan::Kind::Fail);
    CHECK(p.dsn == "5.1.10");
    CHECK_THAT(p.reply, Catch::StartsWith("556 5.1.10"));

    // A "." among real MX records is not a null MX: it is skipped.
    p = plan_hosts("x.example", MxAnswer{DnsStatus::Ok, {{0, ""}, {10, "mx.x.example"}}, ""}, rng);
    CHECK(p.kind == HostPlan::Kind::Hosts);
    CHECK(p.hosts == std::vector<std::string>{"mx.x.example"});

    p = plan_hosts("gone.example", MxAnswer{DnsStatus::NxDomain, {}, ""}, rng);
    CHECK(p.kind == HostPlan::Kind::Fail);
    CHECK(p.dsn == "5.4.4");

    p = plan_hosts("flaky.example", MxAnswer{DnsStatus::TempFail, {}, "SERVFAIL"}, rng);
    CHECK(p.kind == HostPlan::Kind::Defer);
    CHECK(p.dsn == "4.4.3");
    CHECK_THAT(p.reply, Catch::Contains("SERVFAIL"));
}

TEST_CASE("next hops") {
    struct Case {
        const char* in;
        bool ok;
        std::string host;
        uint16_t port;
        bool mx;
        std::string key;
    };
    const Case cases[] = {
        {"[smtp.ISP.example]:587", true, "smtp.isp.example", 587, false, "[smtp.isp.example]:587"},
        {"[smtp.isp.example]", true, "smtp.isp.example", 25, false, "[smtp.isp.example]:25"},
        {"relay.example:2525", true, "relay.example", 2525, true, "relay.example:2525"},
        {"relay.example", true, "relay.example", 25, true, "relay.example:25"},
        {"[127.0.0.1]:10025", true, "127.0.0.1", 10025, false, "[127.0.0.1]:10025"},
        {"[::1]:25", true, "::1", 25, false, "[::1]:25"},
        {"::1", false, "", 0, false, ""},
        {"[host", false, "", 0, false, ""},
        {"host:0", false, "", 0, false, ""},
        {"host:70000", false, "", 0, false, ""},
        {"host:25x", false, "", 0, false, ""},
        {"[host]x", false, "", 0, false, ""},
        {"ho st", false, "", 0, false, ""},
        {"", false, "", 0, false, ""},
    };
    for (const auto& c : cases) {
        INFO(c.in);
        auto h = parse_nexthop(c.in, 25);
        REQUIRE(h.ok() == c.ok);
        if (!c.ok) continue;
        CHECK(h->host == c.host);
        CHECK(h->port == c.port);
        CHECK(h->mx_lookup == c.mx);
        CHECK(h->key() == c.key);
    }
}

TEST_CASE("TLS policy table") {
    auto p = TlsPolicy::parse(
        "# comment\n"
        "\n"
        "example.org   verify\n"
        ".example.net\tencrypt\r\n"
        "[smtp.isp.example]:587 Encrypt\n"
        "plain.example none\n");
    REQUIRE(p.ok());
    CHECK(p->size() == 4);
    CHECK(p->lookup("example.org") == TlsLevel::Verify);
    CHECK(p->lookup("EXAMPLE.ORG") == TlsLevel::Verify);
    CHECK(p->lookup("sub.example.org") == std::nullopt);
    CHECK(p->lookup("a.example.net") == TlsLevel::Encrypt);
    CHECK(p->lookup("b.a.example.net") == TlsLevel::Encrypt);
    CHECK(p->lookup("example.net") == std::nullopt);
    CHECK(p->lookup("[smtp.isp.example]:587") == TlsLevel::Encrypt);
    CHECK(p->lookup("[smtp.isp.example]:25") == std::nullopt);
    CHECK(p->lookup("plain.example") == TlsLevel::None);

    const char* bad[] = {"example.org\n", "example.org sometimes\n", "a may\na verify\n"};
    for (const char* b : bad) {
        auto r = TlsPolicy::parse(b);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error(), Catch::StartsWith("line "));
    }
    auto where = TlsPolicy::parse("a may\n\nb maybe\n");
    REQUIRE_FALSE(where.ok());
    CHECK_THAT(where.error(), Catch::StartsWith("line 3:"));
}

TEST_CASE("relay credentials") {
    auto c = Credentials::parse(
        "[smtp.isp.example]:587 alice:pa:ss word\n"
        "other.example bob:x\n");
    REQUIRE(c.ok());
    auto hop = parse_nexthop("[smtp.isp.example]:587", 25);
    REQUIRE(hop.ok());
    const auto* cred = c->lookup(*hop);
    REQUIRE(cred);
    CHECK(cred->first == "alice");
    CHECK(cred->second == "pa:ss word");
    auto other = parse_nexthop("[other.example]:465", 25);
    REQUIRE(other.ok());
    REQUIRE(c->lookup(*other));
    CHECK(c->lookup(*other)->first == "bob");
    auto none = parse_nexthop("[third.example]", 25);
    CHECK(c->lookup(*none) == nullptr);
    for (const char* b : {"host\n", "host user\n", "host :pw\n", "host user:\n"})
        CHECK_FALSE(Credentials::parse(b).ok());
}

TEST_CASE("relay map") {
    auto m =
        RelayMap::parse("example.org [smtp.isp.example]:587\n.example.net relay.example\n", 25);
    REQUIRE(m.ok());
    auto a = m->lookup("Example.ORG");
    REQUIRE(a);
    CHECK(a->key() == "[smtp.isp.example]:587");
    CHECK(a->relay);
    auto b = m->lookup("a.example.net");
    REQUIRE(b);
    CHECK(b->key() == "relay.example:25");
    CHECK_FALSE(m->lookup("example.net"));
    CHECK_FALSE(m->lookup("sub.example.org"));
    CHECK_FALSE(RelayMap::parse("example.org [bad\n", 25).ok());
    CHECK_FALSE(RelayMap::parse("example.org\n", 25).ok());
}

TEST_CASE("sender relay map: full address, then @domain, then the null sender") {
    auto m = SenderRelayMap::parse(
        "# per sender\n"
        "Boss@Example.org [boss-relay.example]:2525\n"
        "@example.org [relay.example.org]\n"
        "@other.example relay.other.example:587\n"
        "<> [bounces.example]\n",
        25);
    REQUIRE(m.ok());
    CHECK(m->size() == 4);
    auto boss = m->lookup("boss@EXAMPLE.ORG");
    REQUIRE(boss);
    CHECK(boss->key() == "[boss-relay.example]:2525");
    CHECK(boss->relay);
    CHECK_FALSE(boss->mx_lookup);
    auto any = m->lookup("alice@example.org");
    REQUIRE(any);
    CHECK(any->key() == "[relay.example.org]:25");
    auto other = m->lookup("x@Other.Example");
    REQUIRE(other);
    CHECK(other->key() == "relay.other.example:587");
    CHECK(other->mx_lookup);
    auto null = m->lookup("");
    REQUIRE(null);
    CHECK(null->key() == "[bounces.example]:25");
    // A subdomain is another domain; an address without a listed domain
    // falls through (relayhost or MX).
    CHECK_FALSE(m->lookup("a@sub.example.org"));
    CHECK_FALSE(m->lookup("a@example.net"));
    CHECK_FALSE(m->lookup("example.org"));
    CHECK_FALSE(SenderRelayMap{}.lookup("a@example.org"));
    for (const char* bad : {"example.org [relay]\n", "user@ [relay]\n", "@example.org\n",
                            "@example.org [bad\n", "@a.example x\n@A.example y\n"})
        CHECK_FALSE(SenderRelayMap::parse(bad, 25).ok());
}

TEST_CASE("recipient domains") {
    CHECK(domain_of("bob@Example.NET") == "example.net");
    CHECK(domain_of("\"a@b\"@x.example") == "x.example");
    CHECK(domain_of("postmaster") == "");
    CHECK(domain_of("u@[192.0.2.1]") == "[192.0.2.1]");
}
