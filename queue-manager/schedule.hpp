// The retry policy of the queue (DESIGN §5, STYLE 9; qmail's nextretry()):
// a pure function of the message's arrival, the attempts made so far and the
// clock, so that the whole policy is one table in a unit test and the
// scheduler only calls it.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/config/config.hpp"

namespace pbx::qm {

using Seconds = std::chrono::sys_seconds;

struct RetryPolicy {
    std::chrono::seconds minimal_backoff{300};
    std::chrono::seconds maximal_backoff{4000};
    std::chrono::seconds maximal_lifetime{5 * 24 * 3600};

    // minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime.
    static RetryPolicy from_config(const config::Config& cfg);
};

struct NextAttempt {
    bool expired = false;  // give up now: the recipient fails (a bounce)
    Seconds at{};          // when to try again (meaningful when !expired)

    bool operator==(const NextAttempt&) const = default;
};

// After a failed (temporary) attempt: `attempts` counts the attempts made so
// far, the one that just failed included.
//
//   attempts == 0            → at = now (never tried: as soon as possible)
//   now >= arrival+lifetime  → expired
//   otherwise                → at = now + min(minimal·2^(attempts−1), maximal),
//                              but never after arrival+lifetime: the last
//                              attempt happens at the deadline, and one that
//                              fails there expires.
//
// The backoff is at least one second whatever the configuration says, so a
// zero minimal_backoff_time cannot make the scheduler spin.
NextAttempt next_attempt(Seconds arrival, uint32_t attempts, Seconds now,
                         const RetryPolicy& policy);

// The wait alone: min(max(minimal, 1s)·2^(attempts−1), max(maximal, 1s)) for
// attempts >= 1, 0 for attempts == 0.
std::chrono::seconds backoff(uint32_t attempts, const RetryPolicy& policy);

}  // namespace pbx::qm
