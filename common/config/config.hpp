// The one configuration mechanism: /etc/pillarbox/pillarbox.conf.
//
// Format: one `key = value` per line; `#` starts a comment line; a line that
// begins with white space continues the previous value (Postfix style). Every
// key is declared in the schema (schema.cpp) with a type, a default and a
// one-line description; pillarbox.conf(5) documents the same table. An unknown
// key, a repeated key or a value that does not parse as its type is an error
// naming the file and line. Typed getters never fail: values were validated at
// load time, and asking for an undeclared key is a programming error (abort).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace pbx::config {

enum class Type {
    String,
    Int,        // non-negative decimal
    Bool,       // yes/no, true/false, on/off, 1/0
    Duration,   // 30s, 5m, 4h, 5d, 1w; a bare number is seconds
    Size,       // 512, 10k, 50M, 1G (binary multiples)
    List,       // comma and/or white space separated words
    Endpoints,  // list of host:port, [v6]:port; empty = disabled
};

struct KeyDef {
    std::string_view name;
    Type type;
    std::string_view default_value;
    std::string_view doc;
};

// The schema: every key any program reads. Sorted by name.
std::span<const KeyDef> schema();
const KeyDef* find_key(std::string_view name);

struct ConfigError {
    std::string file;
    int line = 0;  // 0: not about one line (e.g. the file cannot be read)
    std::string message;
    std::string to_string() const;  // "file:line: message"
};

struct Endpoint {
    std::string host;  // without brackets
    uint16_t port = 0;
};

// Parses a value of the given type; the error text says what was expected.
Result<Unit, std::string> validate(Type type, std::string_view value);
Result<std::vector<Endpoint>, std::string> parse_endpoints(std::string_view value);
std::vector<std::string> split_list(std::string_view value);

class Config {
  public:
    // A configuration holding only defaults.
    Config() = default;

    static Result<Config, ConfigError> load(const std::string& path);
    static Result<Config, ConfigError> parse(std::string_view text, std::string_view file_name);

    std::string str(std::string_view key) const;
    int64_t integer(std::string_view key) const;
    bool boolean(std::string_view key) const;
    std::chrono::seconds duration(std::string_view key) const;
    uint64_t size(std::string_view key) const;
    std::vector<std::string> list(std::string_view key) const;
    std::vector<Endpoint> endpoints(std::string_view key) const;

    // True when the file set the key (false: the default applies).
    bool is_set(std::string_view key) const;
    // Overrides a value (tests, command-line flags); validated like the file.
    Result<Unit, std::string> set(std::string_view key, std::string_view value);

    // Effective settings, "key = value" lines sorted by key: only the keys the
    // file set, or every key when `all`.
    std::string show(bool all) const;

    const std::string& path() const { return path_; }

  private:
    const std::string& raw(std::string_view key) const;
    std::string path_;
    std::map<std::string, std::string, std::less<>> values_;
};

// The default path, overridable with PBX_CONFIG or -c.
inline constexpr std::string_view kDefaultPath = "/etc/pillarbox/pillarbox.conf";

}  // namespace pbx::config
