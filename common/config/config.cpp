#include "common/config/config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.hpp"

namespace pbx::config {
namespace {

// A config file larger than this is certainly a mistake (or not a config file).
constexpr size_t kMaxFileSize = 4 * 1024 * 1024;

std::string_view trim(std::string_view s) {
    size_t b = 0;
    while (b < s.size() && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
    size_t e = s.size();
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
    return s.substr(b, e - b);
}

bool parse_u64(std::string_view s, uint64_t& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

std::string lower(std::string_view s) {
    std::string r(s);
    for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
}

Result<bool, std::string> parse_bool(std::string_view v) {
    std::string l = lower(v);
    if (l == "yes" || l == "true" || l == "on" || l == "1") return true;
    if (l == "no" || l == "false" || l == "off" || l == "0") return false;
    return Err{std::string("expected yes or no, got '") + std::string(v) + "'"};
}

// Number with a unit suffix; multipliers as given, "" = factor for no suffix.
Result<uint64_t, std::string> parse_with_unit(
    std::string_view v, std::string_view what,
    std::initializer_list<std::pair<char, uint64_t>> units) {
    std::string_view digits = v;
    uint64_t factor = 1;
    if (!v.empty() && !std::isdigit(static_cast<unsigned char>(v.back()))) {
        char u = static_cast<char>(std::tolower(static_cast<unsigned char>(v.back())));
        bool found = false;
        for (auto [c, f] : units) {
            if (c == u) {
                factor = f;
                found = true;
            }
        }
        if (!found)
            return Err{std::string("bad unit in ") + std::string(what) + " '" + std::string(v) +
                       "'"};
        digits = v.substr(0, v.size() - 1);
    }
    uint64_t n = 0;
    if (!parse_u64(digits, n))
        return Err{std::string("expected ") + std::string(what) + ", got '" + std::string(v) + "'"};
    if (factor != 0 && n > UINT64_MAX / factor)
        return Err{std::string(what) + " too large: '" + std::string(v) + "'"};
    return n * factor;
}

Result<uint64_t, std::string> parse_duration(std::string_view v) {
    return parse_with_unit(v, "a duration (like 30s, 5m, 4h, 5d)",
                           {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}});
}

Result<uint64_t, std::string> parse_size(std::string_view v) {
    return parse_with_unit(
        v, "a size (like 512, 64k, 50M)",
        {{'b', 1}, {'k', 1024}, {'m', 1024 * 1024}, {'g', 1024ull * 1024 * 1024}});
}

}  // namespace

std::string ConfigError::to_string() const {
    if (line > 0) return file + ":" + std::to_string(line) + ": " + message;
    return file + ": " + message;
}

const KeyDef* find_key(std::string_view name) {
    auto keys = schema();
    auto it = std::lower_bound(keys.begin(), keys.end(), name,
                               [](const KeyDef& k, std::string_view n) { return k.name < n; });
    if (it == keys.end() || it->name != name) return nullptr;
    return &*it;
}

std::vector<std::string> split_list(std::string_view value) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < value.size()) {
        while (i < value.size() && (value[i] == ',' || value[i] == ' ' || value[i] == '\t')) ++i;
        size_t start = i;
        while (i < value.size() && value[i] != ',' && value[i] != ' ' && value[i] != '\t') ++i;
        if (i > start) out.emplace_back(value.substr(start, i - start));
    }
    return out;
}

Result<std::vector<Endpoint>, std::string> parse_endpoints(std::string_view value) {
    std::vector<Endpoint> out;
    for (const std::string& word : split_list(value)) {
        std::string_view w = word;
        Endpoint ep;
        size_t colon;
        if (!w.empty() && w.front() == '[') {
            size_t close = w.find(']');
            if (close == std::string_view::npos || close + 1 >= w.size() || w[close + 1] != ':')
                return Err{"expected [address]:port, got '" + word + "'"};
            ep.host = std::string(w.substr(1, close - 1));
            colon = close + 1;
        } else {
            colon = w.rfind(':');
            if (colon == std::string_view::npos || colon == 0)
                return Err{"expected host:port, got '" + word + "'"};
            ep.host = std::string(w.substr(0, colon));
            if (ep.host.find(':') != std::string::npos)
                return Err{"IPv6 addresses need brackets: '" + word + "'"};
        }
        uint64_t port = 0;
        if (!parse_u64(w.substr(colon + 1), port) || port == 0 || port > 65535)
            return Err{"bad port in '" + word + "'"};
        ep.port = static_cast<uint16_t>(port);
        out.push_back(std::move(ep));
    }
    return out;
}

Result<Unit, std::string> validate(Type type, std::string_view value) {
    switch (type) {
        case Type::String:
        case Type::List:
            return Unit{};
        case Type::Int: {
            uint64_t n;
            if (!parse_u64(value, n) || n > INT64_MAX)
                return Err{"expected a whole number, got '" + std::string(value) + "'"};
            return Unit{};
        }
        case Type::Bool: {
            auto r = parse_bool(value);
            if (!r) return Err{r.error()};
            return Unit{};
        }
        case Type::Duration: {
            auto r = parse_duration(value);
            if (!r) return Err{r.error()};
            return Unit{};
        }
        case Type::Size: {
            auto r = parse_size(value);
            if (!r) return Err{r.error()};
            return Unit{};
        }
        case Type::Endpoints: {
            auto r = parse_endpoints(value);
            if (!r) return Err{r.error()};
            return Unit{};
        }
    }
    return Err{std::string("unknown type")};
}

