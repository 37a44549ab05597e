// The retry policy (queue-manager/schedule.hpp) from tables: attempt n →
// delay, and next_attempt() around the lifetime deadline.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

#include "queue-manager/schedule.hpp"

using namespace pbx::qm;
using std::chrono::seconds;

namespace {

Seconds t(int64_t s) {
    return Seconds{seconds{s}};
}

constexpr int64_t kDay = 86400;

}  // namespace

TEST_CASE("schedule: backoff doubles from the minimum up to the maximum", "[queue][schedule]") {
    RetryPolicy p{seconds{300}, seconds{4000}, seconds{5 * kDay}};
    struct Row {
        uint32_t attempts;
        int64_t delay;
    };
    const Row table[] = {
        {0, 0},    {1, 300},  {2, 600},  {3, 1200},  {4, 2400},
        {5, 4000}, {6, 4000}, {7, 4000}, {64, 4000}, {std::numeric_limits<uint32_t>::max(), 4000},
    };
    for (const Row& r : table) {
        INFO("attempts " << r.attempts);
        CHECK(backoff(r.attempts, p).count() == r.delay);
    }
}

TEST_CASE("schedule: odd configurations", "[queue][schedule]") {
    struct Row {
        int64_t min, max;
        uint32_t attempts;
        int64_t delay;
    };
    const Row table[] = {
        {0, 0, 1, 1},         // never a zero wait: the scheduler would spin
        {0, 100, 3, 4},       // 1, 2, 4
        {500, 100, 1, 100},   // a minimum above the maximum: the maximum wins
        {60, 3600, 7, 3600},  // 60·2^6 = 3840 → capped
        {60, 3600, 6, 1920}, {1, 1000000, 21, 1000000},
    };
    for (const Row& r : table) {
        INFO("min " << r.min << " max " << r.max << " attempts " << r.attempts);
        RetryPolicy p{seconds{r.min}, seconds{r.max}, seconds{kDay}};
        CHECK(backoff(r.attempts, p).count() == r.delay);
    }
}

TEST_CASE("schedule: next_attempt table", "[queue][schedule]") {
    RetryPolicy p{seconds{300}, seconds{4000}, seconds{5 * kDay}};
    const int64_t arrival = 1700000000;
    struct Row {
        uint32_t attempts;
        int64_t now;  // relative to arrival
        bool expired;
        int64_t at;  // relative to arrival
    };
    const Row table[] = {
        {0, 0, false, 0},                  // never tried: now
        {0, 10 * kDay, false, 10 * kDay},  // not tried is not expired
        {1, 5, false, 305},
        {2, 400, false, 1000},
        {3, 1000, false, 2200},
        {9, 2 * kDay, false, 2 * kDay + 4000},
        {9, 5 * kDay - 1000, false, 5 * kDay},  // the last try is at the deadline
        {9, 5 * kDay - 4000, false, 5 * kDay},
        {9, 5 * kDay - 4001, false, 5 * kDay - 1},
        {9, 5 * kDay, true, 0},  // failing at the deadline: give up
        {1, 5 * kDay, true, 0},
        {1, 6 * kDay, true, 0},
    };
    for (const Row& r : table) {
        INFO("attempts " << r.attempts << " now arrival+" << r.now);
        NextAttempt n = next_attempt(t(arrival), r.attempts, t(arrival + r.now), p);
        CHECK(n.expired == r.expired);
        if (!r.expired) CHECK(n.at == t(arrival + r.at));
    }
}

TEST_CASE("schedule: a whole retry history stays inside the lifetime", "[queue][schedule]") {
    RetryPolicy p{seconds{300}, seconds{4000}, seconds{kDay}};
    Seconds arrival = t(1700000000);
    Seconds now = arrival;
    uint32_t attempts = 0;
    std::vector<int64_t> waits;
    for (;;) {
        ++attempts;  // an attempt at `now` failed
        NextAttempt n = next_attempt(arrival, attempts, now, p);
        if (n.expired) break;
        REQUIRE(n.at > now);
        REQUIRE(n.at <= arrival + p.maximal_lifetime);
        waits.push_back((n.at - now).count());
        now = n.at;
    }
    CHECK(now == arrival + p.maximal_lifetime);
    REQUIRE(waits.size() >= 5);
    CHECK(waits[0] == 300);
    CHECK(waits[1] == 600);
    CHECK(waits[4] == 4000);
    // 300+600+1200+2400 = 4500, then 20 waits of 4000 (to 84500), one cut
    // short at the deadline, and the attempt there expires.
    CHECK(waits.size() == 4 + 20 + 1);
    CHECK(waits.back() == 1900);
    CHECK(attempts == 4 + 20 + 1 + 1);
}
