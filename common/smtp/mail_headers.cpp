// Header section parsing and the local submission fix-ups (mail_headers.hpp);
// the address-list parser is in mail_address.cpp.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "common/smtp/mail_headers.hpp"

namespace pbx::mail {
namespace {

constexpr std::string_view kCrlf = "\r\n";

bool is_wsp(char c) {
    return c == ' ' || c == '\t';
}

// The length of a field name at the start of `line` when the line is a
// header field ("Name:" or the obsolete "Name :"), else 0.
size_t field_name_length(std::string_view line) {
    size_t i = 0;
    while (i < line.size() && line[i] > 32 && line[i] < 127 && line[i] != ':') ++i;
    if (i == 0) return 0;
    size_t j = i;
    while (j < line.size() && is_wsp(line[j])) ++j;
    return j < line.size() && line[j] == ':' ? i : 0;
}

bool is_named(const HeaderField& f, std::initializer_list<std::string_view> names) {
    for (std::string_view n : names)
        if (iequals(f.name, n)) return true;
    return false;
}

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        for (int s = 18; s >= 0; s -= 6) out += kBase64[(v >> s) & 63];
    }
    if (i < in.size()) {
        uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += kBase64[(v >> 18) & 63];
        out += kBase64[(v >> 12) & 63];
        out += i + 1 < in.size() ? kBase64[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

Err<PrepareError> prepare_error(PrepareErrc code, std::string text) {
    return Err<PrepareError>{PrepareError{code, std::move(text)}};
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

std::string HeaderError::to_string() const {
    std::string where = "line " + std::to_string(line) + ": ";
    switch (code) {
        case HeaderErrc::FieldTooLong:
            return where + "header field too long";
        case HeaderErrc::HeaderTooLarge:
            return where + "header section too large";
        case HeaderErrc::TooManyFields:
            return where + "too many header fields";
    }
    return where + "bad header";
}

Result<HeaderSection, HeaderError> parse_headers(std::string_view message,
                                                 const HeaderLimits& limits) {
    HeaderSection hs;
    size_t pos = 0;
    size_t line_no = 0;
    size_t value_start = 0;  // of the field being built
    size_t field_start = 0;
    auto fail = [&](HeaderErrc code) { return Err<HeaderError>{HeaderError{code, line_no}}; };
    while (pos < message.size()) {
        ++line_no;
        size_t crlf = message.find(kCrlf, pos);
        size_t content_end = crlf == std::string_view::npos ? message.size() : crlf;
        size_t next = crlf == std::string_view::npos ? message.size() : crlf + 2;
        std::string_view line = message.substr(pos, content_end - pos);
        if (line.empty()) {
            hs.end = pos;
            hs.has_separator = true;
            hs.body = next;
            return hs;
        }
        if (is_wsp(line[0])) {
            if (hs.fields.empty()) break;  // no header at all: all body
            HeaderField& f = hs.fields.back();
            f.text = message.substr(field_start, next - field_start);
            f.value = message.substr(value_start, content_end - value_start);
            if (f.text.size() > limits.max_field_size) return fail(HeaderErrc::FieldTooLong);
        } else {
            size_t n = field_name_length(line);
            if (n == 0) break;  // the body begins without an empty line
            if (hs.fields.size() >= limits.max_fields) return fail(HeaderErrc::TooManyFields);
            field_start = pos;
            value_start = pos + line.find(':') + 1;
            HeaderField f;
            f.name = message.substr(pos, n);
            f.text = message.substr(pos, next - pos);
            f.value = message.substr(value_start, content_end - value_start);
            if (f.text.size() > limits.max_field_size) return fail(HeaderErrc::FieldTooLong);
            hs.fields.push_back(f);
        }
        if (next > limits.max_header_size) return fail(HeaderErrc::HeaderTooLarge);
        pos = next;
    }
    hs.end = pos;
    hs.body = pos;
    return hs;
}

std::string unfold(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '\r' && i + 2 < value.size() && value[i + 1] == '\n' &&
            is_wsp(value[i + 2])) {
            ++i;  // drop CR and LF, keep the white space
            continue;
        }
        out += value[i];
    }
    return out;
}

std::string format_date(std::time_t t, int offset_minutes) {
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::time_t local = t + static_cast<std::time_t>(offset_minutes) * 60;
    struct tm tm {};
    gmtime_r(&local, &tm);
    int off = offset_minutes < 0 ? -offset_minutes : offset_minutes;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02d%02d",
                  kDays[tm.tm_wday % 7], tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, offset_minutes < 0 ? '-' : '+', off / 60,
                  off % 60);
    return buf;
}

std::string make_message_id(std::time_t t, uint64_t random, int pid, std::string_view host) {
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "<%04d%02d%02d%02d%02d%02d.%016llx.%d@", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<unsigned long long>(random), pid);
    return std::string(buf) + std::string(host) + ">";
}

