#include "common/auth/aliases.hpp"

namespace pbx::auth {
namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t';
}

bool is_blank(std::string_view line) {
    return line.find_first_not_of(" \t") == std::string_view::npos;
}

bool is_comment(std::string_view line) {
    size_t i = line.find_first_not_of(" \t");
    return i != std::string_view::npos && line[i] == '#';
}

std::string_view trim(std::string_view s) {
    size_t b = 0;
    while (b < s.size() && is_space(s[b])) ++b;
    size_t e = s.size();
    while (e > b && is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool valid_domain(std::string_view d) {
    if (d.empty()) return false;
    if (d.front() == '[') return d.size() > 2 && d.back() == ']';
    if (d.front() == '.' || d.back() == '.' || d.find("..") != std::string_view::npos) return false;
    for (char c : d) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || static_cast<unsigned char>(c) >= 0x80;
        if (!ok) return false;
    }
    return true;
}

Result<AliasTarget, std::string> classify(std::string_view v, const AliasesLimits& limits) {
    if (v.empty()) return Err{std::string("empty target")};
    if (v[0] == '|') {
        std::string_view cmd = trim(v.substr(1));
        if (cmd.empty()) return Err{std::string("empty command after '|'")};
        return AliasTarget{AliasTargetKind::Command, std::string(cmd), false};
    }
    if (starts_with_ci(v, ":include:")) {
        std::string_view path = trim(v.substr(9));
        if (path.empty() || path[0] != '/')
            return Err{":include: needs an absolute path, got '" + std::string(path) + "'"};
        return AliasTarget{AliasTargetKind::Include, std::string(path), false};
    }
    if (v[0] == '/') return AliasTarget{AliasTargetKind::File, std::string(v), false};
    if (v[0] == '\\') {
        std::string name = ascii_lower(v.substr(1));
        if (!valid_alias_name(name, limits.max_name))
            return Err{"bad local name '" + std::string(v) + "'"};
        return AliasTarget{AliasTargetKind::Local, std::move(name), true};
    }
    if (size_t at = v.rfind('@'); at != std::string_view::npos) {
        std::string_view local = v.substr(0, at), domain = v.substr(at + 1);
        if (local.empty()) return Err{"address '" + std::string(v) + "' has no local part"};
        if (!valid_domain(domain)) return Err{"address '" + std::string(v) + "' has a bad domain"};
        return AliasTarget{AliasTargetKind::Address, std::string(v), false};
    }
    std::string name = ascii_lower(v);
    if (!valid_alias_name(name, limits.max_name))
        return Err{"bad local name '" + std::string(v) +
                   "' (quote commands, files and names with unusual characters)"};
    return AliasTarget{AliasTargetKind::Local, std::move(name), false};
}

}  // namespace

std::string_view to_string(AliasTargetKind k) {
    switch (k) {
        case AliasTargetKind::Local:
            return "local";
        case AliasTargetKind::Address:
            return "address";
        case AliasTargetKind::Include:
            return "include";
        case AliasTargetKind::Command:
            return "command";
        case AliasTargetKind::File:
            return "file";
    }
    return "?";
}

bool valid_alias_name(std::string_view name, size_t max_name) {
    if (name.empty() || name.size() > max_name) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-' && c != '+'))) return false;
    }
    return true;
}

Result<std::vector<AliasTarget>, std::string> parse_alias_targets(std::string_view text,
                                                                  const AliasesLimits& limits) {
    std::vector<AliasTarget> out;
    size_t i = 0;
    const size_t n = text.size();
    for (;;) {
        while (i < n && is_space(text[i])) ++i;
        if (i == n) {
            // Nothing at all, or nothing after a trailing comma (allowed, as
            // lists are often written "a,\n  b,\n  c,").
            if (out.empty()) return Err{std::string("no targets")};
            return out;
        }
        std::string value;
        if (text[i] == '"') {
            size_t j = i + 1;
            bool closed = false;
            while (j < n) {
                char c = text[j];
                if (c == '\\') {
                    if (j + 1 >= n) break;
                    value += text[j + 1];
                    j += 2;
                    continue;
                }
                if (c == '"') {
                    closed = true;
                    ++j;
                    break;
                }
                value += c;
                ++j;
            }
            if (!closed) return Err{std::string("unterminated quoted target")};
            while (j < n && is_space(text[j])) ++j;
            if (j < n && text[j] != ',')
                return Err{"text after the quoted target \"" + value + "\""};
            i = j;
        } else {
            size_t comma = text.find(',', i);
            size_t end = comma == std::string_view::npos ? n : comma;
            std::string_view item = trim(text.substr(i, end - i));
            if (item.empty()) return Err{std::string("empty target (two commas in a row?)")};
            if (item.find_first_of(" \t") != std::string_view::npos)
                return Err{"target '" + std::string(item) +
                           "' contains white space; put it in double quotes"};
            if (item.find('"') != std::string_view::npos)
                return Err{"stray '\"' in target '" + std::string(item) + "'"};
            value = std::string(item);
            i = end;
        }
        auto t = classify(value, limits);
        if (!t) return Err{std::move(t.error())};
        if (out.size() >= limits.max_targets)
            return Err{"more than " + std::to_string(limits.max_targets) + " targets"};
        out.push_back(std::move(t).value());
        if (i == n) return out;
        ++i;  // the comma
    }
}

