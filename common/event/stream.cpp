#include "common/event/stream.hpp"

#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"

namespace pbx::event {

std::string_view to_string(CloseReason r) {
    switch (r) {
        case CloseReason::Closed:
            return "closed";
        case CloseReason::PeerClosed:
            return "peer closed";
        case CloseReason::Error:
            return "error";
        case CloseReason::Timeout:
            return "timeout";
        case CloseReason::TlsFailed:
            return "TLS failed";
        case CloseReason::OutputFull:
            return "output full";
    }
    return "?";
}

Result<std::unique_ptr<StreamConnection>> StreamConnection::create(event_base* base, UniqueFd fd,
                                                                   StreamHandler& handler,
                                                                   Limits limits) {
    if (!fd) return fail("StreamConnection: invalid fd");
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
        return fail_errno("fcntl O_NONBLOCK");
    std::unique_ptr<StreamConnection> c(new StreamConnection(base, std::move(fd), handler, limits));
    if (!c->timer_ || !c->deferred_ || !c->kick_ || !c->flush_ || !c->drained_)
        return fail("event_new failed");
    return c;
}

StreamConnection::StreamConnection(event_base* base, UniqueFd fd, StreamHandler& handler,
                                   Limits limits)
    : base_(base), fd_(fd.get()), owned_fd_(std::move(fd)), handler_(&handler), limits_(limits) {
    timer_.reset(evtimer_new(base, timer_cb, this));
    deferred_.reset(event_new(base, -1, 0, deferred_cb, this));
    kick_.reset(event_new(base, -1, 0, kick_cb, this));
    flush_.reset(event_new(base, -1, 0, flush_cb, this));
    drained_.reset(event_new(base, -1, 0, drained_cb, this));
}

StreamConnection::~StreamConnection() {
    *alive_ = false;
    reader_.reset();  // before the bufferevent closes the socket it watches
    if (plain_output_entry_ && plain_)
        evbuffer_remove_cb_entry(bufferevent_get_output(plain_), plain_output_entry_);
    if (bev_) bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
}

Status StreamConnection::init_bev(bufferevent* bev) {
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, this);
    bufferevent_setwatermark(bev, EV_READ, 0, limits_.max_input);
    // With whole reads the bufferevent only writes; reader_ reads.
    if (bufferevent_enable(bev, raw_ ? EV_WRITE : EV_READ | EV_WRITE) != 0)
        return fail("bufferevent_enable failed");
    if (raw_ && event_add(reader_.get(), nullptr) != 0) return fail("event_add failed");
    arm_timer();
    return {};
}

void StreamConnection::set_reading(bool on) {
    if (!bev_) return;
    if (raw_) {
        if (on)
            event_add(reader_.get(), nullptr);
        else
            event_del(reader_.get());
        return;
    }
    if (on)
        bufferevent_enable(bev_.get(), EV_READ);
    else
        bufferevent_disable(bev_.get(), EV_READ);
}

Status StreamConnection::start() {
    if (finished_ || bev_ || !owned_fd_) return fail("connection already started or closed");
    bufferevent* bev = bufferevent_socket_new(base_, owned_fd_.get(),
                                              BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) return fail("bufferevent_socket_new failed");
    (void)owned_fd_.release();  // the bufferevent closes it now
    bev_.reset(bev);
    if (whole_reads_) {
        reader_.reset(event_new(base_, fd_, EV_READ | EV_PERSIST, raw_read_cb, this));
        if (!reader_) return fail("event_new failed");
        raw_ = true;
    }
    return init_bev(bev);
}

size_t StreamConnection::input_size() const {
    if (!bev_ || finished_) return 0;
    return evbuffer_get_length(bufferevent_get_input(bev_.get()));
}

std::string_view StreamConnection::peek(size_t max) {
    size_t n = std::min(max, input_size());
    if (n == 0) return {};
    // UNSAFE: evbuffer_pullup returns n contiguous bytes owned by the buffer.
    auto* p = evbuffer_pullup(bufferevent_get_input(bev_.get()), static_cast<ev_ssize_t>(n));
    if (!p) return {};
    return std::string_view(reinterpret_cast<const char*>(p), n);
}

void StreamConnection::drain(size_t n) {
    if (!bev_ || finished_) return;
    evbuffer_drain(bufferevent_get_input(bev_.get()), n);
    if (full_ && input_size() < limits_.max_input) {
        full_ = false;
        if (!paused_ && !eof_ && !flushing_) set_reading(true);
    }
}

void StreamConnection::pause_reading() {
    paused_ = true;
    if (bev_ && !finished_ && !handshaking_) set_reading(false);
}

void StreamConnection::resume_reading() {
    if (!paused_) return;
    paused_ = false;
    if (!bev_ || finished_ || flushing_) return;
    if (!eof_ && !full_) set_reading(true);
    // Input that arrived before the pause gets no new read callback.
    if (input_size() > 0 || eof_) event_active(kick_.get(), 0, 0);
}

bool StreamConnection::input_pending_now() const {
    if (input_size() > 0) return true;
    if (fd_ < 0 || finished_) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0;
}