std::string format_from(std::string_view full_name, std::string_view address) {
    std::string name;
    bool ascii = true;
    for (char c : full_name) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u < 32 || u == 127) continue;
        if (u >= 128) ascii = false;
        name += c;
    }
    while (!name.empty() && name.back() == ' ') name.pop_back();
    size_t lead = name.find_first_not_of(' ');
    if (lead == std::string::npos) return std::string(address);
    name.erase(0, lead);
    std::string out;
    if (ascii) {
        out += '"';
        for (char c : name) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    } else {
        // RFC 2047: encoded words of at most 75 characters, each holding
        // whole UTF-8 characters (45 octets of text → 60 of base64).
        size_t pos = 0;
        while (pos < name.size()) {
            size_t end = std::min(pos + 45, name.size());
            while (end > pos + 1 && end < name.size() &&
                   (static_cast<unsigned char>(name[end]) & 0xC0) == 0x80)
                --end;
            if (!out.empty()) out += ' ';
            out += "=?UTF-8?B?" + base64(std::string_view(name).substr(pos, end - pos)) + "?=";
            pos = end;
        }
    }
    return out + " <" + std::string(address) + ">";
}

Result<std::string, PrepareError> fix_up_headers(std::string_view message, const PrepareInput& in) {
    auto hs = parse_headers(message, in.header_limits);
    if (!hs) return prepare_error(PrepareErrc::Header, hs.error().to_string());
    std::string m;
    bool has_from = false, has_date = false, has_id = false;
    m.reserve(message.size() + 512);
    for (const HeaderField& f : hs->fields) {
        has_from = has_from || is_named(f, {"From"});
        has_date = has_date || is_named(f, {"Date"});
        has_id = has_id || is_named(f, {"Message-ID"});
        if (is_named(f, {"Bcc", "Resent-Bcc"})) continue;
        m += f.text;
        if (!f.text.ends_with(kCrlf)) m += kCrlf;
    }
    if (!has_from) m += "From: " + format_from(in.full_name, in.from_address) + "\r\n";
    if (!has_date) m += "Date: " + in.date + "\r\n";
    if (!has_id) m += "Message-ID: " + in.message_id + "\r\n";
    std::string_view rest = message.substr(hs->end);
    if (!hs->has_separator && !rest.empty()) m += kCrlf;
    m += rest;
    return m;
}

Result<Prepared, PrepareError> prepare_message(std::string_view message, const PrepareInput& in) {
    if (message.starts_with("From ")) {
        size_t crlf = message.find(kCrlf);
        message = crlf == std::string_view::npos ? std::string_view() : message.substr(crlf + 2);
    }
    auto hs = parse_headers(message, in.header_limits);
    if (!hs) return prepare_error(PrepareErrc::Header, hs.error().to_string());

    Prepared out;
    std::set<std::string, std::less<>> seen;
    auto add = [&](std::vector<std::string>&& list) -> Result<Unit, PrepareError> {
        for (std::string& a : list) {
            if (seen.contains(a)) continue;
            if (out.recipients.size() >= in.address_limits.max_addresses)
                return prepare_error(PrepareErrc::TooManyRecipients,
                                     "too many recipients (at most " +
                                         std::to_string(in.address_limits.max_addresses) + ")");
            seen.insert(a);
            out.recipients.push_back(std::move(a));
        }
        return Unit{};
    };
    for (const std::string& arg : in.arg_recipients) {
        auto list = parse_address_list(arg, in.address_limits);
        if (!list)
            return prepare_error(PrepareErrc::Address,
                                 "recipient '" + arg + "': " + list.error().to_string());
        if (auto r = add(std::move(*list)); !r) return Err{r.error()};
    }
    if (in.extract_recipients) {
        bool resent = std::any_of(hs->fields.begin(), hs->fields.end(), [](const HeaderField& f) {
            return is_named(f, {"Resent-To", "Resent-Cc", "Resent-Bcc"});
        });
        for (const HeaderField& f : hs->fields) {
            bool wanted = resent ? is_named(f, {"Resent-To", "Resent-Cc", "Resent-Bcc"})
                                 : is_named(f, {"To", "Cc", "Bcc"});
            if (!wanted) continue;
            auto list = parse_address_list(unfold(f.value), in.address_limits);
            if (!list)
                return prepare_error(PrepareErrc::Address,
                                     std::string(f.name) + ": header: " + list.error().to_string());
            if (auto r = add(std::move(*list)); !r) return Err{r.error()};
        }
    }
    if (out.recipients.empty())
        return prepare_error(PrepareErrc::NoRecipients,
                             in.extract_recipients
                                 ? "no recipients: none given as arguments and none in the"
                                   " To:, Cc: or Bcc: headers"
                                 : "no recipients");

    auto fixed = fix_up_headers(message, in);
    if (!fixed) return Err{fixed.error()};
    out.message = std::move(*fixed);
    return out;
}

}  // namespace pbx::mail
