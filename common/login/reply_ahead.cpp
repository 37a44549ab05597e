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
    // One line: its only LF ends it (a batch ends at the first LF, advance()).
    if (line && line->find('\n') != line->size() - 1)
        return bad("offered line is not one line ending in LF");
    if (answer && answer->size() > proxy::kMaxOfferAnswer)
        return bad(log::concat("offered answer of ", answer->size(), " bytes"));
    offer_.reset();
    idle_ = false;
    if (c < forwarded_) return true;  // stale: the session has more to read
    idle_ = true;
    if (line && !eof_) offer_ = Offer{std::string(*line), std::string(*answer)};
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
    to_session_ += held_;
    held_.clear();
    idle_ = false;
}

void ReplyAhead::advance() {
    if (eof_) {
        client_eof();
        return;
    }
    if (!idle_ || held_.empty()) return;
    if (offer_) {
        const std::string& line = offer_->line;
        if (held_.size() < line.size() && std::string_view(line).starts_with(held_)) return;
        if (std::string_view(held_).starts_with(line)) {
            to_client_ += offer_->answer;
            ++answered_;
        }
        offer_.reset();
    }
    // One line per idle (or all of a partial line): every line end the
    // session reads is then the end of what it was sent, so an offer it
    // makes at a line end is at the F the login has then.
    const size_t lf = held_.find('\n');
    const size_t n = lf == std::string::npos ? held_.size() : lf + 1;
    forwarded_ += n;
    to_session_.append(held_, 0, n);
    held_.erase(0, n);
    if (held_.empty() && held_.capacity() > kShrinkAbove) std::string().swap(held_);
    idle_ = false;
}

}  // namespace pbx::login
