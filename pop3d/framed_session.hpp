// pop3d's half of the proxy protocol in "frames" mode (PBX_PROXY=frames,
// common/ipc/proxy_msgs.hpp; pop3d(8)): the session engine's output goes to
// the login process as data frames; whenever the session comes to rest it
// tops up its chain of offers (the answers of the RETRs that most likely
// come next, SessionEngine::offer) so that the login process can answer
// those lines itself (common/login/reply_ahead.hpp), and says so with
// idle{consumed}. Pure: the glue
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
    // when kRefillAt offers or fewer are out, offers more (up to kMaxOffers
    // and kMaxOfferBytes; with none out, the next RETR's answer is
    // prepared first, for the normal path too), then the idle frame.
    // Returns "" when nothing was sent, offered or read the normal way
    // since the last idle frame: taking offers alone needs no idle frame
    // (the login process knows the session comes to rest after them).
    std::string idle();

    uint64_t consumed() const { return consumed_; }

  private:
    SessionEngine& engine_;
    uint64_t consumed_ = 0;
    bool idle_sent_ = false;
    bool loud_since_idle_ = false;  // data sent, or bytes read the normal way
};

}  // namespace pbx::pop3
