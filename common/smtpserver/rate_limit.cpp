#include "common/smtpserver/rate_limit.hpp"

namespace pbx::smtpserver {

void RateLimiter::expire(std::deque<Clock::time_point>& w, Clock::time_point now) const {
    while (!w.empty() && now - w.front() >= limits_.window) w.pop_front();
}

void RateLimiter::forget_idle(Clock::time_point now) {
    // At most once per window: each user's stamps expire, empty users go.
    if (now - last_sweep_ < limits_.window) return;
    last_sweep_ = now;
    for (auto it = users_.begin(); it != users_.end();) {
        expire(it->second.messages, now);
        expire(it->second.recipients, now);
        if (it->second.messages.empty() && it->second.recipients.empty())
            it = users_.erase(it);
        else
            ++it;
    }
}

bool RateLimiter::take(std::string_view user, bool message, Clock::time_point now) {
    const uint64_t limit = message ? limits_.messages_per_hour : limits_.recipients_per_hour;
    if (limit == 0) return true;
    forget_idle(now);
    auto it = users_.find(user);
    if (it == users_.end()) it = users_.emplace(std::string(user), Windows{}).first;
    auto& w = message ? it->second.messages : it->second.recipients;
    expire(w, now);
    if (w.size() >= limit) return false;
    w.push_back(now);
    return true;
}

bool RateLimiter::take_message(std::string_view user, Clock::time_point now) {
    return take(user, true, now);
}

bool RateLimiter::take_recipient(std::string_view user, Clock::time_point now) {
    return take(user, false, now);
}

uint64_t RateLimiter::messages(std::string_view user, Clock::time_point now) {
    auto it = users_.find(user);
    if (it == users_.end()) return 0;
    expire(it->second.messages, now);
    return it->second.messages.size();
}

uint64_t RateLimiter::recipients(std::string_view user, Clock::time_point now) {
    auto it = users_.find(user);
    if (it == users_.end()) return 0;
    expire(it->second.recipients, now);
    return it->second.recipients.size();
}

}  // namespace pbx::smtpserver
