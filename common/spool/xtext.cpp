#include "common/spool/xtext.hpp"

namespace pbx::spool {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool needs_escape(unsigned char c) {
    return c < 33 || c > 126 || c == '+' || c == '=';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;  // lowercase is not xtext
}

}  // namespace

std::string_view to_string(XtextError e) {
    switch (e) {
        case XtextError::BadChar:
            return "octet not allowed in xtext";
        case XtextError::BadHex:
            return "'+' not followed by two uppercase hex digits";
    }
    return "bad xtext";
}

size_t xtext_encoded_size(std::string_view raw) {
    size_t n = 0;
    for (unsigned char c : raw) n += needs_escape(c) ? 3 : 1;
    return n;
}

std::string xtext_encode(std::string_view raw) {
    std::string out;
    out.reserve(xtext_encoded_size(raw));
    for (unsigned char c : raw) {
        if (needs_escape(c)) {
            out += '+';
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

Result<std::string, XtextError> xtext_decode(std::string_view text, size_t* error_offset) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '+') {
            int hi = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
            int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                if (error_offset) *error_offset = i;
                return Err{XtextError::BadHex};
            }
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            if (error_offset) *error_offset = i;
            return Err{XtextError::BadChar};
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

}  // namespace pbx::spool
