#include "common/smtp/address.hpp"

#include <arpa/inet.h>

#include <array>

namespace pbx::smtp {
namespace {

bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
bool is_let_dig(unsigned char c) {
    return is_alpha(c) || is_digit(c);
}
bool is_non_ascii(unsigned char c) {
    return c >= 0x80;
}

// RFC 5322 atext; non-ASCII is let through here and validated as UTF-8 by
// the caller (RFC 6531 extends atext with UTF8-non-ascii).
bool is_atext(unsigned char c) {
    if (is_let_dig(c) || is_non_ascii(c)) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '/':
        case '=':
        case '?':
        case '^':
        case '_':
        case '`':
        case '{':
        case '|':
        case '}':
        case '~':
            return true;
        default:
            return false;
    }
}

// qtextSMTP (RFC 5321 4.1.2) plus UTF8-non-ascii.
bool is_qtext(unsigned char c) {
    return c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) || is_non_ascii(c);
}

bool is_domain_char(unsigned char c) {
    return is_let_dig(c) || c == '-' || c == '.' || is_non_ascii(c);
}

bool valid_label(std::string_view label, bool allow_utf8) {
    if (label.empty() || label.size() > 63) return false;
    auto letdig = [&](unsigned char c) { return is_let_dig(c) || (allow_utf8 && is_non_ascii(c)); };
    if (!letdig(label.front()) || !letdig(label.back())) return false;
    for (unsigned char c : label) {
        if (!letdig(c) && c != '-') return false;
    }
    return true;
}

bool valid_ipv4(std::string_view s) {
    int parts = 0;
    size_t i = 0;
    while (true) {
        size_t start = i;
        int value = 0;
        while (i < s.size() && is_digit(s[i]) && i - start < 3) {
            value = value * 10 + (s[i] - '0');
            ++i;
        }
        if (i == start || value > 255) return false;
        ++parts;
        if (i == s.size()) break;
        if (s[i] != '.' || parts == 4) return false;
        ++i;
    }
    return parts == 4;
}

bool valid_ipv6(std::string_view s) {
    // INET6_ADDRSTRLEN - 1: the longest textual form inet_pton accepts.
    std::array<char, 46> buf{};
    if (s.empty() || s.size() >= buf.size()) return false;
    s.copy(buf.data(), s.size());
    unsigned char out[16];
    return inet_pton(AF_INET6, buf.data(), out) == 1;
}

// Dot-string: Atom *("." Atom); returns the index just past it, or npos.
size_t scan_dot_string(std::string_view text, size_t i) {
    size_t atom_start = i;
    while (i < text.size()) {
        unsigned char c = text[i];
        if (is_atext(c)) {
            ++i;
        } else if (c == '.' && i > atom_start) {
            ++i;
            atom_start = i;
        } else {
            break;
        }
    }
    if (i == atom_start) return std::string_view::npos;  // empty, or ends with "."
    return i;
}

// Quoted-string starting at text[i] == '"'; returns the index past the
// closing quote, or npos.
size_t scan_quoted_string(std::string_view text, size_t i) {
    ++i;
    while (i < text.size()) {
        unsigned char c = text[i];
        if (c == '"') return i + 1;
        if (c == '\\') {
            if (i + 1 >= text.size()) return std::string_view::npos;
            unsigned char q = text[i + 1];
            if (q < 32 || q > 126) return std::string_view::npos;
            i += 2;
        } else if (is_qtext(c)) {
            ++i;
        } else {
            return std::string_view::npos;
        }
    }
    return std::string_view::npos;
}

// A domain or an address literal at text[i]; returns the index past it.
size_t scan_domain(std::string_view text, size_t i) {
    if (i < text.size() && text[i] == '[') {
        size_t close = text.find(']', i);
        return close == std::string_view::npos ? close : close + 1;
    }
    while (i < text.size() && is_domain_char(static_cast<unsigned char>(text[i]))) ++i;
    return i;
}

}  // namespace

std::string Address::str() const {
    if (domain.empty()) return local;
    std::string out;
    out.reserve(local.size() + 1 + domain.size());
    out += local;
    out += '@';
    out += domain;
    return out;
}

std::string_view to_string(AddressError e) {
    switch (e) {
        case AddressError::Syntax:
            return "bad address syntax";
        case AddressError::LocalPartTooLong:
            return "local part too long";
        case AddressError::DomainTooLong:
            return "domain too long";
        case AddressError::PathTooLong:
            return "path too long";
    }
    return "bad address";
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        unsigned char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = x - 'A' + 'a';
        if (y >= 'A' && y <= 'Z') y = y - 'A' + 'a';
        if (x != y) return false;
    }
    return true;
}

