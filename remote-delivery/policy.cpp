#include "remote-delivery/policy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "common/unique_fd.hpp"

namespace pbx::remote {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

// Calls fn(line_number, key, value) for each non-comment line; the value is
// the rest of the line after white space.
template <class Fn>
std::optional<std::string> each_line(std::string_view text, Fn fn) {
    int n = 0;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++n;
        line = trim(line);
        if (line.empty() || line.front() == '#') continue;
        size_t sp = line.find_first_of(" \t");
        if (sp == std::string_view::npos)
            return "line " + std::to_string(n) + ": expected \"destination value\"";
        if (auto err = fn(line.substr(0, sp), trim(line.substr(sp + 1))))
            return "line " + std::to_string(n) + ": " + *err;
    }
    return std::nullopt;
}

bool valid_host(std::string_view h) {
    if (h.empty() || h.size() > 253) return false;
    for (char c : h) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == ':';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

std::string NextHop::key() const {
    std::string h = lower(host);
    std::string k = mx_lookup ? h : "[" + h + "]";
    return k + ":" + std::to_string(port);
}

Result<NextHop, std::string> parse_nexthop(std::string_view text, uint16_t default_port) {
    NextHop hop;
    hop.port = default_port;
    text = trim(text);
    if (text.empty()) return Err{std::string("empty next hop")};
    std::string_view rest;
    if (text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) return Err{"missing ']' in " + std::string(text)};
        hop.host = std::string(text.substr(1, close - 1));
        hop.mx_lookup = false;
        rest = text.substr(close + 1);
    } else {
        size_t colon = text.rfind(':');
        // host:port (an unbracketed IPv6 address is not allowed: use brackets)
        hop.host = std::string(text.substr(0, colon));
        rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
        if (hop.host.find(':') != std::string::npos)
            return Err{"write IPv6 addresses in brackets: " + std::string(text)};
    }
    if (!rest.empty()) {
        if (rest.front() != ':') return Err{"junk after the host in " + std::string(text)};
        rest.remove_prefix(1);
        unsigned p = 0;
        auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), p);
        if (ec != std::errc() || ptr != rest.data() + rest.size() || p == 0 || p > 65535)
            return Err{"bad port in " + std::string(text)};
        hop.port = static_cast<uint16_t>(p);
    }
    if (!valid_host(hop.host)) return Err{"bad host name in " + std::string(text)};
    hop.host = lower(hop.host);
    return hop;
}

Result<TlsPolicy, std::string> TlsPolicy::parse(std::string_view text) {
    TlsPolicy p;
    auto err = each_line(
        text, [&](std::string_view key, std::string_view value) -> std::optional<std::string> {
            auto level = smtp::client::parse_tls_level(value);
            if (!level)
                return "unknown TLS level \"" + std::string(value) +
                       "\" (none, may, encrypt or verify)";
            std::string k = lower(key);
            if (p.entries_.count(k)) return "destination " + k + " is listed twice";
            p.entries_[k] = *level;
            return std::nullopt;
        });
    if (err) return Err{*err};
    return p;
}

std::optional<smtp::client::TlsLevel> TlsPolicy::lookup(std::string_view destination) const {
    std::string d = lower(destination);
    if (auto it = entries_.find(d); it != entries_.end()) return it->second;
    // A relay host: "[host]:port", then "[host]", then "host".
    if (!d.empty() && d.front() == '[') {
        size_t close = d.find(']');
        if (close != std::string::npos) {
            for (std::string k : {d.substr(0, close + 1), d.substr(1, close - 1)})
                if (auto it = entries_.find(k); it != entries_.end()) return it->second;
        }
        return std::nullopt;
    }
    if (size_t colon = d.find(':'); colon != std::string::npos) d.resize(colon);
    if (auto it = entries_.find(d); it != entries_.end()) return it->second;
    // ".example.org" covers every subdomain.
    for (size_t dot = d.find('.'); dot != std::string::npos; dot = d.find('.', dot + 1))
        if (auto it = entries_.find(std::string_view(d).substr(dot)); it != entries_.end())
            return it->second;
    return std::nullopt;
}

