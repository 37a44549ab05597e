#include "queue-manager/schedule.hpp"

#include <algorithm>

namespace pbx::qm {

RetryPolicy RetryPolicy::from_config(const config::Config& cfg) {
    RetryPolicy p;
    p.minimal_backoff = cfg.duration("minimal_backoff_time");
    p.maximal_backoff = cfg.duration("maximal_backoff_time");
    p.maximal_lifetime = cfg.duration("maximal_queue_lifetime");
    return p;
}

std::chrono::seconds backoff(uint32_t attempts, const RetryPolicy& policy) {
    using std::chrono::seconds;
    if (attempts == 0) return seconds{0};
    seconds cap = std::max(policy.maximal_backoff, seconds{1});
    seconds delay = std::max(policy.minimal_backoff, seconds{1});
    // Doubling stops at the cap, so no shift can overflow.
    for (uint32_t i = 1; i < attempts && delay < cap; ++i) delay *= 2;
    return std::min(delay, cap);
}

NextAttempt next_attempt(Seconds arrival, uint32_t attempts, Seconds now,
                         const RetryPolicy& policy) {
    if (attempts == 0) return {false, now};
    Seconds deadline = arrival + policy.maximal_lifetime;
    if (now >= deadline) return {true, {}};
    Seconds at = now + backoff(attempts, policy);
    return {false, std::min(at, deadline)};
}

}  // namespace pbx::qm
