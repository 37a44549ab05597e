// The TLS half of StreamConnection (stream.hpp): implicit TLS, STARTTLS
// (server and client side) and what the handshake agreed. Kept out of
// stream.cpp so that a program that never starts TLS (pop3d and imapd, which
// get their connection from a login process) links no OpenSSL code: ~440 KiB
// less resident per session (bench/RESULTS.md). The plain path reaches the
// TLS code only through tls_ops_, set here when TLS starts.
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdlib>

#include "common/event/stream.hpp"
#include "common/log.hpp"

namespace pbx::event {

namespace {

[[noreturn]] void out_of_memory(const char* what) {
    log::error(what, " failed: ", take_openssl_errors("out of memory"));
    std::abort();
}

// A close_notify, so that the peer can tell our close from a truncation.
// Best effort: a failure only means it is not sent.
void tls_shutdown(bufferevent* bev) {
    if (SSL* s = bufferevent_openssl_get_ssl(bev)) {
        (void)SSL_shutdown(s);
        ERR_clear_error();
    }
}

void tls_append_errors(bufferevent* bev, std::string& detail) {
    while (unsigned long e = bufferevent_get_openssl_error(bev)) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!detail.empty()) detail += "; ";
        detail += buf;
    }
}

}  // namespace

const StreamConnection::TlsOps StreamConnection::kTlsOps{tls_shutdown, tls_append_errors};

Status StreamConnection::start_implicit_tls(const TlsContext& ctx) {
    if (finished_ || bev_ || !owned_fd_) return fail("connection already started or closed");
    SslPtr ssl = ctx.new_ssl();
    if (!ssl) return fail("SSL_new: " + take_openssl_errors());
    bufferevent* bev =
        bufferevent_openssl_socket_new(base_, owned_fd_.get(), ssl.get(), BUFFEREVENT_SSL_ACCEPTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    // On failure libevent may already have freed the SSL, closed the fd or
    // (for a filter) freed the underlying bufferevent: nothing is left in a
    // state we could clean up, and it only happens without memory.
    if (!bev) out_of_memory("bufferevent_openssl_socket_new");
    (void)ssl.release();
    (void)owned_fd_.release();  // the bufferevent closes it, and frees the SSL
    bev_.reset(bev);
    tls_ = true;
    tls_ops_ = &kTlsOps;
    handshaking_ = true;
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return init_bev(bev);
}

Result<size_t> StreamConnection::start_tls(const TlsContext& ctx) {
    if (finished_ || flushing_ || !bev_) return fail("connection is closed");
    SslPtr ssl = ctx.new_ssl();
    if (!ssl) return fail("SSL_new: " + take_openssl_errors());
    return upgrade(std::move(ssl), true);
}

Result<size_t> StreamConnection::start_tls_client(SslPtr ssl) {
    if (!ssl) return fail("no SSL object: " + take_openssl_errors());
    return upgrade(std::move(ssl), false);
}

Result<size_t> StreamConnection::upgrade(SslPtr ssl, bool accepting) {
    if (finished_ || flushing_ || !bev_) return fail("connection is closed");
    if (tls_) return fail("TLS is already active");
    // Our last plaintext words (the 220 to STARTTLS) go before the handshake.
    if (!direct_out_.empty()) {
        event_del(flush_.get());
        std::string out = std::move(direct_out_);
        direct_out_.clear();
        if (bufferevent_write(bev_.get(), out.data(), out.size()) != 0)
            return fail("bufferevent_write failed");
    }
    // RFC 3207 5: whatever the peer sent after STARTTLS (or its 220 reply)
    // arrived in plaintext and must not be read as if it had come through TLS.
    evbuffer* in = bufferevent_get_input(bev_.get());
    const size_t discarded = evbuffer_get_length(in);
    evbuffer_drain(in, discarded);

    bufferevent* under = bev_.get();
    if (raw_) {
        // Whole reads are for plaintext: from here on libevent reads the
        // socket again, for the filter.
        event_del(reader_.get());
        raw_ = false;
        bufferevent_enable(under, EV_READ);
    }
    // The filter reads the socket bufferevent; it must not stall on our
    // watermark, and its callbacks become the filter's.
    bufferevent_setwatermark(under, EV_READ, 0, 0);
    bufferevent* filter = bufferevent_openssl_filter_new(
        base_, under, ssl.get(), accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!filter) out_of_memory("bufferevent_openssl_filter_new");  // see start_implicit_tls
    (void)ssl.release();
    // The filter now owns the socket bufferevent; we keep an observer.
    (void)bev_.release();
    bev_.reset(filter);
    plain_ = under;
    full_ = false;  // what filled the plaintext input was discarded above
    plain_output_entry_ = evbuffer_add_cb(bufferevent_get_output(plain_), plain_output_cb, this);
    tls_ = true;
    tls_ops_ = &kTlsOps;
    handshaking_ = true;
    bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
    if (auto s = init_bev(filter); !s) return Err{s.error()};
    if (paused_) bufferevent_disable(filter, EV_READ);
    return discarded;
}

SSL* StreamConnection::ssl() const {
    if (!tls_ || !bev_) return nullptr;
    return bufferevent_openssl_get_ssl(bev_.get());
}

TlsSessionInfo StreamConnection::tls_info() const {
    if (!tls_active()) return {};
    return session_info(ssl());
}

TlsPeerInfo StreamConnection::tls_peer() const {
    if (!tls_active()) return {};
    return peer_info(ssl());
}

}  // namespace pbx::event
