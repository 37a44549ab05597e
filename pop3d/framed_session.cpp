#include "pop3d/framed_session.hpp"

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
    const size_t n = engine_.feed(bytes);
    consumed_ += n;
    return n;
}

std::string FramedSession::take_frame(size_t max) {
    if (max > proxy::kMaxData) max = proxy::kMaxData;
    std::string chunk = engine_.take_output(max);
    if (chunk.empty()) return {};
    sent_since_idle_ = true;
    auto m = ipc::Message::named(proxy::kProtocol, "data");
    m.set_bytes("bytes", chunk);
    return encoded(m);
}

std::string FramedSession::idle() {
    if (engine_.has_output() || engine_.closed()) return {};
    engine_.prefetch();
    if (idle_sent_at_ == consumed_ && !sent_since_idle_) return {};
    idle_sent_at_ = consumed_;
    sent_since_idle_ = false;
    auto m = ipc::Message::named(proxy::kProtocol, "idle");
    m.set_u64("consumed", consumed_);
    // The line is "RETR <n>\r\n", far below kMaxOfferLine.
    if (auto o = engine_.offer(proxy::kMaxOfferAnswer)) {
        m.set_bytes("line", o->line);
        m.set_bytes("answer", o->answer);
    }
    return encoded(m);
}

}  // namespace pbx::pop3