void StreamConnection::write(std::string_view bytes) {
    if (finished_ || flushing_ || !bev_ || bytes.empty()) return;
    if (output_size() + bytes.size() > limits_.max_output) {
        finish(CloseReason::OutputFull, log::concat(output_size(), " bytes unread by the peer"));
        return;
    }
    if (!direct_out_.empty() || (direct_ && !tls_ && fd_ >= 0 &&
                                 evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0)) {
        if (direct_out_.empty()) event_active(flush_.get(), 0, 0);
        direct_out_.append(bytes);
        return;
    }
    if (bufferevent_write(bev_.get(), bytes.data(), bytes.size()) != 0)
        finish(CloseReason::Error, "bufferevent_write failed");
}

void StreamConnection::flush_direct() {
    if (finished_ || !bev_ || direct_out_.empty()) return;
    std::string out = std::move(direct_out_);
    direct_out_.clear();
    ssize_t n = ::send(fd_, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            finish(CloseReason::Error, std::strerror(errno));
            return;
        }
        n = 0;
    }
    const auto sent = static_cast<size_t>(n);
    if (sent > 0) arm_timer();
    if (sent < out.size()) {
        // The rest waits for the socket in the bufferevent; its write_cb
        // follows as usual.
        if (bufferevent_write(bev_.get(), out.data() + sent, out.size() - sent) != 0)
            finish(CloseReason::Error, "bufferevent_write failed");
        return;
    }
    // All sent: what write_cb does when the output has drained.
    if (flushing_) {
        maybe_finish_flush();
        return;
    }
    handler_->on_drained(*this);
}

size_t StreamConnection::output_size() const {
    if (!bev_ || finished_) return 0;
    size_t n = direct_out_.size() + evbuffer_get_length(bufferevent_get_output(bev_.get()));
    if (plain_) n += evbuffer_get_length(bufferevent_get_output(plain_));
    return n;
}

void StreamConnection::set_idle_timeout(std::chrono::milliseconds timeout) {
    idle_ = timeout;
    arm_timer();
}

void StreamConnection::arm_timer() {
    if (finished_) return;
    if (idle_.count() <= 0) {
        event_del(timer_.get());
        return;
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(idle_.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((idle_.count() % 1000) * 1000);
    event_add(timer_.get(), &tv);
}

void StreamConnection::close_after_flush() {
    if (finished_ || flushing_) return;
    flushing_ = true;
    set_reading(false);
    if (handshaking_) {
        // Nothing of ours can be pending inside an unfinished handshake.
        finish(CloseReason::Closed, {});
        return;
    }
    maybe_finish_flush();
}

void StreamConnection::close() {
    finish(CloseReason::Closed, {});
}

void StreamConnection::maybe_finish_flush() {
    if (!flushing_ || finished_ || !bev_) return;
    if (!direct_out_.empty()) return;  // flush_direct() comes back here
    if (evbuffer_get_length(bufferevent_get_output(bev_.get())) > 0) return;
    if (tls_ && !shutdown_sent_) {
        shutdown_sent_ = true;
        // A close_notify, so that the peer can tell our close from a
        // truncation. Best effort: a failure only means it is not sent.
        if (tls_ops_) tls_ops_->shutdown(bev_.get());
    }
    if (plain_ && evbuffer_get_length(bufferevent_get_output(plain_)) > 0) return;
    finish(CloseReason::Closed, {});
}

void StreamConnection::finish(CloseReason reason, std::string detail) {
    if (finished_) return;
    finished_ = true;
    close_info_ = CloseInfo{reason, std::move(detail)};
    if (bev_) {
        bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
        bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    }
    if (reader_) event_del(reader_.get());
    event_del(timer_.get());
    event_del(kick_.get());
    event_del(flush_.get());
    event_del(drained_.get());
    direct_out_.clear();  // unsent output is dropped, as the bufferevent's
    // The bufferevent is freed and on_closed() called from the loop, so that
    // neither happens inside a libevent callback or inside the caller.
    event_active(deferred_.get(), 0, 0);
}

std::string StreamConnection::error_detail(short what) {
    std::string detail;
    if (tls_ && bev_ && tls_ops_) tls_ops_->append_errors(bev_.get(), detail);
    const int e = EVUTIL_SOCKET_ERROR();
    if (detail.empty() && e != 0) detail = std::strerror(e);
    if (detail.empty()) detail = (what & BEV_EVENT_READING) ? "read error" : "write error";
    return detail;
}

// ---- callbacks -----------------------------------------------------------

void StreamConnection::read_cb(bufferevent*, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_) return;
    if (c->full_) return;  // reported already; drain() turns reading back on
    c->arm_timer();
    if (c->flushing_) {
        // Input after close_after_flush() is ignored.
        c->drain(c->input_size());
        return;
    }
    if (c->input_size() >= c->limits_.max_input) {
        // libevent's high-water mark alone stops reading from the socket
        // but, since 2.1.11, calls this callback again on every round of
        // the loop while the input stays there with reading enabled: a
        // proxy whose other side is full would spin. Reading goes off here
        // and back on in drain().
        c->full_ = true;
        bufferevent_disable(c->bev_.get(), EV_READ);
    }
    c->handler_->on_input(*c);
}

void StreamConnection::raw_read_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_ || !c->raw_ || !c->bev_) return;
    evbuffer* in = bufferevent_get_input(c->bev_.get());
    const size_t have = evbuffer_get_length(in);
    if (c->full_ || c->flushing_ || c->paused_ || c->eof_ || have >= c->limits_.max_input) {
        event_del(c->reader_.get());  // set_reading(true) turns it back on
        return;
    }
    // Into a buffer of the thread, then copied: reserving kWholeReadMax in
    // the evbuffer would allocate (and free) that much per read.
    thread_local std::array<char, kWholeReadMax> buf;
    const size_t room = std::min(c->limits_.max_input - have, buf.size());
    const ssize_t n = ::recv(c->fd_, buf.data(), room, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        c->finish(CloseReason::Error, std::strerror(errno));
        return;
    }
    c->arm_timer();
    if (n == 0) {
        // What event_cb() does at BEV_EVENT_EOF (no handshake, no flush here).
        c->eof_ = true;
        event_del(c->reader_.get());
        c->handler_->on_input(*c);
        return;
    }
    // A bufferevent keeps the end of its input frozen but while it reads.
    evbuffer_unfreeze(in, 0);
    const int added = evbuffer_add(in, buf.data(), static_cast<size_t>(n));
    evbuffer_freeze(in, 0);
    if (added != 0) {
        c->finish(CloseReason::Error, "evbuffer_add failed");
        return;
    }
    if (have + static_cast<size_t>(n) >= c->limits_.max_input) {
        // As read_cb(): reported once, reading is off until drain().
        c->full_ = true;
        event_del(c->reader_.get());
    }
    c->handler_->on_input(*c);
}