bool istarts_with(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

bool valid_utf8(std::string_view text) {
    size_t i = 0;
    while (i < text.size()) {
        unsigned char c = text[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;  // continuation byte, overlong lead (C0, C1) or > F4
        }
        if (text.size() - i < len) return false;
        for (size_t k = 1; k < len; ++k) {
            unsigned char cc = text[i + k];
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;  // overlong
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;                            // surrogate
        if (cp > 0x10FFFF) return false;
        i += len;
    }
    return true;
}

bool valid_domain(std::string_view domain, bool allow_utf8) {
    if (domain.empty() || domain.size() > kMaxDomain) return false;
    size_t start = 0;
    while (true) {
        size_t dot = domain.find('.', start);
        std::string_view label =
            domain.substr(start, dot == std::string_view::npos ? dot : dot - start);
        if (!valid_label(label, allow_utf8)) return false;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return !allow_utf8 || valid_utf8(domain);
}

bool valid_address_literal(std::string_view literal) {
    if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') return false;
    std::string_view inner = literal.substr(1, literal.size() - 2);
    size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return valid_ipv4(inner);
    std::string_view tag = inner.substr(0, colon);
    std::string_view content = inner.substr(colon + 1);
    if (iequals(tag, "IPv6")) return valid_ipv6(content);
    // General-address-literal: Standardized-tag ":" 1*dcontent
    if (tag.empty() || !is_let_dig(tag.front()) || !is_let_dig(tag.back())) return false;
    for (unsigned char c : tag) {
        if (!is_let_dig(c) && c != '-') return false;
    }
    if (content.empty()) return false;
    for (unsigned char c : content) {
        if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126))) return false;
    }
    return true;
}

bool valid_helo(std::string_view name) {
    if (name.empty() || name.size() > kMaxDomain) return false;
    if (name.front() == '[') return valid_address_literal(name);
    size_t label_len = 0;
    for (unsigned char c : name) {
        if (c == '.') {
            if (label_len == 0) return false;
            label_len = 0;
        } else if (is_let_dig(c) || c == '-' || c == '_') {
            ++label_len;
        } else {
            return false;
        }
    }
    return label_len > 0;
}

Result<ParsedPath, AddressError> parse_path(std::string_view text, const PathOptions& options) {
    const auto syntax = Err{AddressError::Syntax};
    if (text.empty() || text[0] != '<') return syntax;
    if (text.size() >= 2 && text[1] == '>') {
        if (!options.allow_null) return syntax;
        return ParsedPath{Address{}, 2, false};
    }
    size_t i = 1;

    // A-d-l ":" : the source route of RFC 821. RFC 5321 C says to accept
    // and ignore it; it is validated, then dropped, and never used to route.
    if (i < text.size() && text[i] == '@') {
        while (true) {
            ++i;  // '@'
            size_t end = scan_domain(text, i);
            if (end == std::string_view::npos || end == i) return syntax;
            std::string_view hop = text.substr(i, end - i);
            bool ok = hop.front() == '[' ? valid_address_literal(hop) : valid_domain(hop, true);
            if (!ok) return syntax;
            i = end;
            if (i < text.size() && text[i] == ',') {
                ++i;
                if (i >= text.size() || text[i] != '@') return syntax;
                continue;
            }
            if (i < text.size() && text[i] == ':') {
                ++i;
                break;
            }
            return syntax;
        }
    }

    size_t local_start = i;
    size_t local_end = (i < text.size() && text[i] == '"') ? scan_quoted_string(text, i)
                                                           : scan_dot_string(text, i);
    if (local_end == std::string_view::npos) return syntax;
    std::string_view local = text.substr(local_start, local_end - local_start);
    i = local_end;
    if (i >= text.size()) return syntax;

    ParsedPath out;
    if (text[i] == '>') {
        // RFC 5321 4.5.1: "<postmaster>" without a domain must be accepted.
        if (!options.allow_postmaster || !iequals(local, "postmaster")) return syntax;
        out.address.local = std::string(local);
        out.consumed = i + 1;
        return out;
    }
    if (text[i] != '@') return syntax;
    ++i;
    size_t domain_end = scan_domain(text, i);
    if (domain_end == std::string_view::npos || domain_end == i) return syntax;
    std::string_view domain = text.substr(i, domain_end - i);
    i = domain_end;
    if (i >= text.size() || text[i] != '>') return syntax;
    out.consumed = i + 1;

    std::string_view path = text.substr(0, out.consumed);
    for (unsigned char c : path) {
        if (is_non_ascii(c)) {
            out.utf8 = true;
            break;
        }
    }
    if (out.utf8 && !valid_utf8(path)) return syntax;
    if (domain.size() > kMaxDomain) return Err{AddressError::DomainTooLong};
    bool domain_ok =
        domain.front() == '[' ? valid_address_literal(domain) : valid_domain(domain, true);
    if (!domain_ok) return syntax;
    if (local.size() > kMaxLocalPart) return Err{AddressError::LocalPartTooLong};
    if (out.consumed > kMaxPath) return Err{AddressError::PathTooLong};
    out.address.local = std::string(local);
    out.address.domain = std::string(domain);
    return out;
}

Result<std::string, Unit> xtext_decode(std::string_view text) {
    auto hex = [](unsigned char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;  // RFC 3461 hexchar is upper case only
    };
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        unsigned char c = text[i];
        if (c == '+') {
            if (text.size() - i < 3) return Err{Unit{}};
            int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
            if (hi < 0 || lo < 0) return Err{Unit{}};
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c >= 33 && c <= 126 && c != '=') {
            out += static_cast<char>(c);
        } else {
            return Err{Unit{}};
        }
    }
    return out;
}

std::string xtext_encode(std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        if (c >= 33 && c <= 126 && c != '+' && c != '=') {
            out += static_cast<char>(c);
        } else {
            out += '+';
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        }
    }
    return out;
}

}  // namespace pbx::smtp
