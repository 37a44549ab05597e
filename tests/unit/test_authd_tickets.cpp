// authd's side of the login/session split: one-time tickets and the recent
// logins of POP-before-SMTP (authd/tickets.hpp).
#include <catch2/catch.hpp>
#include <set>

#include "authd/tickets.hpp"

using namespace pbx;
using namespace pbx::authd;
using namespace std::chrono_literals;

namespace {

UserMailbox alice() {
    return UserMailbox{
        "alice", 1001, 1001, "/home/alice", "/home/alice/Maildir/", auth::MailboxFormat::Maildir};
}

}  // namespace

TEST_CASE("tickets: random, one-time, short-lived", "[authd][tickets]") {
    TicketStore store(30s, 3);
    const auto t0 = auth::Clock::now();
    auto a = store.issue(alice(), "pop3", "192.0.2.1", t0);
    auto b = store.issue(alice(), "pop3", "192.0.2.1", t0);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->size() == 64);
    CHECK(*a != *b);
    CHECK(a->find_first_not_of("0123456789abcdef") == std::string::npos);

    auto r = store.redeem(*a, t0 + 1s);
    REQUIRE(r);
    CHECK(r->box.user == "alice");
    CHECK(r->box.uid == 1001);
    CHECK(r->service == "pop3");
    CHECK(r->client_address == "192.0.2.1");
    CHECK_FALSE(store.redeem(*a, t0 + 2s));   // once only
    CHECK_FALSE(store.redeem("0000", t0));    // unknown
    CHECK_FALSE(store.redeem(*b, t0 + 31s));  // expired
    CHECK_FALSE(store.redeem(*b, t0 + 1s));   // and gone after that try

    // Full: expired tickets make room; live ones do not.
    REQUIRE(store.issue(alice(), "imap", "", t0));
    REQUIRE(store.issue(alice(), "imap", "", t0));
    REQUIRE(store.issue(alice(), "imap", "", t0));
    CHECK_FALSE(store.issue(alice(), "imap", "", t0 + 1s));
    CHECK(store.issue(alice(), "imap", "", t0 + 31s));
    CHECK(store.size() == 1);
}

TEST_CASE("POP-before-SMTP: recent logins expire and are bounded", "[authd][tickets]") {
    RecentLogins recent(2);
    const auto t0 = auth::Clock::now();
    recent.record("192.0.2.1", t0 + 10min);
    CHECK(recent.remaining("192.0.2.1", t0 + 1min));
    CHECK_FALSE(recent.remaining("192.0.2.2", t0));
    CHECK_FALSE(recent.remaining("192.0.2.1", t0 + 10min));
    recent.record("192.0.2.1", t0 + 5min);  // never shortens
    CHECK(recent.remaining("192.0.2.1", t0 + 9min));
    recent.record("192.0.2.2", t0 + 20min);
    recent.record("192.0.2.3", t0 + 30min);  // the one that ends first goes
    CHECK(recent.size() == 2);
    CHECK_FALSE(recent.remaining("192.0.2.1", t0));
    CHECK(recent.remaining("192.0.2.3", t0));
    recent.record("", t0 + 1h);
    CHECK(recent.size() == 2);
}
