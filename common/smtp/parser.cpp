#include "common/smtp/parser.hpp"

#include <charconv>
#include <vector>

namespace pbx::smtp {
namespace {

struct Param {
    std::string_view keyword;
    std::optional<std::string_view> value;
};

bool is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool valid_keyword(std::string_view k) {
    if (k.empty() || !is_alnum(k.front())) return false;
    for (unsigned char c : k) {
        if (!is_alnum(c) && c != '-') return false;
    }
    return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii (RFC 6531 3.3),
// which the callers refuse where it is not allowed.
bool valid_value(std::string_view v) {
    if (v.empty()) return false;
    for (unsigned char c : v) {
        if (c >= 0x80) continue;
        if (c < 33 || c > 126 || c == '=') return false;
    }
    return valid_utf8(v);
}

bool has_non_ascii(std::string_view v) {
    for (unsigned char c : v) {
        if (c >= 0x80) return true;
    }
    return false;
}

Err<ArgProblem> problem(ArgError kind, std::string detail = {}) {
    return Err{ArgProblem{kind, std::move(detail)}};
}

ArgError from_address_error(AddressError e) {
    switch (e) {
        case AddressError::Syntax:
            return ArgError::BadAddress;
        case AddressError::LocalPartTooLong:
            return ArgError::LocalPartTooLong;
        case AddressError::DomainTooLong:
            return ArgError::DomainTooLong;
        case AddressError::PathTooLong:
            return ArgError::PathTooLong;
    }
    return ArgError::BadAddress;
}

// Splits " KEY=VALUE KEY2" (each parameter preceded by one or more SP).
Result<std::vector<Param>, ArgProblem> split_params(std::string_view text) {
    std::vector<Param> params;
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] != ' ') return problem(ArgError::Syntax);
        while (i < text.size() && text[i] == ' ') ++i;
        if (i >= text.size()) break;
        size_t end = text.find(' ', i);
        if (end == std::string_view::npos) end = text.size();
        std::string_view word = text.substr(i, end - i);
        Param p;
        size_t eq = word.find('=');
        p.keyword = word.substr(0, eq);
        if (!valid_keyword(p.keyword))
            return problem(ArgError::BadParameter, std::string(p.keyword));
        if (eq != std::string_view::npos) {
            p.value = word.substr(eq + 1);
            if (!valid_value(*p.value))
                return problem(ArgError::BadParameter, std::string(p.keyword));
        }
        for (const auto& seen : params) {
            if (iequals(seen.keyword, p.keyword)) {
                return problem(ArgError::BadParameter, std::string(p.keyword));
            }
        }
        params.push_back(p);
        i = end;
    }
    return params;
}

std::optional<uint64_t> parse_number(std::string_view s, size_t max_digits) {
    if (s.empty() || s.size() > max_digits) return std::nullopt;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
    }
    uint64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

// "FROM:" / "TO:", optional spaces (common in the wild, harmless), the path.
Result<ParsedPath, ArgProblem> leading_path(std::string_view args, std::string_view keyword,
                                            const PathOptions& options) {
    if (!istarts_with(args, keyword)) return problem(ArgError::Syntax);
    std::string_view rest = args.substr(keyword.size());
    size_t skip = 0;
    while (skip < rest.size() && rest[skip] == ' ') ++skip;
    rest = rest.substr(skip);
    if (rest.empty() || rest.front() != '<') return problem(ArgError::Syntax);
    auto path = parse_path(rest, options);
    if (!path)
        return problem(from_address_error(path.error()), std::string(to_string(path.error())));
    ParsedPath out = std::move(*path);
    out.consumed += keyword.size() + skip;
    return out;
}

// xtext, or with `utf8` also raw UTF-8 (RFC 6533 utf-8-addr-xtext/unitext).
Result<std::string, Unit> decode_value(std::string_view v, bool utf8) {
    if (!utf8 || !has_non_ascii(v)) return xtext_decode(v);
    std::string out;
    size_t i = 0;
    while (i < v.size()) {
        size_t next = i;
        while (next < v.size() && static_cast<unsigned char>(v[next]) < 0x80) ++next;
        auto part = xtext_decode(v.substr(i, next - i));
        if (!part) return part;
        out += *part;
        i = next;
        while (i < v.size() && static_cast<unsigned char>(v[i]) >= 0x80) out += v[i++];
    }
    return out;
}

bool printable_ascii(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 32 || c > 126) return false;
    }
    return true;
}

Result<uint8_t, Unit> parse_notify(std::string_view v) {
    uint8_t flags = 0;
    size_t start = 0;
    while (true) {
        size_t comma = v.find(',', start);
        std::string_view word =
            v.substr(start, comma == std::string_view::npos ? comma : comma - start);
        uint8_t bit = 0;
        if (iequals(word, "NEVER"))
            bit = kNotifyNever;
        else if (iequals(word, "SUCCESS"))
            bit = kNotifySuccess;
        else if (iequals(word, "FAILURE"))
            bit = kNotifyFailure;
        else if (iequals(word, "DELAY"))
            bit = kNotifyDelay;
        if (bit == 0 || (flags & bit) != 0) return Err{Unit{}};
        flags |= bit;
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    // RFC 3461 4.1: NEVER stands alone.
    if ((flags & kNotifyNever) != 0 && flags != kNotifyNever) return Err{Unit{}};
    return flags;
}

}  // namespace

CommandLine split_command(std::string_view line) {
    while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return {line, {}};
    return {line.substr(0, sp), line.substr(sp + 1)};
}

