// CPtr: RAII for C library handles (libevent, OpenSSL), one template for all.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>

namespace pbx {

template <auto Free>
struct FnDeleter {
    template <class T>
    void operator()(T* p) const noexcept {
        if (p) Free(p);
    }
};

template <class T, auto Free>
using CPtr = std::unique_ptr<T, FnDeleter<Free>>;

using EventBasePtr = CPtr<event_base, event_base_free>;
using EventPtr = CPtr<event, event_free>;
using BufferEventPtr = CPtr<bufferevent, bufferevent_free>;
using ListenerPtr = CPtr<evconnlistener, evconnlistener_free>;
using SslCtxPtr = CPtr<SSL_CTX, SSL_CTX_free>;
using SslPtr = CPtr<SSL, SSL_free>;
using X509Ptr = CPtr<X509, X509_free>;
using EvpPkeyPtr = CPtr<EVP_PKEY, EVP_PKEY_free>;

}  // namespace pbx
