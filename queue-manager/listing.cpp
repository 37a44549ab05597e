#include "queue-manager/listing.hpp"

#include <cstdio>
#include <ctime>

#include "common/smtp/received.hpp"

namespace pbx::qm {
namespace {

constexpr int kIdWidth = static_cast<int>(spool::QueueId::kLength) + 1;  // + status char
constexpr int kRecipientIndent = kIdWidth + 1 + 8 + 1 + 20 + 2;
constexpr std::string_view kReasonIndent = "        ";

std::string printf_string(const char* fmt, auto... args) {
    char buf[512];
    int n = std::snprintf(buf, sizeof buf, fmt, args...);
    if (n < 0) return {};
    if (static_cast<size_t>(n) < sizeof buf) return std::string(buf, static_cast<size_t>(n));
    std::string out(static_cast<size_t>(n) + 1, '\0');
    std::snprintf(out.data(), out.size(), fmt, args...);
    out.resize(static_cast<size_t>(n));
    return out;
}

// "Tue Nov 14 22:13:20", as mailq shows arrival times.
std::string short_date(Seconds t, int utc_offset_minutes) {
    std::time_t when = static_cast<std::time_t>(t.time_since_epoch().count()) +
                       static_cast<std::time_t>(utc_offset_minutes) * 60;
    std::tm tm{};
    if (gmtime_r(&when, &tm) == nullptr) return "?";
    char buf[32];
    size_t n = std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S", &tm);
    return std::string(buf, n);
}

std::string long_date(Seconds t, int utc_offset_minutes) {
    auto secs = t.time_since_epoch().count();
    if (secs == 0) return "never";
    return smtp::rfc5322_date(static_cast<std::time_t>(secs), utc_offset_minutes) + " (" +
           std::to_string(secs) + ")";
}

bool still_to_deliver(const spool::Recipient& r) {
    return r.state == spool::RcptState::Pending || r.state == spool::RcptState::Deferred;
}

std::string reason_of(const Entry& e, const spool::Recipient& r) {
    if (!r.last_reply.empty()) return r.last_reply;
    return e.note;
}

// Printable for a terminal: control octets become '?'.
std::string printable(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return out;
}

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t utf8_sequence(std::string_view s, size_t i) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = byte(i);
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (len == 0 || i + len > s.size()) return 0;
    for (size_t k = 1; k < len; ++k)
        if ((byte(i + k) & 0xc0) != 0x80) return 0;
    // Overlong 3-byte forms, surrogates, and code points above U+10FFFF.
    if (len == 3 && c == 0xe0 && byte(i + 1) < 0xa0) return 0;
    if (len == 3 && c == 0xed && byte(i + 1) >= 0xa0) return 0;
    if (len == 4 && c == 0xf0 && byte(i + 1) < 0x90) return 0;
    if (len == 4 && c == 0xf4 && byte(i + 1) >= 0x90) return 0;
    return len;
}

}  // namespace

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            out += printf_string("\\u%04x", c);
        } else if (c >= 0x80) {
            size_t len = utf8_sequence(s, i);
            if (len == 0) {
                out += printf_string("\\u%04x", c);
            } else {
                out.append(s.substr(i, len));
                i += len;
                continue;
            }
        } else {
            out += static_cast<char>(c);
        }
        ++i;
    }
    out += '"';
    return out;
}

std::string_view queue_name(const Entry& e) {
    if (e.held) return "hold";
    for (const auto& r : e.env.recipients)
        if (r.state == spool::RcptState::Deferred) return "deferred";
    return "active";
}

std::string list_text(std::span<const Entry* const> entries, int utc_offset_minutes) {
    if (entries.empty()) return "Mail queue is empty\n";
    std::string out = printf_string("%-*s %8s %-20s  %s\n", kIdWidth, "-Queue ID-", "--Size--",
                                    "----Arrival Time----", "-Sender/Recipient-------");
    uint64_t total = 0;
    for (const Entry* e : entries) {
        const spool::Envelope& env = e->env;
        total += env.size;
        char status = e->held ? '!' : e->in_delivery > 0 ? '*' : ' ';
        std::string sender = env.sender.empty() ? "MAILER-DAEMON" : printable(env.sender);
        out += printf_string("%s%c %8llu %20s  %s\n", env.id.str().c_str(), status,
                             static_cast<unsigned long long>(env.size),
                             short_date(env.arrival, utc_offset_minutes).c_str(), sender.c_str());
        std::string last_reason;
        for (const auto& r : env.recipients) {
            if (!still_to_deliver(r)) continue;
            std::string reason = reason_of(*e, r);
            if (!reason.empty() && reason != last_reason) {
                out += std::string(kReasonIndent) + "(" + printable(reason) + ")\n";
            }
            last_reason = reason;
            out += std::string(kRecipientIndent, ' ') + printable(r.address) + "\n";
        }
        out += "\n";
    }
    size_t n = entries.size();
    out +=
        printf_string("-- %llu Kbytes in %zu Request%s.\n",
                      static_cast<unsigned long long>((total + 1023) / 1024), n, n == 1 ? "" : "s");
    return out;
}

