#include "common/login/reply_ahead.hpp"

#include <algorithm>

#include "common/ipc/proxy_msgs.hpp"
#include "common/log.hpp"

namespace pbx::login {

namespace proxy = ipc::proxy;

ReplyAhead::ReplyAhead() : decoder_(proxy::kProtocol, true) {}

bool ReplyAhead::bad(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    held_.clear();
    offer_.reset();
    idle_ = false;
    return false;
}

bool ReplyAhead::from_session(std::string_view bytes) {
    if (failed()) return false;
    decoder_.feed(bytes);
    for (;;) {
        auto m = decoder_.next();
        if (!m)
            return bad(log::concat("bad frame from the session: ", ipc::to_string(m.error().code),
                                   ": ", m.error().text));
        if (!*m) break;
        if (!frame(**m)) return false;
    }
    // The session waits for the client after a large answer: a new decoder
    // gives the buffer's memory back (a login process keeps many idle
    // connections).
    fed_ += bytes.size();
    if (idle_ && fed_ > kShrinkAbove && decoder_.buffered() == 0 && decoder_.hello_seen()) {
        decoder_ = ipc::Decoder(proxy::kProtocol, false);
        fed_ = 0;
    }
    advance();
    return true;
}

bool ReplyAhead::frame(const ipc::Message& m) {
    if (m.name() == "data") {
        const std::string_view b = *m.get_bytes("bytes");
        if (b.size() > proxy::kMaxData)
            return bad(log::concat("data frame of ", b.size(), " bytes"));
        to_client_.append(b);
        idle_ = false;
        offer_.reset();
        return true;
    }
    // idle
    const uint64_t c = *m.get_u64("consumed");
    if (c > forwarded_)
        return bad(log::concat("idle at ", c, " past the ", forwarded_, " bytes forwarded"));
    if (last_idle_ && c < *last_idle_)
        return bad(log::concat("idle at ", c, " after idle at ", *last_idle_));
    last_idle_ = c;
    const auto line = m.get_bytes("line");
    const auto answer = m.get_bytes("answer");
    if (line.has_value() != answer.has_value()) return bad("offer without line or answer");
    if (line && (line->empty() || line->size() > proxy::kMaxOfferLine))
        return bad(log::concat("offered line of ", line->size(), " bytes"));
    // One command line: its only LF ends it.
    if (line && line->find('\n') != line->size() - 1)
        return bad("offered line is not one line ending in LF");
    if (answer && answer->size() > proxy::kMaxOfferAnswer)
        return bad(log::concat("offered answer of ", answer->size(), " bytes"));
    // The session has read everything before c: the bytes forwarded before
    // c are no longer needed.
    window_.erase(0, c - window_start_);
    window_start_ = c;
    if (window_.empty() && window_.capacity() > kShrinkAbove) std::string().swap(window_);
    offer_.reset();
    idle_ = c == forwarded_;  // else stale: the session has more to read
    if (line && !eof_) offer_ = Offer{std::string(*line), std::string(*answer)};
    // Decided now, before the next frame: the session may already have
    // taken the line (from bytes forwarded before this frame) and its next
    // frames follow from that.
    advance();
    return true;
}

size_t ReplyAhead::from_client(std::string_view bytes) {
    if (failed()) return 0;
    const size_t n = std::min(bytes.size(), kMaxHeld - held_.size());
    held_.append(bytes.substr(0, n));
    advance();
    return n;
}

void ReplyAhead::client_eof() {
    if (failed()) return;
    eof_ = true;
    offer_.reset();
    forwarded_ += held_.size();
    window_ += held_;
    to_session_ += held_;
    held_.clear();
    idle_ = false;
}

void ReplyAhead::advance() {
    if (eof_) {
        client_eof();
        return;
    }
    bool may_forward = idle_;
    if (offer_) {
        // The offer is for the bytes from the session's idle offset c: those
        // forwarded since (window_, a batch that reached the session in two
        // reads), then those held.
        const std::string_view line = offer_->line;
        const std::string_view w = std::string_view(window_).substr(0, line.size());
        const std::string_view h = std::string_view(held_).substr(0, line.size() - w.size());
        const bool agree = line.starts_with(w) && line.substr(w.size()).starts_with(h);
        if (agree && w.size() + h.size() < line.size()) return;  // a prefix: both sides wait
        if (agree) {
            to_client_ += offer_->answer;
            ++answered_;
        }
        // The session waits on the forwarded bytes, a prefix of the line,
        // for the rest: what decided goes on without waiting for an idle.
        if (w.size() == window_.size() && w.size() < line.size() && line.starts_with(w))
            may_forward = true;
        offer_.reset();
    }
    if (!may_forward || held_.empty()) return;
    forwarded_ += held_.size();
    window_ += held_;
    to_session_ += held_;
    held_.clear();
    if (held_.capacity() > kShrinkAbove) std::string().swap(held_);
    idle_ = false;
}

}  // namespace pbx::login
