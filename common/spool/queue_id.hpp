// Queue IDs: the name of a message in the spool (queue/ID.msg, queue/ID.env)
// and in every log line about it.
//
// Format: 20 lowercase hex digits, "TTTTTTTTTTTTTTPPPPPP":
//   T  14 digits: microseconds since the Unix epoch at generation (56 bits,
//      enough until the year 4253), so lexicographic order is arrival order;
//   P   6 digits: the generating process's pid (Linux pid_max <= 2^22), so two
//      processes generating in the same microsecond cannot collide.
// Within one process the time part is strictly increasing (a clock that
// stands still or steps back yields last+1µs), so one process never repeats
// an ID. Across restarts the clock has moved on; the one residual risk, a
// clock stepped back onto a reused pid, is caught by the O_EXCL create of
// incoming/ID, after which the caller generates again.
//
// parse()/validate() accept exactly this format and nothing else: they are
// used to check a file name before the spool code touches the file.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <compare>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::spool {

using TimePoint = std::chrono::system_clock::time_point;
using MicroTime = std::chrono::sys_time<std::chrono::microseconds>;

class QueueId {
  public:
    static constexpr size_t kTimeDigits = 14;
    static constexpr size_t kTagDigits = 6;
    static constexpr size_t kLength = kTimeDigits + kTagDigits;

    // An empty ID (valid() is false); the reader never produces one.
    QueueId() = default;

    // True when `text` is exactly a queue ID.
    static bool validate(std::string_view text);
    static Result<QueueId> parse(std::string_view text);

    // A new ID from the process-wide generator (thread-safe, fork-safe: the
    // pid is read at each call). `now` is the injectable clock reading.
    static QueueId generate(TimePoint now);
    static QueueId generate() { return generate(std::chrono::system_clock::now()); }

    bool valid() const { return !text_.empty(); }
    const std::string& str() const { return text_; }
    // The microsecond the ID was generated at (the arrival time).
    MicroTime arrival_time() const;

    auto operator<=>(const QueueId&) const = default;
    bool operator==(const QueueId&) const = default;

  private:
    friend class QueueIdGenerator;
    explicit QueueId(std::string text) : text_(std::move(text)) {}
    std::string text_;
};

inline MicroTime arrival_time(const QueueId& id) {
    return id.arrival_time();
}

// The generator behind QueueId::generate(), exposed so tests can fix the pid.
class QueueIdGenerator {
  public:
    explicit QueueIdGenerator(pid_t pid) : pid_(pid) {}
    QueueId next(TimePoint now);
    // Keeps the last time used: IDs stay increasing within this generator.
    void set_pid(pid_t pid) { pid_ = pid; }

  private:
    pid_t pid_;
    uint64_t last_us_ = 0;
};

}  // namespace pbx::spool