std::string list_json(std::span<const Entry* const> entries) {
    std::string out;
    for (const Entry* e : entries) {
        const spool::Envelope& env = e->env;
        out += "{\"queue_name\":" + json_string(queue_name(*e));
        out += ",\"queue_id\":" + json_string(env.id.str());
        out += ",\"arrival_time\":" + std::to_string(env.arrival.time_since_epoch().count());
        out += ",\"message_size\":" + std::to_string(env.size);
        out += ",\"sender\":" + json_string(env.sender);
        out += ",\"recipients\":[";
        bool first = true;
        for (const auto& r : env.recipients) {
            if (!still_to_deliver(r)) continue;
            if (!first) out += ",";
            first = false;
            out += "{\"address\":" + json_string(r.address);
            out += ",\"state\":" + json_string(spool::to_string(r.state));
            std::string reason = reason_of(*e, r);
            if (!reason.empty()) out += ",\"delay_reason\":" + json_string(reason);
            out += "}";
        }
        out += "]}\n";
    }
    return out;
}

std::string show_text(const Entry& e, int utc_offset_minutes) {
    const spool::Envelope& env = e.env;
    std::string out;
    auto line = [&](std::string_view key, std::string_view value) {
        out += std::string(key) + ": " + printable(value) + "\n";
    };
    line("id", env.id.str());
    line("queue", queue_name(e));
    line("arrival", long_date(env.arrival, utc_offset_minutes));
    line("origin", spool::to_string(env.origin));
    if (env.origin == spool::Origin::Sendmail) line("uid", std::to_string(env.origin_uid));
    if (!env.client_address.empty() || !env.client_hostname.empty())
        line("client", (env.client_hostname.empty() ? "unknown" : env.client_hostname) + "[" +
                           env.client_address + "]");
    if (!env.helo.empty()) line("helo", env.helo);
    line("protocol", env.protocol);
    if (!env.tls.empty()) line("tls", env.tls);
    if (!env.auth_user.empty()) line("auth-user", env.auth_user);
    line("sender", "<" + env.sender + ">");
    line("size", std::to_string(env.size));
    line("body", spool::to_string(env.body));
    if (env.smtputf8) line("smtputf8", "yes");
    if (env.ret != spool::DsnRet::Unspecified)
        line("ret", env.ret == spool::DsnRet::Full ? "FULL" : "HDRS");
    if (!env.envid.empty()) line("envid", env.envid);
    if (!e.note.empty()) line("note", e.note);
    for (const auto& r : env.recipients) {
        out += "recipient: <" + printable(r.address) + ">\n";
        line("  state", spool::to_string(r.state));
        line("  attempts", std::to_string(r.attempts));
        line("  last-attempt", long_date(r.last_attempt, utc_offset_minutes));
        if (still_to_deliver(r)) {
            Seconds next = r.next_attempt;
            line("  next-attempt", next.time_since_epoch().count() == 0
                                       ? "as soon as possible"
                                       : long_date(next, utc_offset_minutes));
        }
        if (!r.last_reply.empty()) line("  last-reply", r.last_reply);
        if (!r.orcpt.empty()) line("  orcpt", r.orcpt);
        if (r.notify != 0) line("  notify", spool::notify_to_string(r.notify));
    }
    return out;
}

std::string show_json(const Entry& e) {
    const spool::Envelope& env = e.env;
    std::string out = "{";
    auto field = [&](std::string_view key, const std::string& json_value) {
        if (out.size() > 1) out += ",";
        out += json_string(key) + ":" + json_value;
    };
    auto str = [&](std::string_view key, std::string_view v) { field(key, json_string(v)); };
    auto num = [&](std::string_view key, uint64_t v) { field(key, std::to_string(v)); };
    str("queue_id", env.id.str());
    str("queue_name", queue_name(e));
    num("arrival_time", static_cast<uint64_t>(env.arrival.time_since_epoch().count()));
    str("origin", spool::to_string(env.origin));
    num("uid", env.origin_uid);
    str("client_address", env.client_address);
    str("client_hostname", env.client_hostname);
    str("helo", env.helo);
    str("protocol", env.protocol);
    str("tls", env.tls);
    str("auth_user", env.auth_user);
    str("sender", env.sender);
    num("message_size", env.size);
    str("body", spool::to_string(env.body));
    field("smtputf8", env.smtputf8 ? "true" : "false");
    str("ret", env.ret == spool::DsnRet::Full      ? "FULL"
               : env.ret == spool::DsnRet::Headers ? "HDRS"
                                                   : "");
    str("envid", env.envid);
    str("note", e.note);
    std::string rcpts = "[";
    for (const auto& r : env.recipients) {
        if (rcpts.size() > 1) rcpts += ",";
        rcpts += "{\"address\":" + json_string(r.address);
        rcpts += ",\"state\":" + json_string(spool::to_string(r.state));
        rcpts += ",\"attempts\":" + std::to_string(r.attempts);
        rcpts += ",\"last_attempt\":" + std::to_string(r.last_attempt.time_since_epoch().count());
        rcpts += ",\"next_attempt\":" + std::to_string(r.next_attempt.time_since_epoch().count());
        rcpts += ",\"last_reply\":" + json_string(r.last_reply);
        rcpts += ",\"orcpt\":" + json_string(r.orcpt);
        rcpts += ",\"notify\":" + json_string(spool::notify_to_string(r.notify));
        rcpts += "}";
    }
    rcpts += "]";
    field("recipients", rcpts);
    out += "}\n";
    return out;
}

}  // namespace pbx::qm
