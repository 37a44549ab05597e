#include "common/event/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>

namespace pbx::event {

namespace {

// TLS 1.2 only (TLS 1.3 suites are configured apart): ECDHE/DHE key
// exchange and AEAD ciphers, the Mozilla "intermediate" profile.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

Status check_file(const std::string& what, const std::string& path) {
    if (path.empty()) return Err{Error{what + ": no file configured", ENOENT}};
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        int e = errno;
        return Err{Error::from_errno(what + " " + path, e)};
    }
    if (!S_ISREG(st.st_mode)) return fail(what + " " + path + ": not a regular file");
    return {};
}

}  // namespace

std::string take_openssl_errors(std::string_view fallback) {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? std::string(fallback) : out;
}

TlsSessionInfo session_info(const SSL* ssl) {
    TlsSessionInfo info;
    if (!ssl) return info;
    info.version = SSL_get_version(ssl);
    if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl)) {
        info.cipher = SSL_CIPHER_get_name(c);
        info.bits = SSL_CIPHER_get_bits(c, nullptr);
    }
    return info;
}

namespace {

std::string name_cn(const X509_NAME* name) {
    if (!name) return {};
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0) return {};
    const ASN1_STRING* d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    if (!d) return {};
    std::string out(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)),
                    static_cast<size_t>(ASN1_STRING_length(d)));
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
    return out;
}

Result<SslCtxPtr> new_client_ctx() {
    ERR_clear_error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return fail("SSL_CTX_new: " + take_openssl_errors());
    if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1)
        return fail("cannot set the minimum TLS version: " + take_openssl_errors());
    if (SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers) != 1)
        return fail("cannot set the TLS 1.2 ciphers: " + take_openssl_errors());
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    // The policy (none/may/encrypt/verify) looks at the result afterwards.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

}  // namespace

TlsPeerInfo peer_info(const SSL* ssl) {
    TlsPeerInfo info;
    if (!ssl) {
        info.error = "no TLS";
        return info;
    }
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (!cert) {
        info.error = "the server sent no certificate";
        return info;
    }
    info.subject_cn = name_cn(X509_get_subject_name(cert));
    info.issuer_cn = name_cn(X509_get_issuer_name(cert));
    long v = SSL_get_verify_result(ssl);
    info.verified = v == X509_V_OK;
    if (!info.verified) info.error = X509_verify_cert_error_string(v);
    return info;
}

Result<TlsContext> TlsContext::load_client(const std::string& ca_file) {
    if (auto s = check_file("TLS CA file", ca_file); !s) return Err{s.error()};
    auto ctx = new_client_ctx();
    if (!ctx) return Err{ctx.error()};
    if (SSL_CTX_load_verify_locations(ctx->get(), ca_file.c_str(), nullptr) != 1)
        return fail("TLS CA file " + ca_file + ": " + take_openssl_errors());
    return TlsContext(std::move(ctx).value());
}

Result<TlsContext> TlsContext::client_without_cas() {
    auto ctx = new_client_ctx();
    if (!ctx) return Err{ctx.error()};
    return TlsContext(std::move(ctx).value());
}

SslPtr TlsContext::new_client_ssl(const std::string& server_name,
                                  const std::string& verify_name) const {
    SslPtr ssl(SSL_new(ctx_.get()));
    if (!ssl) return ssl;
    unsigned char buf[sizeof(struct in6_addr)];
    bool is_ip = inet_pton(AF_INET, server_name.c_str(), buf) == 1 ||
                 inet_pton(AF_INET6, server_name.c_str(), buf) == 1;
    if (!server_name.empty() && !is_ip)
        (void)SSL_set_tlsext_host_name(ssl.get(), server_name.c_str());
    if (!verify_name.empty()) {
        SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl.get(), verify_name.c_str()) != 1) return SslPtr();
    }
    return ssl;
}

Result<TlsContext> TlsContext::load_server(const std::string& cert_file,
                                           const std::string& key_file) {
    if (auto s = check_file("TLS certificate", cert_file); !s) return Err{s.error()};
    if (auto s = check_file("TLS key", key_file); !s) return Err{s.error()};

    ERR_clear_error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) return fail("SSL_CTX_new: " + take_openssl_errors());
    if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1)
        return fail("cannot set the minimum TLS version: " + take_openssl_errors());
    if (SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers) != 1)
        return fail("cannot set the TLS 1.2 ciphers: " + take_openssl_errors());
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                       SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET |
                                       SSL_OP_SINGLE_DH_USE | SSL_OP_SINGLE_ECDH_USE);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    SSL_CTX_set_dh_auto(ctx.get(), 1);
    // bufferevent_openssl retries writes with a moved buffer and accepts
    // partial writes.
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);

    if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1)
        return fail("TLS certificate " + cert_file + ": " + take_openssl_errors());
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        // OpenSSL checks the pair while loading the key; say so in words.
        const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        return fail("TLS key " + key_file +
                    (mismatch ? " does not match the certificate " + cert_file : std::string()) +
                    ": " + take_openssl_errors());
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
        return fail("TLS key " + key_file + " does not match the certificate " + cert_file + ": " +
                    take_openssl_errors());
    return TlsContext(std::move(ctx));
}

SslPtr TlsContext::new_ssl() const {
    return SslPtr(SSL_new(ctx_.get()));
}

}  // namespace pbx::event