Result<Config, ConfigError> Config::load(const std::string& path) {
    // read(2), not ifstream: iostreams would initialise the C++ locale machinery
    // in every process (~500 KiB resident).
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Err{ConfigError{path, 0, std::string("cannot read: ") + std::strerror(errno)}};
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return Err{ConfigError{path, 0, std::string("cannot read: ") + std::strerror(errno)}};
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxFileSize) return Err{ConfigError{path, 0, "file is too large"}};
    }
    auto r = parse(text, path);
    if (r) r->path_ = path;
    return r;
}

Result<Config, ConfigError> Config::parse(std::string_view text, std::string_view file_name) {
    Config cfg;
    cfg.path_ = std::string(file_name);
    std::map<std::string, int, std::less<>> seen_at;
    std::string cur_key;
    int cur_line = 0;
    std::string cur_value;

    auto finish = [&]() -> Result<Unit, ConfigError> {
        if (cur_key.empty()) return Unit{};
        const KeyDef* def = find_key(cur_key);
        auto ok = validate(def->type, cur_value);
        if (!ok)
            return Err{ConfigError{std::string(file_name), cur_line, cur_key + ": " + ok.error()}};
        cfg.values_[cur_key] = cur_value;
        cur_key.clear();
        return Unit{};
    };

    int line_no = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
        pos = (nl == std::string_view::npos) ? text.size() : nl + 1;
        ++line_no;
        if (line.find('\0') != std::string_view::npos)
            return Err{ConfigError{std::string(file_name), line_no, "NUL byte in line"}};
        std::string_view t = trim(line);
        if (t.empty() || t.front() == '#') continue;
        if (line.front() == ' ' || line.front() == '\t') {
            if (cur_key.empty())
                return Err{ConfigError{std::string(file_name), line_no,
                                       "continuation line without a key before it"}};
            cur_value += ' ';
            cur_value += t;
            continue;
        }
        if (auto r = finish(); !r) return Err{r.error()};
        size_t eq = t.find('=');
        if (eq == std::string_view::npos)
            return Err{ConfigError{std::string(file_name), line_no,
                                   "expected 'key = value', got '" + std::string(t) + "'"}};
        std::string key(trim(t.substr(0, eq)));
        if (key.empty())
            return Err{ConfigError{std::string(file_name), line_no, "missing key before '='"}};
        if (!find_key(key))
            return Err{ConfigError{std::string(file_name), line_no, "unknown key '" + key + "'"}};
        if (auto it = seen_at.find(key); it != seen_at.end())
            return Err{
                ConfigError{std::string(file_name), line_no,
                            "'" + key + "' is already set on line " + std::to_string(it->second)}};
        seen_at[key] = line_no;
        cur_key = key;
        cur_line = line_no;
        cur_value = std::string(trim(t.substr(eq + 1)));
    }
    if (auto r = finish(); !r) return Err{r.error()};
    return cfg;
}

const std::string& Config::raw(std::string_view key) const {
    if (auto it = values_.find(key); it != values_.end()) return it->second;
    const KeyDef* def = find_key(key);
    if (!def) {
        std::fprintf(stderr, "BUG: undeclared config key '%.*s'\n", static_cast<int>(key.size()),
                     key.data());
        std::abort();
    }
    // Defaults are interned on first use so a reference can be returned.
    static thread_local std::map<std::string, std::string, std::less<>> defaults;
    auto [it, _] = defaults.try_emplace(std::string(key), std::string(def->default_value));
    return it->second;
}

std::string Config::str(std::string_view key) const {
    return raw(key);
}

int64_t Config::integer(std::string_view key) const {
    uint64_t n = 0;
    parse_u64(raw(key), n);
    return static_cast<int64_t>(n);
}

bool Config::boolean(std::string_view key) const {
    auto r = parse_bool(raw(key));
    return r ? *r : false;
}

std::chrono::seconds Config::duration(std::string_view key) const {
    auto r = parse_duration(raw(key));
    return std::chrono::seconds(r ? static_cast<int64_t>(*r) : 0);
}

uint64_t Config::size(std::string_view key) const {
    auto r = parse_size(raw(key));
    return r ? *r : 0;
}

std::vector<std::string> Config::list(std::string_view key) const {
    return split_list(raw(key));
}

std::vector<Endpoint> Config::endpoints(std::string_view key) const {
    auto r = parse_endpoints(raw(key));
    return r ? *r : std::vector<Endpoint>{};
}

bool Config::is_set(std::string_view key) const {
    return values_.find(key) != values_.end();
}

Result<Unit, std::string> Config::set(std::string_view key, std::string_view value) {
    const KeyDef* def = find_key(key);
    if (!def) return Err{"unknown key '" + std::string(key) + "'"};
    auto ok = validate(def->type, value);
    if (!ok) return Err{std::string(key) + ": " + ok.error()};
    values_[std::string(key)] = std::string(value);
    return Unit{};
}

std::string Config::show(bool all) const {
    std::string out;
    for (const KeyDef& k : schema()) {
        if (!all && !is_set(k.name)) continue;
        out.append(k.name);
        out += " =";
        const std::string& v = raw(k.name);
        if (!v.empty()) {
            out += ' ';
            out += v;
        }
        out += '\n';
    }
    return out;
}

}  // namespace pbx::config
