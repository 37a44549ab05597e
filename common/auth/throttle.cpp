#include "common/auth/throttle.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <vector>

#include "common/auth/textfile.hpp"

namespace pbx::auth {

// Counts stop growing here: the delay is capped long before, and the bound
// keeps the arithmetic away from overflow.
static constexpr uint32_t kMaxFailures = 1u << 20;

std::chrono::milliseconds failure_delay(uint32_t failures, const DelayPolicy& policy) {
    if (failures == 0) return std::chrono::milliseconds{0};
    uint32_t shift = failures - 1;
    auto d = policy.first;
    for (uint32_t i = 0; i < shift && d < policy.max; ++i) d *= 2;
    return std::min(d, policy.max);
}

uint32_t decay_failures(uint32_t failures, Clock::duration quiet_for, const DelayPolicy& policy) {
    if (quiet_for <= Clock::duration::zero() || policy.quiet.count() <= 0) return failures;
    auto periods = quiet_for / policy.quiet;
    if (periods >= 32) return 0;
    return failures >> periods;
}

std::string client_key(std::string_view address) {
    if (address.size() >= INET6_ADDRSTRLEN || address.find(':') == std::string_view::npos)
        return std::string(address);
    std::string text(address);
    unsigned char bytes[16];
    if (inet_pton(AF_INET6, text.c_str(), bytes) != 1) return text;
    // IPv4-mapped addresses stay whole.
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(bytes, bytes + 12, kMapped)) return text;
    std::fill(bytes + 8, bytes + 16, 0);
    char out[INET6_ADDRSTRLEN];
    if (!inet_ntop(AF_INET6, bytes, out, sizeof out)) return text;
    return std::string(out) + "/64";
}

std::string FailureCounter::key_of(std::string_view key) const {
    return std::string(key.substr(0, policy_.max_key));
}

uint32_t FailureCounter::count(std::string_view key, Clock::time_point now) const {
    auto it = entries_.find(key_of(key));
    if (it == entries_.end()) return 0;
    return decay_failures(it->second.failures, now - it->second.last, policy_);
}

void FailureCounter::make_room(Clock::time_point now) {
    std::erase_if(entries_, [&](const auto& kv) {
        return decay_failures(kv.second.failures, now - kv.second.last, policy_) == 0;
    });
    if (entries_.size() < policy_.max_tracked) return;
    // Evict a quarter at once, so a flood of new keys costs one scan per
    // max_tracked/4 insertions, not one per insertion.
    std::vector<Clock::time_point> times;
    times.reserve(entries_.size());
    for (const auto& kv : entries_) times.push_back(kv.second.last);
    size_t cut = std::max<size_t>(1, times.size() / 4);
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(cut - 1),
                     times.end());
    Clock::time_point limit = times[cut - 1];
    size_t removed = 0;
    std::erase_if(entries_, [&](const auto& kv) {
        if (removed < cut && kv.second.last <= limit) {
            ++removed;
            return true;
        }
        return false;
    });
}

uint32_t FailureCounter::record_failure(std::string_view key, Clock::time_point now) {
    std::string k = key_of(key);
    auto it = entries_.find(k);
    if (it == entries_.end()) {
        if (policy_.max_tracked == 0) return 1;
        if (entries_.size() >= policy_.max_tracked) make_room(now);
        it = entries_.emplace(std::move(k), Entry{}).first;
    }
    Entry& e = it->second;
    uint32_t n = decay_failures(e.failures, now - e.last, policy_);
    e.failures = std::min(n + 1, kMaxFailures);
    e.last = now;
    return e.failures;
}

void FailureCounter::clear(std::string_view key) {
    entries_.erase(key_of(key));
}

std::chrono::milliseconds Throttle::on_attempt(std::string_view client, std::string_view user,
                                               Attempt outcome, Clock::time_point now) {
    std::string ckey = client_key(client);
    std::string ukey = ascii_lower(user);
    uint32_t before = std::max(clients_.count(ckey, now), users_.count(ukey, now));
    switch (outcome) {
        case Attempt::Failure: {
            uint32_t c = clients_.record_failure(ckey, now);
            uint32_t u = users_.record_failure(ukey, now);
            return failure_delay(std::max(c, u), policy_);
        }
        case Attempt::Success:
            clients_.clear(ckey);
            users_.clear(ukey);
            return before ? failure_delay(before + 1, policy_) : std::chrono::milliseconds{0};
        case Attempt::Other:
            return failure_delay(before, policy_);
    }
    return std::chrono::milliseconds{0};
}

}  // namespace pbx::auth
