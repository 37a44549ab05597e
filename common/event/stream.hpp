// StreamConnection: one TCP connection over a libevent bufferevent, plain or
// TLS, shared by every network listener (smtpd, submitd, pop3-login,
// imap-login: accepted connections, the server side of TLS) and by
// remote-delivery (connections it made, the client side: start_tls_client).
// The protocol logic stays in a pure state machine; this class only moves
// bytes, keeps time, and switches to TLS.
//
//   auto c = StreamConnection::create(base, std::move(fd), handler, limits);
//   c->start();                     // plain; or start_implicit_tls(ctx) (465/993/995)
//   handler.on_input(c)             peek()/drain() the input, write() replies
//   c->start_tls(ctx)               STARTTLS: plaintext still buffered is discarded
//   handler.on_tls_ready(c)         handshake done; tls_info() says what was agreed
//   c->close_after_flush()          write what is queued (and a TLS close_notify), close
//   handler.on_closed(c, info)      exactly once, from the event loop
//
// LIFETIME (deferred destruction): the end of a connection, whatever the
// cause, is reported by on_closed() from a callback of its own, never from
// inside a call the handler made (close(), write(), start_tls() ...) and
// never in the middle of a libevent callback. on_closed() is therefore the
// place where the owner destroys the connection (and usually itself). The
// other callbacks may also destroy the connection; the class touches nothing
// after calling out. All libevent callbacks are noexcept trampolines.
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/c_ptr.hpp"
#include "common/event/tls.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::event {

class StreamConnection;

enum class CloseReason {
    Closed,      // close() or close_after_flush() (finished or not)
    PeerClosed,  // the peer went away while we were still writing to it
    Error,       // a read or write failed (detail says which)
    Timeout,     // close_after_flush() or a TLS handshake ran out of time
    TlsFailed,   // the TLS handshake failed
    OutputFull,  // the peer does not read what we write (Limits::max_output)
};
std::string_view to_string(CloseReason r);

struct CloseInfo {
    CloseReason reason = CloseReason::Closed;
    std::string detail;  // human-readable, for the log; may be empty
};

class StreamHandler {
  public:
    virtual ~StreamHandler() = default;
    // Input is buffered (input_size() > 0), or the peer closed its side
    // (at_eof(); what is still buffered stays readable).
    virtual void on_input(StreamConnection& c) noexcept = 0;
    // The idle timer ran out (set_idle_timeout) while the connection was in
    // normal use; the handler usually replies and close_after_flush()es.
    virtual void on_timeout(StreamConnection& c) noexcept = 0;
    // The TLS handshake (start_tls or start_implicit_tls) completed.
    virtual void on_tls_ready(StreamConnection& c) noexcept = 0;
    // Everything written so far has left our buffers (flow control):
    // output_size() is 0 when it is called (unless the handler wrote
    // meanwhile), the TLS records below a STARTTLS filter included.
    virtual void on_drained(StreamConnection&) noexcept {}
    // The connection is over and its socket closed. Called once.
    virtual void on_closed(StreamConnection& c, const CloseInfo& info) noexcept = 0;
};

class StreamConnection {
  public:
    // Every peer-filled buffer has a limit.
    struct Limits {
        // Unprocessed input kept; reading pauses above it (read high watermark).
        size_t max_input = 256 * 1024;
        // Unsent output; writing more than this closes with OutputFull.
        size_t max_output = 4 * 1024 * 1024;
    };

    // Takes the accepted, connected socket (made non-blocking here).
    static Result<std::unique_ptr<StreamConnection>> create(event_base* base, UniqueFd fd,
                                                            StreamHandler& handler, Limits limits);
    static Result<std::unique_ptr<StreamConnection>> create(event_base* base, UniqueFd fd,
                                                            StreamHandler& handler) {
        return create(base, std::move(fd), handler, Limits{});
    }
    ~StreamConnection();
    StreamConnection(const StreamConnection&) = delete;
    StreamConnection& operator=(const StreamConnection&) = delete;

    // Starts reading in plaintext.
    Status start();
    // Implicit TLS at accept (ports 465, 993, 995): the handshake runs first;
    // on_tls_ready() then reports that the application may talk.
    Status start_implicit_tls(const TlsContext& ctx);
    // STARTTLS: upgrades this connection in place. Replies already written
    // still go out in plaintext first; plaintext input still buffered here
    // (pipelined after the STARTTLS command) is discarded and never seen by
    // the handler; the count is returned for the log. on_tls_ready() or
    // on_closed(TlsFailed) follows.
    Result<size_t> start_tls(const TlsContext& ctx);
    // The client side of STARTTLS (remote-delivery): the same, with us as
    // the TLS client; `ssl` comes from TlsContext::new_client_ssl().
    Result<size_t> start_tls_client(SslPtr ssl);

    // ---- input ------------------------------------------------------------
    size_t input_size() const;
    // A contiguous view of the first min(max, input_size()) input bytes;
    // valid until the next drain() or return to the event loop.
    std::string_view peek(size_t max);
    void drain(size_t n);
    // True once the peer closed its sending side (no more input will come).
    bool at_eof() const { return eof_; }
    // Stop and restart reading from the socket (flow control). resume
    // reports buffered input again through on_input() (from the loop).
    // Input that reaches Limits::max_input is reported once; reading then
    // stops until drain() takes it below the limit.
    void pause_reading();
    void resume_reading();
    // Input is waiting, in our buffer or unread in the socket (raw bytes,
    // MSG_PEEK, no wait): the pregreet check at the moment of a greeting.
    bool input_pending_now() const;