Result<AliasMap, FileError> AliasMap::parse(std::string_view text, std::string_view file_name,
                                            const AliasesLimits& limits) {
    AliasMap map;
    auto error = [&](int line, std::string message) {
        return Err{FileError{std::string(file_name), line, std::move(message)}};
    };
    int entry_line = 0;  // 0: no entry open
    std::string entry;

    auto finish = [&]() -> Result<void, FileError> {
        if (entry_line == 0) return {};
        int line = entry_line;
        entry_line = 0;
        size_t colon = entry.find(':');
        if (colon == std::string::npos) return error(line, "expected 'name: target, ...'");
        std::string_view raw = trim(std::string_view(entry).substr(0, colon));
        std::string name = ascii_lower(raw);
        if (!valid_alias_name(name, limits.max_name))
            return error(line, "bad alias name '" + std::string(raw) + "'");
        if (auto it = map.entries_.find(name); it != map.entries_.end())
            return error(line, "duplicate alias '" + name + "' (first on line " +
                                   std::to_string(it->second.line) + ")");
        auto targets = parse_alias_targets(std::string_view(entry).substr(colon + 1), limits);
        if (!targets) return error(line, "alias '" + name + "': " + targets.error());
        if (map.entries_.size() >= limits.max_entries)
            return error(line, "more than " + std::to_string(limits.max_entries) + " aliases");
        AliasEntry e{name, std::move(targets).value(), line};
        map.entries_.emplace(std::move(name), std::move(e));
        return {};
    };

    auto r = for_each_line(text, [&](int n, std::string_view line) -> Result<void, FileError> {
        if (line.size() > limits.max_line)
            return error(n, "line longer than " + std::to_string(limits.max_line) + " bytes");
        for (char c : line) {
            unsigned char u = static_cast<unsigned char>(c);
            if (c == '\r') return error(n, "carriage return (DOS line ending?) in the line");
            if ((u < 0x20 && c != '\t') || u == 0x7f)
                return error(n, "control character (" + std::to_string(u) + ") in the line");
        }
        if (is_blank(line) || is_comment(line)) return {};
        if (is_space(line[0])) {
            if (entry_line == 0) return error(n, "continuation line without an entry before it");
            if (entry.size() + 1 + line.size() > limits.max_entry)
                return error(n, "entry longer than " + std::to_string(limits.max_entry) + " bytes");
            entry += ' ';
            entry += line;
            return {};
        }
        if (auto f = finish(); !f) return f;
        entry_line = n;
        entry = std::string(line);
        return {};
    });
    if (!r) return Err{std::move(r.error())};
    if (auto f = finish(); !f) return Err{std::move(f.error())};
    return map;
}

const AliasEntry* AliasMap::find(std::string_view name) const {
    auto it = entries_.find(ascii_lower(name));
    return it == entries_.end() ? nullptr : &it->second;
}

Result<std::vector<AliasTarget>, std::string> parse_target_lines(std::string_view text,
                                                                 const AliasesLimits& limits) {
    std::vector<AliasTarget> out;
    auto error = [](int n, std::string message) {
        return Err{FileError{"", n, std::move(message)}};
    };
    auto r = for_each_line(text, [&](int n, std::string_view line) -> Result<void, FileError> {
        if (line.size() > limits.max_line)
            return error(n, "longer than " + std::to_string(limits.max_line) + " bytes");
        for (char c : line) {
            unsigned char u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u == 0x7f) return error(n, "control character");
        }
        if (is_blank(line) || is_comment(line)) return {};
        auto targets = parse_alias_targets(line, limits);
        if (!targets) return error(n, std::move(targets.error()));
        for (AliasTarget& t : *targets) {
            if (out.size() >= limits.max_targets)
                return Err{FileError{
                    "", 0, "more than " + std::to_string(limits.max_targets) + " targets"}};
            out.push_back(std::move(t));
        }
        return {};
    });
    if (!r) {
        const FileError& e = r.error();
        return Err{e.line > 0 ? "line " + std::to_string(e.line) + ": " + e.message : e.message};
    }
    if (out.empty()) return Err{std::string("no targets")};
    return out;
}

}  // namespace pbx::auth