Result<RelayMap, std::string> RelayMap::parse(std::string_view text, uint16_t default_port) {
    RelayMap m;
    auto err = each_line(
        text, [&](std::string_view key, std::string_view value) -> std::optional<std::string> {
            auto hop = parse_nexthop(value, default_port);
            if (!hop) return hop.error();
            std::string k = lower(key);
            if (m.entries_.count(k)) return "domain " + k + " is listed twice";
            hop->relay = true;
            m.entries_[k] = *hop;
            return std::nullopt;
        });
    if (err) return Err{*err};
    return m;
}

std::optional<NextHop> RelayMap::lookup(std::string_view domain) const {
    std::string d = lower(domain);
    if (auto it = entries_.find(d); it != entries_.end()) return it->second;
    for (size_t dot = d.find('.'); dot != std::string::npos; dot = d.find('.', dot + 1))
        if (auto it = entries_.find(std::string_view(d).substr(dot)); it != entries_.end())
            return it->second;
    return std::nullopt;
}

Result<SenderRelayMap, std::string> SenderRelayMap::parse(std::string_view text,
                                                          uint16_t default_port) {
    SenderRelayMap m;
    auto err = each_line(
        text, [&](std::string_view key, std::string_view value) -> std::optional<std::string> {
            std::string k = lower(key);
            size_t at = k.rfind('@');
            if (k != "<>" && (at == std::string::npos || at + 1 == k.size()))
                return "expected a sender address, @domain or <> instead of \"" + k + "\"";
            auto hop = parse_nexthop(value, default_port);
            if (!hop) return hop.error();
            if (m.entries_.count(k)) return "sender " + k + " is listed twice";
            hop->relay = true;
            m.entries_[k] = *hop;
            return std::nullopt;
        });
    if (err) return Err{*err};
    return m;
}

std::optional<NextHop> SenderRelayMap::lookup(std::string_view sender) const {
    if (entries_.empty()) return std::nullopt;
    std::string s = sender.empty() ? std::string("<>") : lower(sender);
    if (auto it = entries_.find(s); it != entries_.end()) return it->second;
    size_t at = s.rfind('@');
    if (at != std::string::npos)
        if (auto it = entries_.find(std::string_view(s).substr(at)); it != entries_.end())
            return it->second;
    return std::nullopt;
}

Result<Credentials, std::string> Credentials::parse(std::string_view text) {
    Credentials c;
    auto err = each_line(
        text, [&](std::string_view key, std::string_view value) -> std::optional<std::string> {
            size_t colon = value.find(':');
            if (colon == std::string_view::npos || colon == 0 || colon + 1 == value.size())
                return std::string("expected user:password");
            std::string k = lower(key);
            if (c.entries_.count(k)) return "destination " + k + " is listed twice";
            c.entries_[k] = {std::string(value.substr(0, colon)),
                             std::string(value.substr(colon + 1))};
            return std::nullopt;
        });
    if (err) return Err{*err};
    return c;
}

const std::pair<std::string, std::string>* Credentials::lookup(const NextHop& hop) const {
    std::string full = hop.key();
    std::string h = lower(hop.host);
    std::vector<std::string> keys = {full};
    if (!hop.mx_lookup) {
        keys.push_back("[" + h + "]");
    }
    keys.push_back(h);
    for (const auto& k : keys)
        if (auto it = entries_.find(k); it != entries_.end()) return &it->second;
    return nullptr;
}

Result<std::string> read_table_file(const std::string& path, bool secret) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return fail_errno(path);
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return fail_errno(path);
    if (!S_ISREG(st.st_mode)) return fail(path + ": not a regular file");
    if (secret && (st.st_uid != 0 || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0))
        return fail(path + ": holds passwords, so it must belong to root and be unreadable to " +
                    "group and others (chmod 600)");
    constexpr off_t kMax = 1 << 20;
    if (st.st_size > kMax) return fail(path + ": larger than 1 MiB");
    std::string text(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < text.size()) {
        ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(path);
        if (n == 0) break;
        got += static_cast<size_t>(n);
    }
    text.resize(got);
    return text;
}

std::string domain_of(std::string_view address) {
    size_t at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    return lower(address.substr(at + 1));
}

}  // namespace pbx::remote
