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
    taken_ = 0;
    taken_lines_ = 0;
    end_chain();
    idle_ = false;
    return false;
}

void ReplyAhead::end_chain() {
    offers_.clear();
    offered_bytes_ = 0;
    chain_ = Chain::None;
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
        if (!frame(**m) || failed()) return false;
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
        end_chain();
        return true;
    }
    if (m.name() == "offer") return offer_frame(m);
    // idle
    const uint64_t c = *m.get_u64("consumed");
    if (c > forwarded_)
        return bad(log::concat("idle at ", c, " past the ", forwarded_, " bytes forwarded"));
    if (last_idle_ && c < *last_idle_)
        return bad(log::concat("idle at ", c, " after idle at ", *last_idle_));
    last_idle_ = c;
    // The session has read everything before c: no offer is for those bytes.
    trim_window(c);
    // It takes the taken lines forwarded past c silently, then rests at F.
    while (!taken_ranges_.empty() && taken_ranges_.front().second <= c)
        taken_ranges_.erase(taken_ranges_.begin());
    idle_ = c == forwarded_ || (!taken_ranges_.empty() && taken_ranges_.front().first <= c &&
                                taken_ranges_.front().second >= forwarded_);
    advance();
    return true;
}

bool ReplyAhead::offer_frame(const ipc::Message& m) {
    const uint64_t at = *m.get_u64("at");
    const std::string_view line = *m.get_bytes("line");
    const std::string_view answer = *m.get_bytes("answer");
    if (line.empty() || line.size() > proxy::kMaxOfferLine)
        return bad(log::concat("offered line of ", line.size(), " bytes"));
    // One command line: its only LF ends it.
    if (line.find('\n') != line.size() - 1) return bad("offered line is not one line ending in LF");
    if (answer.size() > proxy::kMaxOfferAnswer)
        return bad(log::concat("offered answer of ", answer.size(), " bytes"));
    // A broken chain's offers, sent before the session read the bytes that
    // broke it, bind nobody.
    if (eof_ || chain_ == Chain::Broken) return true;
    if (chain_ == Chain::Open) {
        if (at != chain_end_)
            return bad(log::concat("offer at ", at, " where the chain goes on at ", chain_end_));
    } else if (taken_ > 0 || at < window_start_ || at > forwarded_) {
        // A chain starts where the session reads: not before what it was
        // known to have read, not past what it was given.
        return bad(log::concat("offer at ", at, " outside ", window_start_, "..", forwarded_));
    }
    if (offers_.size() >= proxy::kMaxOffers ||
        offered_bytes_ + answer.size() > proxy::kMaxOfferBytes)
        return bad(log::concat("more than ", proxy::kMaxOffers, " offers or ",
                               proxy::kMaxOfferBytes, " bytes of answers out"));
    offers_.push_back(Offer{at, std::string(line), std::string(answer)});
    offered_bytes_ += answer.size();
    chain_ = Chain::Open;
    chain_end_ = at + line.size();
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
    end_chain();
    forward(held_.size());
    idle_ = false;
}

void ReplyAhead::release_taken() {
    if (failed()) return;
    forward(taken_);
}

void ReplyAhead::trim_window(uint64_t to) {
    if (to <= window_start_) return;
    to = std::min(to, forwarded_);
    window_.erase(0, to - window_start_);
    window_start_ = to;
    if (window_.empty() && window_.capacity() > kShrinkAbove) std::string().swap(window_);
}

void ReplyAhead::forward(size_t n) {
    n = std::min(n, held_.size());
    if (n == 0) return;
    const size_t loud = n > taken_ ? n - taken_ : 0;  // past the taken lines
    to_session_.append(held_, 0, n);
    window_.append(held_, 0, n);
    forwarded_ += n;
    held_.erase(0, n);
    taken_ -= std::min(taken_, n);
    if (taken_ == 0) taken_lines_ = 0;
    if (loud > 0) idle_ = false;
    if (held_.empty() && held_.capacity() > kShrinkAbove) std::string().swap(held_);
    // No offer of an open chain is for bytes before its first undecided
    // one (or its end).
    if (chain_ == Chain::Open) trim_window(offers_.empty() ? chain_end_ : offers_.front().at);
}

void ReplyAhead::advance() {
    if (failed()) return;
    if (eof_) {
        client_eof();
        return;
    }
    bool session_waits = false;  // it holds a proper prefix of the first line
    bool prefix_held = false;    // the held bytes past the taken lines are one
    while (!offers_.empty()) {
        const Offer& o = offers_.front();
        const std::string_view line = o.line;
        if (o.at < window_start_) {  // never (offer_frame, trim_window): a bug
            bad(log::concat("offer at ", o.at, " before ", window_start_));
            return;
        }
        // The bytes at the offer's offset: forwarded ones (the window), then
        // held ones.
        std::string_view w, h;
        if (o.at < forwarded_) {
            w = std::string_view(window_).substr(o.at - window_start_, line.size());
            h = std::string_view(held_).substr(0, line.size() - w.size());
        } else if (o.at - forwarded_ <= held_.size()) {
            h = std::string_view(held_).substr(o.at - forwarded_, line.size());
        }
        // The session holds all the bytes forwarded from there, a proper
        // prefix of the line, and waits for the rest: whatever decides it
        // goes on at once.
        if (o.at < forwarded_ && w.size() < line.size() && line.starts_with(w))
            session_waits = true;
        if (!(line.starts_with(w) && line.substr(w.size()).starts_with(h))) {
            chain_ = Chain::Broken;
            offers_.clear();
            offered_bytes_ = 0;
            break;
        }
        if (w.size() + h.size() < line.size()) {
            if (o.at >= forwarded_) prefix_held = true;
            break;
        }
        to_client_ += o.answer;
        ++answered_;
        const uint64_t end = o.at + line.size();
        if (end > forwarded_ + taken_) {
            taken_ = static_cast<size_t>(end - forwarded_);
            ++taken_lines_;
        }
        if (!taken_ranges_.empty() && taken_ranges_.back().second == o.at) {
            taken_ranges_.back().second = end;
        } else {
            // Each new chain comes with an idle frame (pop3d offers it when
            // it rests after the data frame that ended the last one, and
            // says so), which drops the ranges before it: a few at most.
            if (taken_ranges_.size() >= kMaxTakenRanges) {
                bad(log::concat("more than ", kMaxTakenRanges, " chains without an idle frame"));
                return;
            }
            taken_ranges_.emplace_back(o.at, end);
        }
        offered_bytes_ -= o.answer.size();
        offers_.pop_front();
        trim_window(end);  // the chain goes on past it
    }
    if (session_waits) {
        // The session waits on the forwarded prefix for the rest.
        forward(held_.size());
        return;
    }
    const size_t undecided = held_.size() - taken_;
    if (undecided > 0 && !prefix_held) {
        // Bytes no offer decides (past the chain, or it broke) are the
        // session's, once it rests past F with its offers made.
        forward(idle_ ? held_.size() : taken_);
        return;
    }
    // Taken lines go on in batches: enough of them for the session to top
    // its chain up when it has read them, or before the chain runs out.
    if (taken_ > 0 &&
        (chain_ != Chain::Open || taken_lines_ >= proxy::kRefillAt || offers_.size() <= 1))
        forward(taken_);
}

}  // namespace pbx::login
