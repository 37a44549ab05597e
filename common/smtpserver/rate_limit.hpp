// Per-user rate limits of submitd (submission_max_messages_per_hour,
// submission_max_recipients_per_hour): sliding one-hour windows, counted when
// a MAIL FROM or RCPT TO is accepted (as Postfix's anvil counts requests, not
// deliveries). Pure: the caller passes the time. Memory is bounded: a window
// holds at most its limit of time stamps, and users whose windows are empty
// are forgotten.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>

namespace pbx::smtpserver {

class RateLimiter {
  public:
    using Clock = std::chrono::steady_clock;
    struct Limits {
        uint64_t messages_per_hour = 0;    // 0: no limit
        uint64_t recipients_per_hour = 0;  // 0: no limit
        Clock::duration window = std::chrono::hours(1);
    };

    explicit RateLimiter(Limits limits) : limits_(limits) {}

    // Counts one message (recipient) for `user` and returns true, or returns
    // false without counting when the user's last hour is full.
    bool take_message(std::string_view user, Clock::time_point now);
    bool take_recipient(std::string_view user, Clock::time_point now);

    // What the last hour holds for `user` (tests, logs).
    uint64_t messages(std::string_view user, Clock::time_point now);
    uint64_t recipients(std::string_view user, Clock::time_point now);
    size_t users() const { return users_.size(); }

  private:
    struct Windows {
        std::deque<Clock::time_point> messages, recipients;
    };
    bool take(std::string_view user, bool message, Clock::time_point now);
    void expire(std::deque<Clock::time_point>& w, Clock::time_point now) const;
    void forget_idle(Clock::time_point now);

    Limits limits_;
    std::map<std::string, Windows, std::less<>> users_;
    Clock::time_point last_sweep_{};
};

}  // namespace pbx::smtpserver
