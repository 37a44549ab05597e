#include "common/smtp/received.hpp"

#include <cstdio>

namespace pbx::smtp {
namespace {

// Keeps printable ASCII and UTF-8 bytes; anything that could end the header
// line or break out of a comment or angle brackets becomes '?'.
std::string sanitize(std::string_view value, std::string_view also_forbidden) {
    std::string out;
    out.reserve(value.size());
    for (unsigned char c : value) {
        bool bad = c < 0x20 || c == 0x7F ||
                   also_forbidden.find(static_cast<char>(c)) != std::string_view::npos;
        out += bad ? '?' : static_cast<char>(c);
    }
    return out;
}

std::string comment_safe(std::string_view v) {
    return sanitize(v, "()\\ ");
}

// Comment text that may nest balanced parentheses, as RFC 5322 3.2.2
// allows ("(using TLSv1.3 ... (256/256 bits))"); unbalanced ones could close
// the comment early, so then every parenthesis goes.
std::string nested_comment_safe(std::string_view v) {
    int depth = 0;
    for (char c : v) {
        if (c == '(') ++depth;
        if (c == ')' && --depth < 0) break;
    }
    return sanitize(v, depth == 0 ? "\\" : "()\\");
}

}  // namespace

std::string_view protocol_name(bool esmtp, bool smtputf8, bool tls, bool authenticated) {
    if (!esmtp) return "SMTP";
    if (smtputf8) {
        if (tls) return authenticated ? "UTF8SMTPSA" : "UTF8SMTPS";
        return authenticated ? "UTF8SMTPA" : "UTF8SMTP";
    }
    if (tls) return authenticated ? "ESMTPSA" : "ESMTPS";
    return authenticated ? "ESMTPA" : "ESMTP";
}

std::string rfc5322_date(std::time_t when, int utc_offset_minutes) {
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::time_t local = when + static_cast<std::time_t>(utc_offset_minutes) * 60;
    std::tm tm{};
    if (gmtime_r(&local, &tm) == nullptr) {
        local = 0;
        gmtime_r(&local, &tm);
    }
    int off = utc_offset_minutes;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %d %s %04d %02d:%02d:%02d %c%02d%02d",
                  kDays[tm.tm_wday % 7], tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, sign, (off / 60) % 100, off % 60);
    return buf;
}

std::string received_header(const ReceivedInfo& info) {
    std::string h = "Received: from ";
    h += info.helo.empty() ? std::string("unknown") : comment_safe(info.helo);
    h += " (";
    h += info.client_host.empty() ? std::string("unknown") : comment_safe(info.client_host);
    h += " [";
    h += sanitize(info.client_ip, "()\\ []");
    h += "])\r\n";
    if (!info.auth_user.empty()) {
        h += "\t(Authenticated sender: ";
        h += comment_safe(info.auth_user);
        h += ")\r\n";
    }
    if (!info.tls_details.empty()) {
        h += "\t(using ";
        h += nested_comment_safe(info.tls_details);
        h += ")\r\n";
    }
    h += "\tby ";
    h += comment_safe(info.by_host);
    h += " (Pillarbox) with ";
    h += sanitize(info.protocol, "()\\ ;");
    if (!info.queue_id.empty()) {
        h += " id ";
        h += sanitize(info.queue_id, "()\\ ;");
    }
    if (!info.recipient.empty()) {
        h += "\r\n\tfor <";
        h += sanitize(info.recipient, "<>");
        h += ">";
    }
    h += ";\r\n\t";
    h += rfc5322_date(info.when, info.utc_offset_minutes);
    h += "\r\n";
    return h;
}

}  // namespace pbx::smtp