    // ---- output -----------------------------------------------------------
    // Queues bytes; ignored once the connection is closing.
    void write(std::string_view bytes);
    // Bytes written but not yet handed to the kernel (TLS records included).
    size_t output_size() const;
    // Off by default. On a plain (not TLS) connection whose output is empty,
    // write() keeps the bytes, and everything written until the loop's
    // current round of callbacks ends goes out with one send(), without the
    // bufferevent's EV_WRITE round trip through epoll (3 syscalls per reply
    // fewer: bench/RESULTS.md); what the socket does not take goes to the
    // bufferevent. on_drained() and close_after_flush() behave as without.
    void set_direct_writes(bool on) { direct_ = on; }
    // Off by default; set it before start(). On a plain (not TLS)
    // connection, each time the socket is readable one recv() takes what it
    // holds (up to kWholeReadMax and Limits::max_input) and on_input()
    // follows at once from that event, instead of libevent's ioctl(FIONREAD)
    // and readv() of at most 4 KiB per (deferred) read callback: a proxied
    // answer of 4-64 KiB arrives in one on_input(), with two system calls
    // fewer (bench/RESULTS.md, POP3). TLS (implicit or after STARTTLS)
    // always reads through libevent.
    void set_whole_reads(bool on) { whole_reads_ = on; }
    static constexpr size_t kWholeReadMax = 64 * 1024;

    // ---- time -------------------------------------------------------------
    // The idle timeout: on_timeout() when neither input arrived nor output
    // drained for this long. Zero switches it off. Re-armed by activity.
    void set_idle_timeout(std::chrono::milliseconds timeout);

    // ---- the end ----------------------------------------------------------
    // Stops reading, writes what is queued (then a TLS close_notify), closes.
    // The idle timeout still applies: a peer that never reads is cut off.
    void close_after_flush();
    // Closes now; unsent output is dropped.
    void close();
    bool closing() const { return flushing_ || finished_; }

    // ---- facts ------------------------------------------------------------
    bool tls_active() const { return tls_ && !handshaking_; }
    TlsSessionInfo tls_info() const;
    // The server certificate and its verification (client side).
    TlsPeerInfo tls_peer() const;
    int fd() const { return fd_; }

  private:
    StreamConnection(event_base* base, UniqueFd fd, StreamHandler& handler, Limits limits);
    Status init_bev(bufferevent* bev);
    Result<size_t> upgrade(SslPtr ssl, bool accepting);
    void arm_timer();
    void finish(CloseReason reason, std::string detail);
    void maybe_finish_flush();
    void flush_direct();
    // Reading from the socket on or off: the bufferevent's, or reader_ when
    // raw_ (whole reads on a plain connection).
    void set_reading(bool on);
    std::string error_detail(short what);
    SSL* ssl() const;
    // What the plain path (stream.cpp) needs of TLS, reached only through
    // this table so that it links no OpenSSL code (tls_stream.cpp).
    struct TlsOps {
        void (*shutdown)(bufferevent* bev);                            // a close_notify
        void (*append_errors)(bufferevent* bev, std::string& detail);  // OpenSSL's errors
    };
    static const TlsOps kTlsOps;

    static void read_cb(bufferevent*, void* self) noexcept;
    static void write_cb(bufferevent*, void* self) noexcept;
    static void event_cb(bufferevent*, short what, void* self) noexcept;
    static void timer_cb(evutil_socket_t, short, void* self) noexcept;
    static void deferred_cb(evutil_socket_t, short, void* self) noexcept;
    static void kick_cb(evutil_socket_t, short, void* self) noexcept;
    static void flush_cb(evutil_socket_t, short, void* self) noexcept;
    static void raw_read_cb(evutil_socket_t, short, void* self) noexcept;
    static void drained_cb(evutil_socket_t, short, void* self) noexcept;
    static void plain_output_cb(evbuffer*, const evbuffer_cb_info*, void* self) noexcept;

    event_base* base_;
    int fd_;
    UniqueFd owned_fd_;  // until start*() hands it to a bufferevent
    StreamHandler* handler_;
    Limits limits_;
    // The top bufferevent: the socket one, or the TLS filter over it. With
    // a filter, the filter owns the socket bufferevent (BEV_OPT_CLOSE_ON_FREE
    // frees it and the SSL), and plain_ only observes it.
    BufferEventPtr bev_;
    bufferevent* plain_ = nullptr;
    evbuffer_cb_entry* plain_output_entry_ = nullptr;
    EventPtr timer_, deferred_, kick_, flush_, drained_;
    bool direct_ = false;
    bool whole_reads_ = false;
    // Whole reads are active: the bufferevent's reading stays off and
    // reader_ (EV_READ | EV_PERSIST on fd_) recv()s into its input buffer.
    bool raw_ = false;
    EventPtr reader_;
    std::string direct_out_;  // written, for flush_direct() (flush_ is active)
    std::chrono::milliseconds idle_{0};
    bool tls_ = false;
    const TlsOps* tls_ops_ = nullptr;  // &kTlsOps once TLS started
    bool handshaking_ = false;
    bool eof_ = false;
    bool paused_ = false;
    // The input reached Limits::max_input: reading is off until drain()
    // (libevent 2.1.11+ would call the read callback in a loop meanwhile).
    bool full_ = false;
    // The filter's output emptied while its TLS records still waited in
    // plain_: on_drained() follows when plain_ has sent them (drained_).
    bool drain_pending_ = false;
    bool flushing_ = false;
    bool shutdown_sent_ = false;
    bool finished_ = false;
    CloseInfo close_info_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace pbx::event
