#include "common/smtp/sasl.hpp"

#include "common/smtp/address.hpp"

namespace pbx::smtp::sasl {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// A user name or password: not empty, no NUL (it could truncate the value in
// some C consumer down the line), valid UTF-8 (RFC 4616 and RFC 4954 say UTF-8).
bool valid_field(std::string_view s) {
    return !s.empty() && s.find('\0') == std::string_view::npos && valid_utf8(s);
}

}  // namespace

Result<std::string, Unit> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return Err{Unit{}};
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            unsigned char c = text[i + k];
            if (c == '=') {
                // Padding only in the last quantum, only in its last two
                // places, and nothing but padding after it.
                if (!last || k < 2) return Err{Unit{}};
                ++pad;
                v[k] = 0;
            } else {
                if (pad > 0) return Err{Unit{}};
                v[k] = b64_value(c);
                if (v[k] < 0) return Err{Unit{}};
            }
        }
        uint32_t quantum = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out += static_cast<char>((quantum >> 16) & 0xFF);
        if (pad < 2) out += static_cast<char>((quantum >> 8) & 0xFF);
        if (pad < 1) out += static_cast<char>(quantum & 0xFF);
        // Canonical encoding: the bits the padding hides must be zero.
        if (pad == 2 && (v[1] & 0x0F) != 0) return Err{Unit{}};
        if (pad == 1 && (v[2] & 0x03) != 0) return Err{Unit{}};
    }
    return out;
}

std::string base64_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        uint32_t q = (static_cast<unsigned char>(bytes[i]) << 16) |
                     (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                     static_cast<unsigned char>(bytes[i + 2]);
        out += kAlphabet[(q >> 18) & 63];
        out += kAlphabet[(q >> 12) & 63];
        out += kAlphabet[(q >> 6) & 63];
        out += kAlphabet[q & 63];
    }
    size_t rest = bytes.size() - i;
    if (rest > 0) {
        uint32_t q = static_cast<unsigned char>(bytes[i]) << 16;
        if (rest == 2) q |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out += kAlphabet[(q >> 18) & 63];
        out += kAlphabet[(q >> 12) & 63];
        out += rest == 2 ? kAlphabet[(q >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<Mechanism> parse_mechanism(std::string_view name) {
    if (iequals(name, "PLAIN")) return Mechanism::Plain;
    if (iequals(name, "LOGIN")) return Mechanism::Login;
    return std::nullopt;
}

std::string_view to_string(Mechanism m) {
    return m == Mechanism::Plain ? "PLAIN" : "LOGIN";
}

Result<Credentials, SaslError> decode_plain(std::string_view message) {
    size_t first = message.find('\0');
    if (first == std::string_view::npos) return Err{SaslError::Malformed};
    size_t second = message.find('\0', first + 1);
    if (second == std::string_view::npos) return Err{SaslError::Malformed};
    Credentials c;
    std::string_view authzid = message.substr(0, first);
    std::string_view authcid = message.substr(first + 1, second - first - 1);
    std::string_view password = message.substr(second + 1);
    if (!authzid.empty() && !valid_field(authzid)) return Err{SaslError::Malformed};
    if (!valid_field(authcid) || !valid_field(password)) return Err{SaslError::Malformed};
    c.authzid = std::string(authzid);
    c.authcid = std::string(authcid);
    c.password = std::string(password);
    return c;
}

Exchange::Step Exchange::start(std::optional<std::string_view> initial_response) {
    if (!initial_response) {
        if (mechanism_ == Mechanism::Plain) return {Step::Kind::Challenge, "", {}};
        return {Step::Kind::Challenge, base64_encode("Username:"), {}};
    }
    if (*initial_response == "=") return take("");  // RFC 4954 4: empty initial response
    return respond(*initial_response);
}

Exchange::Step Exchange::respond(std::string_view line) {
    if (line == "*") return {Step::Kind::Failed, "", SaslError::Cancelled};
    auto decoded = base64_decode(line);
    if (!decoded) return {Step::Kind::Failed, "", SaslError::BadBase64};
    return take(*decoded);
}

Exchange::Step Exchange::take(std::string_view decoded) {
    if (mechanism_ == Mechanism::Plain) {
        auto creds = decode_plain(decoded);
        if (!creds) return {Step::Kind::Failed, "", creds.error()};
        credentials_ = std::move(*creds);
        return {Step::Kind::Done, "", {}};
    }
    if (!valid_field(decoded)) return {Step::Kind::Failed, "", SaslError::Malformed};
    if (step_ == 0) {
        credentials_.authcid = std::string(decoded);
        step_ = 1;
        return {Step::Kind::Challenge, base64_encode("Password:"), {}};
    }
    credentials_.password = std::string(decoded);
    return {Step::Kind::Done, "", {}};
}

}  // namespace pbx::smtp::sasl
