// SHA-256 for pop3d (UIDLs of odd file names, mbox UIDLs, the mbox journal's
// checksums), as lowercase hex of the first `hex_bytes` bytes of the digest.
//
// OpenSSL's low-level SHA256_* functions rather than EVP: a statically
// linked pop3d (static_sessions) then links sha256.o of libcrypto, not the
// whole EVP/provider machinery that EVP_sha256() brings (2.7 MB of text,
// resident in part around every touched page; bench/RESULTS.md). They are
// deprecated in OpenSSL 3.0 (in favour of EVP), not removed; the digest is
// the same.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace pbx::pop3 {

std::string sha256_hex(std::initializer_list<std::string_view> parts, size_t hex_bytes = 32);

}  // namespace pbx::pop3
