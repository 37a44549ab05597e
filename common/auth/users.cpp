#include "common/auth/users.hpp"

#include <charconv>
#include <limits>
#include <vector>

namespace pbx::auth {
namespace {

constexpr size_t kFields = 6;

bool is_blank(std::string_view line) {
    return line.find_first_not_of(" \t") == std::string_view::npos;
}

bool is_comment(std::string_view line) {
    size_t i = line.find_first_not_of(" \t");
    return i != std::string_view::npos && line[i] == '#';
}

// 1..2^32-2: (uid_t)-1 means "unchanged" to setresuid(), and 0 is root.
Result<uint32_t, std::string> parse_id(std::string_view s, std::string_view what) {
    if (s.empty()) return Err{std::string(what) + " is empty"};
    for (char c : s)
        if (c < '0' || c > '9')
            return Err{std::string(what) + " '" + std::string(s) + "' is not a decimal number"};
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v >= std::numeric_limits<uint32_t>::max())
        return Err{std::string(what) + " '" + std::string(s) + "' is out of range"};
    if (v == 0) return Err{std::string(what) + " 0 (root) is refused"};
    return static_cast<uint32_t>(v);
}

// A path component "." or ".." hides where mail really goes.
bool has_dot_component(std::string_view path) {
    size_t pos = 0;
    while (pos <= path.size()) {
        size_t slash = path.find('/', pos);
        if (slash == std::string_view::npos) slash = path.size();
        std::string_view part = path.substr(pos, slash - pos);
        if (part == "." || part == "..") return true;
        pos = slash + 1;
    }
    return false;
}

Result<Unit, std::string> check_path(std::string_view path, std::string_view what) {
    if (has_dot_component(path))
        return Err{std::string(what) + " '" + std::string(path) + "' has a '.' or '..' component"};
    if (path.find("//") != std::string_view::npos)
        return Err{std::string(what) + " '" + std::string(path) + "' has an empty component"};
    return Unit{};
}

bool valid_hash_char(char c) {
    return c > ' ' && c < 0x7f && c != ':';
}

}  // namespace

std::string_view to_string(MailboxFormat f) {
    return f == MailboxFormat::Maildir ? "maildir" : "mbox";
}

bool VirtualUser::login_disabled() const {
    return password_hash.empty() || password_hash[0] == '*' || password_hash[0] == '!';
}

bool valid_user_name(std::string_view name, size_t max_name) {
    if (name.empty() || name.size() > max_name) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
    }
    return true;
}

Result<UserTable, FileError> UserTable::parse(std::string_view text, std::string_view file_name,
                                              const UsersLimits& limits) {
    UserTable table;
    auto error = [&](int line, std::string message) {
        return Err{FileError{std::string(file_name), line, std::move(message)}};
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

        std::vector<std::string_view> f;
        size_t pos = 0;
        for (;;) {
            size_t colon = line.find(':', pos);
            f.push_back(
                line.substr(pos, colon == std::string_view::npos ? line.npos : colon - pos));
            if (colon == std::string_view::npos) break;
            pos = colon + 1;
        }
        if (f.size() != kFields)
            return error(n, "expected 6 fields name:hash:uid:gid:home:mailbox, found " +
                                std::to_string(f.size()));
        for (std::string_view field : f)
            if (field.find_first_of(" \t") != std::string_view::npos)
                return error(n, "white space in a field");

        VirtualUser u;
        u.line = n;
        std::string_view name = f[0];
        if (name.empty()) return error(n, "empty user name");
        if (name.size() > limits.max_name)
            return error(n, "user name longer than " + std::to_string(limits.max_name) + " bytes");
        if (!valid_user_name(name, limits.max_name)) {
            if (valid_user_name(ascii_lower(name), limits.max_name))
                return error(n, "user name '" + std::string(name) + "' must be lower case");
            return error(n, "bad user name '" + std::string(name) +
                                "' (letters a-z, digits, '.', '_', '-'; starting with a letter "
                                "or digit)");
        }
        u.name = std::string(name);
        if (table.users_.count(u.name))
            return error(n, "duplicate user '" + u.name + "' (first on line " +
                                std::to_string(table.users_.find(u.name)->second.line) + ")");

        if (f[1].empty())
            return error(n, "empty password hash (write '*' for an account without login)");
        for (char c : f[1])
            if (!valid_hash_char(c)) return error(n, "bad character in the password hash");
        u.password_hash = std::string(f[1]);

        auto uid = parse_id(f[2], "uid");
        if (!uid) return error(n, uid.error());
        auto gid = parse_id(f[3], "gid");
        if (!gid) return error(n, gid.error());
        u.uid = *uid;
        u.gid = *gid;

        std::string_view home = f[4];
        if (home.empty() || home[0] != '/')
            return error(n, "home '" + std::string(home) + "' is not an absolute path");
        if (auto c = check_path(home, "home"); !c) return error(n, c.error());
        u.home = std::string(home);
        if (u.home.size() > 1 && u.home.back() == '/') u.home.pop_back();

        std::string_view box = f[5];
        if (auto c = check_path(box, "mailbox"); !c) return error(n, c.error());
        if (box.empty()) {
            u.mailbox = u.home + "/Maildir/";
        } else if (box[0] == '/') {
            u.mailbox = std::string(box);
        } else {
            u.mailbox = (u.home == "/" ? "" : u.home) + "/" + std::string(box);
        }
        if (u.mailbox == "/") return error(n, "mailbox '/' is not a mailbox");
        u.format = u.mailbox.back() == '/' ? MailboxFormat::Maildir : MailboxFormat::Mbox;

        if (table.users_.size() >= limits.max_entries)
            return error(n, "more than " + std::to_string(limits.max_entries) + " users");
        std::string key = u.name;
        table.users_.emplace(std::move(key), std::move(u));
        return {};
    });
    if (!r) return Err{std::move(r.error())};
    return table;
}

const VirtualUser* UserTable::find(std::string_view name) const {
    auto it = users_.find(ascii_lower(name));
    return it == users_.end() ? nullptr : &it->second;
}

}  // namespace pbx::auth
