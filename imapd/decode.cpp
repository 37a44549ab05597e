#include "imapd/decode.hpp"

#include <iconv.h>
#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cctype>

namespace pbx::imap {

namespace {

bool iequals_ascii(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

bool is_utf8_or_ascii(std::string_view charset) {
    return charset.empty() || iequals_ascii(charset, "utf-8") || iequals_ascii(charset, "utf8") ||
           iequals_ascii(charset, "us-ascii") || iequals_ascii(charset, "ascii");
}

// RFC 2047 "Q" encoding: quoted-printable with "_" for a space.
std::string decode_q(std::string_view in) {
    std::string out;
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '_') {
            out += ' ';
        } else if (in[i] == '=' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
                   hex_value(in[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
            i += 2;
        } else {
            out += in[i];
        }
    }
    return out;
}

// One encoded-word "=?charset?enc?text?=" at the start of `s`: its decoded
// text and length, or false.
bool encoded_word(std::string_view s, std::string& text, size_t& length) {
    if (!s.starts_with("=?")) return false;
    size_t q1 = s.find('?', 2);
    if (q1 == std::string_view::npos || q1 + 2 >= s.size() || s[q1 + 2] != '?') return false;
    size_t end = s.find("?=", q1 + 3);
    if (end == std::string_view::npos || end > 200) return false;  // RFC 2047: 75 octets
    std::string_view charset = s.substr(2, q1 - 2);
    if (size_t star = charset.find('*'); star != std::string_view::npos)  // RFC 2231 language
        charset = charset.substr(0, star);
    char enc = static_cast<char>(std::toupper(static_cast<unsigned char>(s[q1 + 1])));
    std::string_view payload = s.substr(q1 + 3, end - q1 - 3);
    std::string raw;
    if (enc == 'B')
        raw = decode_base64(payload);
    else if (enc == 'Q')
        raw = decode_q(payload);
    else
        return false;
    text = charset_to_utf8(raw, charset);
    length = end + 2;
    return true;
}

// The locale whose towlower knows Unicode (glibc's built-in C.UTF-8).
locale_t unicode_locale() {
    static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    return loc;
}

// Decodes one UTF-8 sequence at s[i]; 0 length when it is not one.
char32_t utf8_decode(std::string_view s, size_t i, size_t& length) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    unsigned char c = b(0);
    auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
    if (c < 0x80) {
        length = 1;
        return c;
    }
    if (c >= 0xC2 && c <= 0xDF && cont(1)) {
        length = 2;
        return (char32_t(c & 0x1F) << 6) | (b(1) & 0x3F);
    }
    if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
        char32_t v = (char32_t(c & 0x0F) << 12) | (char32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F);
        if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) {
            length = 3;
            return v;
        }
    }
    if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
        char32_t v = (char32_t(c & 0x07) << 18) | (char32_t(b(1) & 0x3F) << 12) |
                     (char32_t(b(2) & 0x3F) << 6) | (b(3) & 0x3F);
        if (v >= 0x10000 && v <= 0x10FFFF) {
            length = 4;
            return v;
        }
    }
    length = 0;
    return 0;
}

