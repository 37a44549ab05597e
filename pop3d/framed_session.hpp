// pop3d's half of the proxy protocol in "frames" mode (PBX_PROXY=frames,
// common/ipc/proxy_msgs.hpp; pop3d(8)): the session engine's output goes to
// the login process as data frames, and whenever the session is idle it
// says so with idle{consumed}, offering the answer of the RETR that most
// likely comes next (SessionEngine::offer) so that the login process can
// answer that line itself (common/login/reply_ahead.hpp). Pure: the glue
// (session_main.cpp) writes the frames; tests/unit/test_reply_ahead.cpp
// and fuzz/fuzz_pop3_ahead.cpp run it against the login's half.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pop3d/session_engine.hpp"

namespace pbx::pop3 {

class FramedSession {
  public:
    explicit FramedSession(SessionEngine& engine) : engine_(engine) {}

    // The hello frame, the first bytes on the channel.
    static std::string hello();
    // Client bytes, as SessionEngine::feed; counts what was consumed.
    size_t feed(std::string_view bytes);
    bool has_output() const { return engine_.has_output(); }
    // One data frame with up to `max` bytes of output (max <= kMaxData).
    std::string take_frame(size_t max);
    // Call when the engine has no output and every byte received was fed:
    // prepares the next RETR's answer (prefetch) and returns the idle frame
    // (with an offer when there is one), or "" when the last idle frame
    // still says it all (nothing was consumed or sent since).
    std::string idle();

    uint64_t consumed() const { return consumed_; }

  private:
    SessionEngine& engine_;
    uint64_t consumed_ = 0;
    std::optional<uint64_t> idle_sent_at_;
    bool sent_since_idle_ = false;
};

}  // namespace pbx::pop3
