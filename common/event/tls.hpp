// TLS contexts: the server side for every listener (smtpd STARTTLS, submitd
// 587/465, pop3-login and imap-login) and the client side for
// remote-delivery. One SSL_CTX per process, built before the privilege drop:
// the private key (server) or the CA bundle (client) is read as root into
// memory, and after the drop the file is unreachable (chroot, no
// permission), so a compromised process cannot read it again from disk.
#pragma once

#include <string>
#include <string_view>

#include "common/c_ptr.hpp"
#include "common/result.hpp"

namespace pbx::event {

// What was negotiated, for Received: lines and logs.
struct TlsSessionInfo {
    std::string version;  // "TLSv1.3"
    std::string cipher;   // "TLS_AES_256_GCM_SHA384"
    int bits = 0;         // secret bits of the cipher
};

TlsSessionInfo session_info(const SSL* ssl);

// The server's certificate as a client saw it (TlsContext::load_client).
struct TlsPeerInfo {
    bool verified = false;   // chain to a trusted CA and the name matched
    std::string error;       // why not ("certificate has expired", ...)
    std::string subject_cn;  // of the server certificate, "" when none
    std::string issuer_cn;
};
TlsPeerInfo peer_info(const SSL* ssl);

// The queued OpenSSL errors as one line ("; " between entries), clearing the
// queue; `fallback` when the queue is empty.
std::string take_openssl_errors(std::string_view fallback = "unknown TLS error");

class TlsContext {
  public:
    // A server context: TLS 1.2 minimum, forward-secret AEAD ciphers for
    // TLS 1.2 (TLS 1.3's defaults otherwise), no compression, no
    // renegotiation, no session cache and no tickets (one process serves
    // everyone; resumption is not worth a key to rotate).
    //
    // Errors name the file and the reason. A file that does not exist gives
    // an Error with sys_errno == ENOENT, so that a caller for which TLS is
    // optional (smtpd: then no STARTTLS) can tell "not configured" from
    // "broken".
    static Result<TlsContext> load_server(const std::string& cert_file,
                                          const std::string& key_file);

    // A client context (remote-delivery): TLS 1.2 minimum, the CA bundle
    // `ca_file` (PEM, many certificates) loaded into memory now. The
    // handshake itself never fails on the certificate: whether an
    // unverified server is acceptable is the caller's policy, decided
    // after the handshake with peer_info(). A missing CA file is an error
    // with sys_errno == ENOENT (the caller may go on without trust anchors:
    // then nothing verifies).
    static Result<TlsContext> load_client(const std::string& ca_file);
    // A context without trust anchors (no CA file is configured).
    static Result<TlsContext> client_without_cas();

    SSL_CTX* get() const { return ctx_.get(); }
    // A fresh SSL object for one accepted connection (nullptr on failure).
    SslPtr new_ssl() const;
    // A fresh client SSL object: SNI `server_name` (unless it is an IP
    // address) and the name the certificate must match for peer_info() to
    // say verified.
    SslPtr new_client_ssl(const std::string& server_name, const std::string& verify_name) const;

  private:
    explicit TlsContext(SslCtxPtr ctx) : ctx_(std::move(ctx)) {}
    SslCtxPtr ctx_;
};

}  // namespace pbx::event
