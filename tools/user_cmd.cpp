// pillarbox user: add, change and remove virtual users, and list them.
//
// SECURITY: reads and rewrites the users file, so in practice root runs it
// (the file is root:pbx-auth 0640). The new file is written next to the old
// one with the old owner, group and mode, fsynced and renamed over it (authd
// sees the old file or the new one, never a mixture), under an flock on
// "<file>.lock" so that two runs cannot lose each other's change. Passwords
// are read from the terminal without echo (or one line from stdin with
// --stdin), hashed with libcrypt (crypt_gensalt: yescrypt by default) and
// scrubbed from memory; neither passwords nor hashes are ever printed.
#include "tools/user_cmd.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

#include "common/auth/password.hpp"
#include "common/auth/textfile.hpp"
#include "common/auth/users.hpp"
#include "common/auth/users_edit.hpp"
#include "common/config/config.hpp"
#include "common/unique_fd.hpp"

namespace pbx::tools {
namespace {

constexpr const char* kUserUsage =
    "usage: pillarbox user add NAME [--uid N] [--gid N] [--home DIR] [--mailbox PATH]\n"
    "                               [--scheme yescrypt|sha512|bcrypt] [--stdin] [--no-create]\n"
    "       pillarbox user passwd NAME [--scheme ...] [--stdin]\n"
    "       pillarbox user del NAME\n"
    "       pillarbox user list [--json]\n";

constexpr size_t kMaxPassword = 1024;

int usage() {
    std::fputs(kUserUsage, stderr);
    return 2;
}

int error(const std::string& what) {
    std::fprintf(stderr, "pillarbox user: %s\n", what.c_str());
    return 1;
}

void scrub(std::string& s) {
    for (char& c : s) *static_cast<volatile char*>(&c) = 0;
    s.clear();
}

std::optional<std::string_view> scheme_prefix(std::string_view scheme) {
    if (scheme == "yescrypt") return "$y$";
    if (scheme == "sha512") return "$6$";
    if (scheme == "bcrypt") return "$2b$";
    return std::nullopt;
}

// One line from fd, without its newline; nullopt at EOF before any byte or
// when it is too long.
std::optional<std::string> read_line(int fd) {
    std::string line;
    char c;
    for (;;) {
        ssize_t n = ::read(fd, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (line.empty()) return std::nullopt;
            break;
        }
        if (c == '\n') break;
        if (line.size() >= kMaxPassword) {
            scrub(line);
            return std::nullopt;
        }
        line += c;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

// The new password: one line of stdin, or twice from the terminal.
Result<std::string> read_password(bool from_stdin) {
    if (from_stdin) {
        auto p = read_line(STDIN_FILENO);
        if (!p || p->empty()) return fail("no password on standard input");
        return std::move(*p);
    }
    UniqueFd tty(::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
    if (!tty) return fail("no terminal to read the password from (use --stdin)");
    termios old{};
    if (tcgetattr(tty.get(), &old) != 0) return fail_errno("tcgetattr");
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    std::string first;
    for (int round = 0; round < 2; ++round) {
        const char* prompt = round == 0 ? "New password: " : "Again: ";
        (void)!::write(tty.get(), prompt, std::strlen(prompt));
        if (tcsetattr(tty.get(), TCSAFLUSH, &quiet) != 0) return fail_errno("tcsetattr");
        auto p = read_line(tty.get());
        tcsetattr(tty.get(), TCSAFLUSH, &old);
        if (!p || p->empty()) {
            scrub(first);
            return fail("no password given");
        }
        if (round == 0) {
            first = std::move(*p);
        } else {
            bool same = *p == first;
            scrub(*p);
            if (!same) {
                scrub(first);
                return fail("the passwords differ");
            }
        }
    }
    return first;
}

struct Editor {
    std::string path;
    UniqueFd lock;
    std::string text;
    struct stat st {};
    bool exists = false;

    Status open() {
        lock.reset(::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        if (!lock) return fail_errno("open " + path + ".lock");
        if (::flock(lock.get(), LOCK_EX) != 0) return fail_errno("flock " + path + ".lock");
        auto r = auth::read_text_file(path, UsersLimits().max_file);
        if (!r) {
            if (r.error().sys_errno != ENOENT) return Err{r.error()};
            return {};
        }
        text = std::move(r->text);
        exists = ::stat(path.c_str(), &st) == 0;
        return {};
    }

    // The new text, with the old owner, group and mode, atomically.
    Status write(std::string_view data) {
        uid_t uid = exists ? st.st_uid : 0;
        gid_t gid = exists ? st.st_gid : 0;
        mode_t mode = exists ? (st.st_mode & 07777) : 0640;
        if (!exists) {
            if (const group* g = ::getgrnam("pbx-auth")) gid = g->gr_gid;
        }
        const std::string tmp = path + ".tmp." + std::to_string(::getpid());
        UniqueFd fd(
            ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd) return fail_errno("create " + tmp);
        auto undo = [&](Error e) {
            ::unlink(tmp.c_str());
            return Err{std::move(e)};
        };
        if (::geteuid() == 0 && ::fchown(fd.get(), uid, gid) != 0)
            return undo(Error{"fchown " + tmp + ": " + std::strerror(errno), errno});
        if (::fchmod(fd.get(), mode) != 0)
            return undo(Error{"fchmod " + tmp + ": " + std::strerror(errno), errno});
        size_t off = 0;
        while (off < data.size()) {
            ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return undo(Error{"write " + tmp + ": " + std::strerror(errno), errno});
            off += static_cast<size_t>(n);
        }
        if (::fsync(fd.get()) != 0)
            return undo(Error{"fsync " + tmp + ": " + std::strerror(errno), errno});
        fd.reset();
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            return undo(Error{"rename " + tmp + ": " + std::strerror(errno), errno});
        std::string dir =
            path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
        UniqueFd d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!d || ::fsync(d.get()) != 0) return fail_errno("fsync " + dir);
        return {};
    }
    using UsersLimits = auth::UsersLimits;
};

std::optional<uint32_t> number(std::string_view s) {
    uint32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v == 0) return std::nullopt;
    return v;
}

// mkdir -p for home and the Maildir, owned by the user (root only).
Status make_maildir(const auth::VirtualUser& u) {
    if (u.format != auth::MailboxFormat::Maildir) return {};
    std::vector<std::string> dirs = {u.home, u.mailbox, u.mailbox + "cur", u.mailbox + "new",
                                     u.mailbox + "tmp"};
    for (const std::string& d : dirs) {
        std::string p = d;
        while (p.size() > 1 && p.back() == '/') p.pop_back();
        if (::mkdir(p.c_str(), 0700) == 0) {
            if (::chown(p.c_str(), u.uid, u.gid) != 0) return fail_errno("chown " + p);
        } else if (errno != EEXIST) {
            return fail_errno("mkdir " + p);
        }
    }
    return {};
}

int add(const std::string& users_path, const std::vector<std::string_view>& args) {
    if (args.empty() || args[0].starts_with("-")) return usage();
    auth::VirtualUser u;
    u.name = std::string(args[0]);
    if (!auth::valid_user_name(u.name))
        return error("bad user name '" + u.name +
                     "' (lower-case letters, digits, '.', '_', '-'; 1 to 64)");
    std::string mailbox_field, scheme = "yescrypt";
    bool from_stdin = false, create = true;
    std::optional<uint32_t> uid, gid;
    for (size_t i = 1; i < args.size(); ++i) {
        std::string_view a = args[i];
        auto value = [&]() -> std::optional<std::string_view> {
            if (i + 1 >= args.size()) return std::nullopt;
            return args[++i];
        };
        if (a == "--stdin") {
            from_stdin = true;
        } else if (a == "--no-create") {
            create = false;
        } else if (a == "--uid" || a == "--gid" || a == "--home" || a == "--mailbox" ||
                   a == "--scheme") {
            auto v = value();
            if (!v) return usage();
            if (a == "--uid" && !(uid = number(*v)))
                return error("bad uid '" + std::string(*v) + "'");
            if (a == "--gid" && !(gid = number(*v)))
                return error("bad gid '" + std::string(*v) + "'");
            if (a == "--home") u.home = std::string(*v);
            if (a == "--mailbox") mailbox_field = std::string(*v);
            if (a == "--scheme") scheme = std::string(*v);
        } else {
            return usage();
        }
    }
    auto prefix = scheme_prefix(scheme);
    if (!prefix) return error("unknown scheme '" + scheme + "' (yescrypt, sha512, bcrypt)");
    if (!uid || !gid) {
        const passwd* pw = ::getpwnam("pbx-vmail");
        if (!pw) return error("no --uid/--gid given and no user pbx-vmail");
        if (!uid) uid = pw->pw_uid;
        if (!gid) gid = pw->pw_gid;
    }
    u.uid = *uid;
    u.gid = *gid;
    if (u.home.empty()) u.home = "/var/vmail/" + u.name;
    Editor ed{users_path};
    if (auto s = ed.open(); !s) return error(s.error().message);
    if (auto t = auth::UserTable::parse(ed.text, users_path); t && t->find(u.name))
        return error("user '" + u.name + "' exists already");
    auto password = read_password(from_stdin);
    if (!password) return error(password.error().message);
    auto hash = auth::crypt_hash(*password, *prefix);
    scrub(*password);
    if (!hash) return error("cannot hash the password: " + hash.error().message);
    u.password_hash = *hash;
    auto text = auth::users_add(ed.text, u, mailbox_field);
    if (!text) return error(text.error().message);
    // Where mail will go, as the parser resolved it.
    auto parsed = auth::UserTable::parse(*text, users_path);
    const auth::VirtualUser* added = parsed ? parsed->find(u.name) : nullptr;
    if (create && added && ::geteuid() == 0) {
        if (auto s = make_maildir(*added); !s) return error(s.error().message);
    }
    if (auto s = ed.write(*text); !s) return error(s.error().message);
    std::printf("user %s added (%s)\n", u.name.c_str(), added ? added->mailbox.c_str() : "");
    return 0;
}

int passwd(const std::string& users_path, const std::vector<std::string_view>& args) {
    if (args.empty() || args[0].starts_with("-")) return usage();
    std::string name(args[0]);
    std::string scheme = "yescrypt";
    bool from_stdin = false;
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--stdin") {
            from_stdin = true;
        } else if (args[i] == "--scheme" && i + 1 < args.size()) {
            scheme = std::string(args[++i]);
        } else {
            return usage();
        }
    }
    auto prefix = scheme_prefix(scheme);
    if (!prefix) return error("unknown scheme '" + scheme + "' (yescrypt, sha512, bcrypt)");
    Editor ed{users_path};
    if (auto s = ed.open(); !s) return error(s.error().message);
    auto table = auth::UserTable::parse(ed.text, users_path);
    if (!table) return error(table.error().to_string());
    if (!table->find(name)) return error("no user '" + name + "'");
    auto password = read_password(from_stdin);
    if (!password) return error(password.error().message);
    auto hash = auth::crypt_hash(*password, *prefix);
    scrub(*password);
    if (!hash) return error("cannot hash the password: " + hash.error().message);
    auto text = auth::users_set_hash(ed.text, auth::ascii_lower(name), *hash);
    if (!text) return error(text.error().message);
    if (auto s = ed.write(*text); !s) return error(s.error().message);
    std::printf("password of %s changed\n", name.c_str());
    return 0;
}

int del(const std::string& users_path, const std::vector<std::string_view>& args) {
    if (args.size() != 1) return usage();
    Editor ed{users_path};
    if (auto s = ed.open(); !s) return error(s.error().message);
    auto text = auth::users_remove(ed.text, auth::ascii_lower(args[0]));
    if (!text) return error(text.error().message);
    if (auto s = ed.write(*text); !s) return error(s.error().message);
    std::printf("user %.*s removed (the mailbox is kept)\n", static_cast<int>(args[0].size()),
                args[0].data());
    return 0;
}

int list(const std::string& users_path, const std::vector<std::string_view>& args) {
    bool json = args.size() == 1 && args[0] == "--json";
    if (!args.empty() && !json) return usage();
    auto r = auth::read_text_file(users_path, auth::UsersLimits().max_file);
    std::string text;
    if (r) {
        text = std::move(r->text);
    } else if (r.error().sys_errno != ENOENT) {
        return error(r.error().message);
    }
    auto table = auth::UserTable::parse(text, users_path);
    if (!table) return error(table.error().to_string());
    if (json) {
        std::fputs(auth::users_json(*table).c_str(), stdout);
        return 0;
    }
    for (const auto& [name, u] : table->all())
        std::printf("%-20s %6u %6u %s%s\n", u.name.c_str(), static_cast<unsigned>(u.uid),
                    static_cast<unsigned>(u.gid), u.mailbox.c_str(),
                    u.login_disabled() ? " (login disabled)" : "");
    return 0;
}

}  // namespace

int user_command(const std::string& config_path, const std::vector<std::string_view>& args) {
    if (args.empty()) return usage();
    auto cfg = config::Config::load(config_path);
    if (!cfg) return error(cfg.error().to_string());
    const std::string users_path = cfg->str("users_file");
    std::vector<std::string_view> rest(args.begin() + 1, args.end());
    if (args[0] == "add") return add(users_path, rest);
    if (args[0] == "passwd") return passwd(users_path, rest);
    if (args[0] == "del") return del(users_path, rest);
    if (args[0] == "list") return list(users_path, rest);
    return usage();
}

}  // namespace pbx::tools