bool has_control_characters(std::string_view line) {
    for (unsigned char c : line) {
        if (c < 0x20 || c == 0x7F) return true;
    }
    return false;
}

Result<MailArgs, ArgProblem> parse_mail(std::string_view args, const MailOptions& options) {
    auto path = leading_path(args, "FROM:", PathOptions{.allow_null = true});
    if (!path) return Err{path.error()};
    auto params = split_params(args.substr(path->consumed));
    if (!params) return Err{params.error()};
    if (!options.esmtp && !params->empty()) {
        return problem(ArgError::BadParameter, "parameters need EHLO");
    }

    MailArgs out;
    out.from = std::move(path->address);
    for (const auto& p : *params) {
        const std::string key(p.keyword);
        if (iequals(p.keyword, "SMTPUTF8")) {
            if (p.value) return problem(ArgError::BadParameter, key);
            out.smtputf8 = true;
            continue;
        }
        if (!p.value) return problem(ArgError::BadParameter, key);
        std::string_view v = *p.value;
        if (iequals(p.keyword, "SIZE")) {
            out.size = parse_number(v, 20);
            if (!out.size) return problem(ArgError::BadParameter, key);
        } else if (iequals(p.keyword, "BODY")) {
            if (iequals(v, "7BIT"))
                out.body = BodyType::SevenBit;
            else if (iequals(v, "8BITMIME"))
                out.body = BodyType::EightBitMime;
            else
                return problem(ArgError::BadParameter, key);
        } else if (iequals(p.keyword, "RET")) {
            if (iequals(v, "FULL"))
                out.ret = DsnRet::Full;
            else if (iequals(v, "HDRS"))
                out.ret = DsnRet::Hdrs;
            else
                return problem(ArgError::BadParameter, key);
        } else if (iequals(p.keyword, "ENVID")) {
            auto d = xtext_decode(v);
            if (v.size() > kMaxEnvid || !d || d->empty() || !printable_ascii(*d)) {
                return problem(ArgError::BadParameter, key);
            }
            out.envid = std::move(*d);
        } else if (iequals(p.keyword, "AUTH") && options.auth_offered) {
            if (v == "<>") {
                out.auth = std::string(v);
            } else {
                auto d = xtext_decode(v);
                if (!d || d->empty()) return problem(ArgError::BadParameter, key);
                out.auth = std::move(*d);
            }
        } else {
            return problem(ArgError::BadParameter, key);
        }
    }
    if (path->utf8 && !out.smtputf8) return problem(ArgError::Utf8NotAllowed);
    return out;
}

Result<RcptArgs, ArgProblem> parse_rcpt(std::string_view args, const RcptOptions& options) {
    auto path = leading_path(args, "TO:", PathOptions{.allow_postmaster = true});
    if (!path) return Err{path.error()};
    auto params = split_params(args.substr(path->consumed));
    if (!params) return Err{params.error()};
    if (!options.esmtp && !params->empty()) {
        return problem(ArgError::BadParameter, "parameters need EHLO");
    }
    if (path->utf8 && !options.smtputf8) return problem(ArgError::Utf8NotAllowed);

    RcptArgs out;
    out.to = std::move(path->address);
    for (const auto& p : *params) {
        const std::string key(p.keyword);
        if (!p.value) return problem(ArgError::BadParameter, key);
        std::string_view v = *p.value;
        if (iequals(p.keyword, "NOTIFY")) {
            auto flags = parse_notify(v);
            if (!flags) return problem(ArgError::BadParameter, key);
            out.notify = *flags;
        } else if (iequals(p.keyword, "ORCPT")) {
            // ORCPT=addr-type ";" xtext; addr-type is an atom ("rfc822",
            // or "utf-8" with SMTPUTF8, RFC 6533).
            size_t semi = v.find(';');
            if (semi == std::string_view::npos || semi == 0 || v.size() > kMaxOrcpt) {
                return problem(ArgError::BadParameter, key);
            }
            std::string_view type = v.substr(0, semi);
            if (!valid_keyword(type)) return problem(ArgError::BadParameter, key);
            bool utf8 = options.smtputf8 && iequals(type, "utf-8");
            auto d = decode_value(v.substr(semi + 1), utf8);
            if (!d || d->empty() || has_control_characters(*d)) {
                return problem(ArgError::BadParameter, key);
            }
            out.orcpt_type = std::string(type);
            out.orcpt = std::move(*d);
        } else {
            return problem(ArgError::BadParameter, key);
        }
    }
    return out;
}

Result<BdatArgs, Unit> parse_bdat(std::string_view args) {
    BdatArgs out;
    size_t sp = args.find(' ');
    auto size = parse_number(args.substr(0, sp), 19);
    if (!size) return Err{Unit{}};
    out.size = *size;
    if (sp != std::string_view::npos) {
        if (!iequals(args.substr(sp + 1), "LAST")) return Err{Unit{}};
        out.last = true;
    }
    return out;
}

Result<AuthArgs, Unit> parse_auth(std::string_view args) {
    AuthArgs out;
    size_t sp = args.find(' ');
    out.mechanism = args.substr(0, sp);
    if (out.mechanism.empty() || !valid_keyword(out.mechanism)) return Err{Unit{}};
    if (sp != std::string_view::npos) {
        std::string_view ir = args.substr(sp + 1);
        if (ir.empty() || ir.find(' ') != std::string_view::npos) return Err{Unit{}};
        out.initial_response = ir;
    }
    return out;
}

}  // namespace pbx::smtp