void StreamConnection::write_cb(bufferevent*, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_) return;
    c->arm_timer();
    if (c->flushing_) {
        c->maybe_finish_flush();
        return;
    }
    if (c->plain_ && evbuffer_get_length(bufferevent_get_output(c->plain_)) > 0) {
        // The filter has encrypted everything, but the records have not
        // all left the socket bufferevent below it, and output_size()
        // counts them: a handler that waits for output_size() to fall
        // would hear nothing more. plain_output_cb() reports the drain.
        c->drain_pending_ = true;
        return;
    }
    c->drain_pending_ = false;
    c->handler_->on_drained(*c);
}

void StreamConnection::plain_output_cb(evbuffer* buf, const evbuffer_cb_info* info,
                                       void* self) noexcept {
    // Runs inside libevent's write path: only note progress here.
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_ || info->n_deleted == 0) return;
    c->arm_timer();
    if (evbuffer_get_length(buf) != 0) return;
    if (c->flushing_) {
        c->maybe_finish_flush();
    } else if (c->drain_pending_) {
        c->drain_pending_ = false;
        event_active(c->drained_.get(), 0, 0);  // on_drained() from the loop
    }
}

void StreamConnection::drained_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_ || c->flushing_) return;
    c->handler_->on_drained(*c);
}

void StreamConnection::event_cb(bufferevent*, short what, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_) return;
    if (what & BEV_EVENT_CONNECTED) {
        c->handshaking_ = false;
        c->arm_timer();
        if (c->paused_) bufferevent_disable(c->bev_.get(), EV_READ);
        c->handler_->on_tls_ready(*c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        std::string detail = c->error_detail(what);
        if (c->handshaking_)
            c->finish(CloseReason::TlsFailed, "TLS handshake failed: " + detail);
        else
            c->finish(CloseReason::Error, std::move(detail));
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (c->handshaking_) {
            c->finish(CloseReason::TlsFailed, "connection closed during the TLS handshake");
            return;
        }
        if (c->flushing_) {
            c->finish(CloseReason::PeerClosed, "peer closed before our last reply was sent");
            return;
        }
        c->eof_ = true;
        c->set_reading(false);
        c->handler_->on_input(*c);
        return;
    }
}

void StreamConnection::timer_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_) return;
    if (c->flushing_) {
        c->finish(CloseReason::Timeout, "timed out writing the last reply");
        return;
    }
    if (c->handshaking_) {
        c->finish(CloseReason::Timeout, "TLS handshake timed out");
        return;
    }
    c->handler_->on_timeout(*c);
}

void StreamConnection::kick_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->finished_ || c->flushing_ || c->paused_) return;
    c->handler_->on_input(*c);
}

void StreamConnection::flush_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<StreamConnection*>(self)->flush_direct();
}

void StreamConnection::deferred_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<StreamConnection*>(self);
    if (c->plain_output_entry_ && c->plain_) {
        evbuffer_remove_cb_entry(bufferevent_get_output(c->plain_), c->plain_output_entry_);
        c->plain_output_entry_ = nullptr;
    }
    c->owned_fd_.reset();
    c->bev_.reset();  // closes the socket (and frees the SSL and the filtered bufferevent)
    c->plain_ = nullptr;
    c->fd_ = -1;
    CloseInfo info = std::move(c->close_info_);
    c->handler_->on_closed(*c, info);  // may destroy c
}

}  // namespace pbx::event
