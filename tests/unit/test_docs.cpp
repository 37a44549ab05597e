// Keeps the documentation in step with the code: every configuration key of
// the schema has an entry in pillarbox.conf(5) stating its type and default,
// the page documents no key the schema lacks, and the shipped example
// configuration loads. PBX_SOURCE_DIR is the source tree (tests/meson.build).
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.hpp"

#ifndef PBX_SOURCE_DIR
#error "tests/meson.build passes -DPBX_SOURCE_DIR"
#endif

namespace {

using pbx::config::Type;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// The words the man page uses for each type (its FORMAT section).
std::string_view type_word(Type t) {
    switch (t) {
        case Type::String:
            return "string";
        case Type::Int:
            return "integer";
        case Type::Bool:
            return "boolean";
        case Type::Duration:
            return "duration";
        case Type::Size:
            return "size";
        case Type::List:
            return "list";
        case Type::Endpoints:
            return "endpoints";
    }
    return "?";
}

// Undoes the few roff escapes a key entry may use: \- (hyphen-minus),
// \e (backslash), \& (zero-width).
std::string unroff(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
            char c = s[i + 1];
            if (c == '-') {
                out += '-';
                ++i;
                continue;
            }
            if (c == 'e') {
                out += '\\';
                ++i;
                continue;
            }
            if (c == '&') {
                ++i;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

// What the line after ".B key" must say.
std::string expected_summary(const pbx::config::KeyDef& k) {
    std::string def = k.default_value.empty() ? "empty" : std::string(k.default_value);
    return "(" + std::string(type_word(k.type)) + ", default " + def + ")";
}

struct Entry {
    size_t line;          // 1-based, of ".B key"
    std::string summary;  // the next line, unescaped
};

// Key entries are ".TP", ".B key", "(type, default value)", description.
std::map<std::string, Entry, std::less<>> key_entries(const std::vector<std::string>& lines) {
    std::map<std::string, Entry, std::less<>> entries;
    for (size_t i = 1; i + 1 < lines.size(); ++i) {
        if (lines[i - 1] != ".TP" || lines[i].rfind(".B ", 0) != 0) continue;
        std::string summary = unroff(lines[i + 1]);
        if (summary.empty() || summary.front() != '(' ||
            summary.find(", default ") == std::string::npos)
            continue;
        entries[unroff(lines[i].substr(3))] = Entry{i + 1, summary};
    }
    return entries;
}

const std::string kManPage = std::string(PBX_SOURCE_DIR) + "/man/pillarbox.conf.5";

}  // namespace

TEST_CASE("docs: unroff undoes the escapes key entries use", "[docs]") {
    CHECK(unroff("a\\-b") == "a-b");
    CHECK(unroff("\\&.dot") == ".dot");
    CHECK(unroff("back\\eslash") == "back\\slash");
    CHECK(unroff("trailing\\") == "trailing\\");
    CHECK(unroff("") == "");
}

TEST_CASE("docs: every schema key is documented in pillarbox.conf(5)", "[docs]") {
    std::string text = read_file(kManPage);
    REQUIRE_FALSE(text.empty());
    auto entries = key_entries(split_lines(text));
    for (const auto& k : pbx::config::schema()) {
        std::string name(k.name);
        INFO("key " << name << " (add a .TP/.B entry to man/pillarbox.conf.5, section KEYS)");
        auto it = entries.find(name);
        CHECK(it != entries.end());  // not REQUIRE: list every missing key at once
        if (it == entries.end()) continue;
        INFO("man/pillarbox.conf.5:" << it->second.line + 1);
        CHECK(it->second.summary == expected_summary(k));
    }
}

TEST_CASE("docs: pillarbox.conf(5) documents no key the schema lacks", "[docs]") {
    auto entries = key_entries(split_lines(read_file(kManPage)));
    REQUIRE(entries.size() >= pbx::config::schema().size());
    for (const auto& [name, entry] : entries) {
        INFO("man/pillarbox.conf.5:" << entry.line << ": " << name);
        CHECK(pbx::config::find_key(name) != nullptr);
    }
}

TEST_CASE("docs: the example configuration loads", "[docs]") {
    auto cfg = pbx::config::Config::load(std::string(PBX_SOURCE_DIR) +
                                         "/packaging/pillarbox.conf.example");
    INFO((cfg.ok() ? std::string() : cfg.error().to_string()));
    REQUIRE(cfg.ok());
    CHECK(cfg->is_set("domains"));
    CHECK(cfg->is_set("myhostname"));
}
