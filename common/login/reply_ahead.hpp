// The login process's half of "reply-ahead" (pop3d(8), "the proxy
// protocol"; bench/RESULTS.md, POP3): a pure state machine between the
// client's raw bytes and the session's frames (common/ipc/proxy_msgs.hpp).
// Bytes in, bytes out; no sockets (tests/unit/test_pop3_ahead.cpp and
// fuzz/fuzz_pop3_ahead.cpp run it against pop3d's engine).
//
// THE RULE. F counts the client bytes forwarded to the session. Client
// bytes past F are held, and forwarded only while the session's idle{c = F}
// is in hand (each idle lets through what is held then), or when the
// session waits for them (below). An offer {line, answer} in an idle frame
// is for the bytes at offset c: those forwarded since c (a batch can reach
// the session in several reads, and the session offers at the line end
// where a read ended: c < F), then those held. The login keeps the bytes
// forwarded since the session's last idle offset, and decides as soon as
// it has enough bytes, before the next frame and before it forwards more:
//   - the bytes from c are a proper prefix of `line`: wait for more (the
//     session, holding the same prefix, waits too; the client's next bytes
//     decide and then go on without waiting for an idle);
//   - they start with all of `line`: write `answer` to the client (after
//     everything the session sent before its idle frame, before anything it
//     sends after it), then forward what is held;
//   - they differ: drop the offer.
// Any data frame drops a held idle and its offer. The session applies the
// same test to the same bytes at the same offset (pop3::SessionEngine::
// offer), so "the login answered" and "the session stays silent" are one
// predicate, whatever the timing or the splitting of the bytes.
//
// Limits: at most kMaxHeld client bytes are held (the caller leaves the rest
// in its socket buffer, so a client cannot make this process buffer more);
// an offer is at most ipc::proxy::kMaxOfferLine + kMaxOfferAnswer bytes;
// the bytes kept since the session's last idle are at most what two
// forwards let through; the frame decoder holds at most one partial frame
// (kProtocol.max_frame_size) plus one read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
    // kMaxHeld - held(); 0 once failed).
    size_t from_client(std::string_view bytes);
    // The client sent its last byte: what is held goes on as it is (no
    // answer is written for it any more).
    void client_eof();

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
    bool bad(std::string why);
    void advance();

    struct Offer {
        std::string line, answer;
    };
    static constexpr size_t kShrinkAbove = 16 * 1024;
    ipc::Decoder decoder_;
    uint64_t fed_ = 0;  // bytes fed to decoder_ since it was made
    std::string held_;
    // The bytes forwarded since the session's last idle offset: an offer
    // at that offset is decided on them (then on held_).
    std::string window_;
    uint64_t window_start_ = 0;  // its offset; window_start_ + size == F
    std::string to_client_, to_session_;
    uint64_t forwarded_ = 0;  // F
    std::optional<uint64_t> last_idle_;
    bool idle_ = false;  // holding idle{c = F}
    std::optional<Offer> offer_;
    bool eof_ = false;
    uint64_t answered_ = 0;
    std::string error_;
};

}  // namespace pbx::login
