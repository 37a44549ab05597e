#include "pop3d/sha256.hpp"

// See sha256.hpp: the low-level interface on purpose.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

namespace pbx::pop3 {

std::string sha256_hex(std::initializer_list<std::string_view> parts, size_t hex_bytes) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    for (std::string_view p : parts) SHA256_Update(&ctx, p.data(), p.size());
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_Final(md, &ctx);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < hex_bytes && i < sizeof md; ++i) {
        s.push_back(kHex[md[i] >> 4]);
        s.push_back(kHex[md[i] & 15]);
    }
    return s;
}

}  // namespace pbx::pop3
