#include "common/auth/users_edit.hpp"

#include <cstdio>
#include <vector>

namespace pbx::auth {
namespace {

Result<std::string> checked(std::string text) {
    auto t = UserTable::parse(text, "users file");
    if (!t) return fail(t.error().to_string());
    return text;
}

// The lines of the text, each with its '\n' (the last may lack it).
std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
        out.push_back(text.substr(pos, end - pos));
        pos = end;
    }
    return out;
}

// The user name of a line, "" for comments and blank lines.
std::string_view name_of(std::string_view line) {
    size_t i = line.find_first_not_of(" \t");
    if (i == std::string_view::npos || line[i] == '#' || line[i] == '\n') return {};
    return line.substr(0, line.find(':'));
}

std::string json_escape(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

}  // namespace

std::string user_line(const VirtualUser& u, std::string_view mailbox_field) {
    return u.name + ":" + u.password_hash + ":" + std::to_string(u.uid) + ":" +
           std::to_string(u.gid) + ":" + u.home + ":" + std::string(mailbox_field) + "\n";
}

Result<std::string> users_add(std::string_view text, const VirtualUser& u,
                              std::string_view mailbox_field) {
    auto table = UserTable::parse(text, "users file");
    if (!table) return fail(table.error().to_string());
    if (table->find(u.name)) return fail("user '" + u.name + "' exists already");
    std::string out(text);
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += user_line(u, mailbox_field);
    return checked(std::move(out));
}

Result<std::string> users_set_hash(std::string_view text, std::string_view name,
                                   std::string_view hash) {
    std::string out;
    bool found = false;
    for (std::string_view line : lines_of(text)) {
        if (!found && name_of(line) == name) {
            size_t c1 = line.find(':');
            size_t c2 = line.find(':', c1 + 1);
            if (c2 == std::string_view::npos)
                return fail("user '" + std::string(name) + "': bad line");
            out.append(line.substr(0, c1 + 1));
            out.append(hash);
            out.append(line.substr(c2));
            found = true;
            continue;
        }
        out.append(line);
    }
    if (!found) return fail("no user '" + std::string(name) + "'");
    return checked(std::move(out));
}

Result<std::string> users_remove(std::string_view text, std::string_view name) {
    std::string out;
    bool found = false;
    for (std::string_view line : lines_of(text)) {
        if (!found && name_of(line) == name) {
            found = true;
            continue;
        }
        out.append(line);
    }
    if (!found) return fail("no user '" + std::string(name) + "'");
    return checked(std::move(out));
}

std::string users_json(const UserTable& table) {
    std::string out = "[";
    bool first = true;
    for (const auto& [name, u] : table.all()) {
        if (!first) out += ",";
        first = false;
        out += "{\"name\":" + json_escape(u.name) + ",\"uid\":" + std::to_string(u.uid) +
               ",\"gid\":" + std::to_string(u.gid) + ",\"home\":" + json_escape(u.home) +
               ",\"mailbox\":" + json_escape(u.mailbox) + ",\"format\":\"" +
               std::string(to_string(u.format)) +
               "\",\"login\":" + (u.login_disabled() ? "false" : "true") + "}";
    }
    return out + "]\n";
}

}  // namespace pbx::auth
