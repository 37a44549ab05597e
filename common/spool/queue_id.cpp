#include "common/spool/queue_id.hpp"

#include <unistd.h>

#include <cstdlib>

namespace pbx::spool {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr uint64_t kMaxMicros = (uint64_t{1} << (4 * QueueId::kTimeDigits)) - 1;
constexpr uint64_t kMaxTag = (uint64_t{1} << (4 * QueueId::kTagDigits)) - 1;

void put_hex(std::string& out, uint64_t v, size_t digits) {
    for (size_t i = digits; i-- > 0;) out += kHex[(v >> (4 * i)) & 0xF];
}

int lower_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

bool QueueId::validate(std::string_view text) {
    if (text.size() != kLength) return false;
    for (char c : text)
        if (lower_hex(c) < 0) return false;
    return true;
}

Result<QueueId> QueueId::parse(std::string_view text) {
    if (!validate(text)) {
        return fail("not a queue ID (expected " + std::to_string(kLength) +
                    " lowercase hex digits)");
    }
    return QueueId(std::string(text));
}

MicroTime QueueId::arrival_time() const {
    uint64_t us = 0;
    for (size_t i = 0; i < kTimeDigits && i < text_.size(); ++i)
        us = us * 16 + static_cast<uint64_t>(lower_hex(text_[i]));
    return MicroTime(std::chrono::microseconds(us));
}

QueueId QueueIdGenerator::next(TimePoint now) {
    auto since = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch());
    uint64_t us = since.count() > 0 ? static_cast<uint64_t>(since.count()) : 0;
    if (us <= last_us_) us = last_us_ + 1;
    // Invariants: a clock past the year 4253, or a pid wider than Linux allows.
    if (us > kMaxMicros || static_cast<uint64_t>(pid_) > kMaxTag) std::abort();
    last_us_ = us;
    std::string text;
    text.reserve(QueueId::kLength);
    put_hex(text, us, QueueId::kTimeDigits);
    put_hex(text, static_cast<uint64_t>(pid_), QueueId::kTagDigits);
    return QueueId(std::move(text));
}

QueueId QueueId::generate(TimePoint now) {
    static std::mutex mu;
    static QueueIdGenerator gen(0);
    static pid_t gen_pid = -1;
    std::lock_guard lock(mu);
    pid_t pid = ::getpid();
    // After fork() the child keeps the parent's last time, which is harmless:
    // its IDs differ by the pid part.
    if (pid != gen_pid) {
        gen.set_pid(pid);
        gen_pid = pid;
    }
    return gen.next(now);
}

}  // namespace pbx::spool
