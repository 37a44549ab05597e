#include "pop3d/framed_session.hpp"

#include <algorithm>
#include <cstdlib>

#include "common/ipc/proxy_msgs.hpp"

namespace pbx::pop3 {

namespace proxy = ipc::proxy;

namespace {

std::string encoded(const ipc::Message& m) {
    auto e = ipc::encode(m);
    if (!e) std::abort();  // sizes are checked before: a bug, never the peer
    return std::move(e->bytes);
}

}  // namespace

std::string FramedSession::hello() {
    return encoded(ipc::make_hello(proxy::kProtocol));
}

size_t FramedSession::feed(std::string_view bytes) {
    const uint64_t silent = engine_.silent_bytes();
    const size_t n = engine_.feed(bytes);
    consumed_ += n;
    if (n > engine_.silent_bytes() - silent) loud_since_idle_ = true;
    return n;
}

std::string FramedSession::take_frame(size_t max) {
    if (max > proxy::kMaxData) max = proxy::kMaxData;
    std::string chunk = engine_.take_output(max);
    if (chunk.empty()) return {};
    loud_since_idle_ = true;
    auto m = ipc::Message::named(proxy::kProtocol, "data");
    m.set_bytes("bytes", chunk);
    return encoded(m);
}

std::string FramedSession::idle() {
    if (engine_.has_output() || engine_.closed()) return {};
    std::string frames;
    if (engine_.offers_out() <= proxy::kRefillAt) {
        if (engine_.offers_out() == 0) engine_.prefetch();
        while (engine_.offers_out() < proxy::kMaxOffers &&
               engine_.offered_bytes() < proxy::kMaxOfferBytes) {
            // The line is "RETR <n>\r\n", far below kMaxOfferLine.
            auto o = engine_.offer(std::min<uint64_t>(
                proxy::kMaxOfferAnswer, proxy::kMaxOfferBytes - engine_.offered_bytes()));
            if (!o) break;
            auto m = ipc::Message::named(proxy::kProtocol, "offer");
            m.set_u64("at", consumed_ + o->skip);
            m.set_bytes("line", o->line);
            m.set_bytes("answer", o->answer);
            frames += encoded(m);
        }
    }
    if (frames.empty() && idle_sent_ && !loud_since_idle_) return {};
    idle_sent_ = true;
    loud_since_idle_ = false;
    auto m = ipc::Message::named(proxy::kProtocol, "idle");
    m.set_u64("consumed", consumed_);
    return frames + encoded(m);
}

}  // namespace pbx::pop3
