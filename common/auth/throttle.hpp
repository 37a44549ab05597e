// Growing delays after failed password checks, per client address and per
// user name (Dovecot's auth penalty, OpenSSH's per-source penalties). The
// arithmetic is pure (failure_delay, decay_failures); Throttle keeps the
// bounded counters and says how long to hold each answer. Holding the answer
// is the caller's job, with a timer, never by sleeping.
//
// Policy: a failure is answered after failure_delay(n), n being the larger of
// the client's and the user's failure counts including this one (1 s, 2 s,
// 4 s, 8 s, then the 15 s cap). A success for a client or user that has
// failures is held just as long as a failure would have been, so an impatient
// caller learns nothing from timing; it then clears both counters. Counts halve
// after each quiet period without failures.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pbx::auth {

using Clock = std::chrono::steady_clock;

struct DelayPolicy {
    std::chrono::milliseconds first{1000};  // delay after the first failure
    std::chrono::milliseconds max{15000};   // cap
    std::chrono::seconds quiet{300};        // each such period without failures halves the count
    size_t max_tracked = 65536;             // keys per counter (client addresses, users)
    size_t max_key = 256;                   // bytes of a key; longer ones are cut
};

// 0 → 0; n → first · 2^(n-1), at most max.
std::chrono::milliseconds failure_delay(uint32_t failures, const DelayPolicy& policy);
// The count left after `quiet_for` without failures: halved once per full
// quiet period.
uint32_t decay_failures(uint32_t failures, Clock::duration quiet_for, const DelayPolicy& policy);

// The key for a client address: IPv6 addresses count per /64 (one host
// usually owns the whole prefix); anything else as given.
std::string client_key(std::string_view address);

// Failure counts per key, bounded: when max_tracked keys are held, counts
// that have decayed to zero are forgotten first, then the least recently
// failed quarter.
class FailureCounter {
  public:
    explicit FailureCounter(const DelayPolicy& policy) : policy_(policy) {}
    uint32_t count(std::string_view key, Clock::time_point now) const;
    uint32_t record_failure(std::string_view key, Clock::time_point now);  // the new count
    void clear(std::string_view key);
    size_t tracked() const { return entries_.size(); }

  private:
    struct Entry {
        uint32_t failures = 0;
        Clock::time_point last;
    };
    std::string key_of(std::string_view key) const;
    void make_room(Clock::time_point now);

    DelayPolicy policy_;
    std::unordered_map<std::string, Entry> entries_;
};

enum class Attempt { Success, Failure, Other };

class Throttle {
  public:
    explicit Throttle(const DelayPolicy& policy = {})
        : policy_(policy), clients_(policy), users_(policy) {}

    // Records the outcome of one check and returns how long to hold its
    // answer. `Other` (a temporary failure) is held as long as the current
    // counts say, without changing them.
    std::chrono::milliseconds on_attempt(std::string_view client, std::string_view user,
                                         Attempt outcome, Clock::time_point now);

    const FailureCounter& clients() const { return clients_; }
    const FailureCounter& users() const { return users_; }

  private:
    DelayPolicy policy_;
    FailureCounter clients_;
    FailureCounter users_;
};

}  // namespace pbx::auth
