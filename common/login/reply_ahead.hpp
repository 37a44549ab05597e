// The login process's half of "reply-ahead" (pop3d(8), "the proxy
// protocol"; bench/RESULTS.md, POP3): a pure state machine between the
// client's raw bytes and the session's frames (common/ipc/proxy_msgs.hpp).
// Bytes in, bytes out; no sockets (tests/unit/test_pop3_ahead.cpp and
// fuzz/fuzz_pop3_ahead.cpp run it against pop3d's engine).
//
// THE RULE. F counts the client bytes forwarded to the session. The login
// keeps the client's bytes from the session's last idle offset on: those
// forwarded since (the window), then those held (not forwarded yet). The
// session's offers form chains (common/ipc/proxy_msgs.hpp); the login
// decides the first undecided offer of the chain as soon as it has enough
// bytes at the offer's offset, in frame order, before the next frame:
//   - the bytes there are a proper prefix of `line`: wait for more (the
//     session, holding the same prefix, waits too);
//   - they start with all of `line`: write `answer` to the client (after
//     everything the session sent before the offer, before anything it
//     sends after it): the line is taken, the next offer is first;
//   - they differ: the chain is broken; its other offers, and any that
//     still come before the session's next data frame, are ignored (the
//     session, reading the same bytes, drops the same chain).
// A data frame ends the chain. The session applies the same test to the
// same bytes at the same offset (pop3::SessionEngine::feed), so "the login
// answered" and "the session stays silent" are one predicate, whatever the
// timing or the splitting of the bytes.
//
// Forwarding decides nothing; it is a matter of speed. Taken lines may go
// on at any time; they are held back until kRefillAt of them are held, or
// one undecided offer is left (the session then reads several at once and
// tops its chain up in one go, instead of waking for every line), or
// release_taken() (the caller's timer: the session's autologout must see
// the client's activity).
// Other bytes go on only while the session is known to be at rest past
// every byte forwarded: idle{c} in hand, where every byte forwarded past c
// is a taken line (the session takes those silently and sends no idle
// frame for them), so that the offers it makes first are in hand when they
// arrive.
//
// Limits: at most kMaxHeld client bytes are held (the caller leaves the rest
// in its socket buffer, so a client cannot make this process buffer more);
// offers not yet decided are at most kMaxOffers, kMaxOfferBytes of answers;
// the window holds at most the bytes forwarded since the session's last
// idle or taken offer; the frame decoder holds at most one partial frame
// (kProtocol.max_frame_size) plus one read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ipc/frame.hpp"

namespace pbx::login {

class ReplyAhead {
  public:
    static constexpr size_t kMaxHeld = 64 * 1024;

    ReplyAhead();

    // Bytes read from the session. False on a bad frame: error() says why,
    // and the caller closes the connection (nothing more is accepted).
    bool from_session(std::string_view bytes);
    // Bytes read from the client; returns how many were taken (at most
    // kMaxHeld - held(); 0 once failed: the caller checks failed() after
    // each call, as after from_session()).
    size_t from_client(std::string_view bytes);
    // The client sent its last byte: what is held goes on as it is (no
    // answer is written for it any more).
    void client_eof();
    // Taken lines held back (see above): the caller's timer passes them on.
    size_t taken_held() const { return taken_; }
    void release_taken();

    // What to write now; the caller writes and empties them (freeing a
    // large one, so that an idle connection keeps no large buffer).
    std::string& to_client() { return to_client_; }
    std::string& to_session() { return to_session_; }

    bool failed() const { return !error_.empty(); }
    const std::string& error() const { return error_; }
    size_t held() const { return held_.size(); }
    uint64_t forwarded() const { return forwarded_; }
    uint64_t answered() const { return answered_; }

  private:
    bool frame(const ipc::Message& m);
    bool offer_frame(const ipc::Message& m);
    bool bad(std::string why);
    void advance();
    void forward(size_t n);
    void trim_window(uint64_t to);
    void end_chain();

    struct Offer {
        uint64_t at = 0;
        std::string line, answer;
    };
    enum class Chain { None, Open, Broken };
    static constexpr size_t kShrinkAbove = 16 * 1024;
    static constexpr size_t kMaxTakenRanges = 64;
    ipc::Decoder decoder_;
    uint64_t fed_ = 0;  // bytes fed to decoder_ since it was made
    // The client's bytes from offset window_start_: forwarded (window_, up
    // to F), then held (held_, from F); the first taken_ held bytes are
    // taken lines.
    std::string window_;
    uint64_t window_start_ = 0;
    std::string held_;
    size_t taken_ = 0;
    size_t taken_lines_ = 0;  // how many lines those are
    std::string to_client_, to_session_;
    uint64_t forwarded_ = 0;  // F
    // The taken lines since the session's last idle offset, as ranges of
    // offsets (adjacent ones merged): the session reads those silently.
    std::vector<std::pair<uint64_t, uint64_t>> taken_ranges_;
    std::optional<uint64_t> last_idle_;
    bool idle_ = false;  // the session is at rest at F
    Chain chain_ = Chain::None;
    std::deque<Offer> offers_;  // undecided, in order
    uint64_t chain_end_ = 0;    // offset after the chain's last line
    size_t offered_bytes_ = 0;  // answers in offers_
    bool eof_ = false;
    uint64_t answered_ = 0;
    std::string error_;
};

}  // namespace pbx::login