void utf8_encode(char32_t v, std::string& out) {
    if (v < 0x80) {
        out += static_cast<char>(v);
    } else if (v < 0x800) {
        out += static_cast<char>(0xC0 | (v >> 6));
        out += static_cast<char>(0x80 | (v & 0x3F));
    } else if (v < 0x10000) {
        out += static_cast<char>(0xE0 | (v >> 12));
        out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (v & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (v >> 18));
        out += static_cast<char>(0x80 | ((v >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (v & 0x3F));
    }
}

std::string param(const MimePart& p, std::string_view name) {
    for (const auto& [k, v] : p.params)
        if (k == name) return v;
    return "";
}

void append_header(std::string_view header, std::string& out) {
    for (const auto& [name, value] : header_field_list(header)) {
        out.append(name);
        out += ": ";
        out += decode_header_value(value);
        out += '\n';
    }
}

void append_body(std::string_view msg, const MimePart& p, std::string& out) {
    if (p.multipart()) {
        for (const MimePart& c : p.children) append_body(msg, c, out);
        return;
    }
    if (p.message()) {
        for (const MimePart& c : p.children) {  // the attached message
            append_header(msg.substr(c.start, c.body - c.start), out);
            append_body(msg, c, out);
        }
        return;
    }
    if (p.type != "TEXT") return;  // attachments are not text a person reads
    std::string_view body = msg.substr(p.body, p.end - p.body);
    std::string cte =
        header_field(msg.substr(p.start, p.body - p.start), "Content-Transfer-Encoding")
            .value_or("");
    std::string decoded;
    if (iequals_ascii(cte, "base64"))
        decoded = decode_base64(body);
    else if (iequals_ascii(cte, "quoted-printable"))
        decoded = decode_quoted_printable(body);
    else
        decoded = std::string(body);
    out += charset_to_utf8(decoded, param(p, "CHARSET"));
    out += '\n';
}

}  // namespace

std::string decode_base64(std::string_view in) {
    std::string out;
    out.reserve(in.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=') break;
        int v = base64_value(c);
        if (v < 0) continue;
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    return out;
}

std::string decode_quoted_printable(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c != '=') {
            out += c;
            continue;
        }
        // A soft line break: "=" then optional blanks then the line's end.
        size_t j = i + 1;
        while (j < in.size() && (in[j] == ' ' || in[j] == '\t')) ++j;
        if (j < in.size() && (in[j] == '\r' || in[j] == '\n')) {
            if (in[j] == '\r' && j + 1 < in.size() && in[j + 1] == '\n') ++j;
            i = j;
            continue;
        }
        if (j == in.size()) {
            i = j;
            continue;
        }
        if (i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
            i += 2;
            continue;
        }
        out += c;  // malformed: kept
    }
    return out;
}

std::string charset_to_utf8(std::string_view text, std::string_view charset) {
    if (is_utf8_or_ascii(charset) || text.empty() || charset.size() > 40) return std::string(text);
    std::string name(charset);
    iconv_t cd = iconv_open("UTF-8", name.c_str());
    if (cd == reinterpret_cast<iconv_t>(-1)) return std::string(text);
    std::string out(text.size() * 4 + 16, '\0');
    char* in = const_cast<char*>(text.data());
    size_t in_left = text.size();
    char* o = out.data();
    size_t out_left = out.size();
    size_t r = iconv(cd, &in, &in_left, &o, &out_left);
    iconv_close(cd);
    if (r == static_cast<size_t>(-1)) return std::string(text);
    out.resize(out.size() - out_left);
    return out;
}

std::string decode_header_value(std::string_view value) {
    if (value.find("=?") == std::string_view::npos) return std::string(value);
    std::string out;
    std::string pending_space;  // whitespace after an encoded-word
    bool after_word = false;
    size_t i = 0;
    while (i < value.size()) {
        std::string text;
        size_t length = 0;
        if (value[i] == '=' && encoded_word(value.substr(i), text, length)) {
            if (!after_word) out += pending_space;  // between two words: dropped
            pending_space.clear();
            out += text;
            i += length;
            after_word = true;
            continue;
        }
        if (value[i] == ' ' || value[i] == '\t') {
            pending_space += value[i++];
            continue;
        }
        out += pending_space;
        pending_space.clear();
        out += value[i++];
        after_word = false;
    }
    out += pending_space;
    return out;
}

std::string fold_case(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    locale_t loc = unicode_locale();
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
            ++i;
            continue;
        }
        size_t length = 0;
        char32_t v = utf8_decode(s, i, length);
        if (length == 0) {  // not UTF-8: the byte as it is
            out += s[i++];
            continue;
        }
        char32_t lower = v;
        if (loc) lower = static_cast<char32_t>(towlower_l(static_cast<wint_t>(v), loc));
        utf8_encode(lower, out);
        i += length;
    }
    return out;
}

SearchableText searchable_text(std::string_view msg, const MimePart& root) {
    SearchableText t;
    append_header(msg.substr(root.start, root.body - root.start), t.header);
    append_body(msg, root, t.body);
    return t;
}

}  // namespace pbx::imap
