#include "common/spool/layout.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>

#include "common/spool/atomic_write.hpp"

namespace pbx::spool {
namespace {

// How many NAME.N alternatives move_to_corrupt tries before giving up.
constexpr int kCorruptNameAttempts = 1000;

std::string join(const std::string& dir, std::string_view name) {
    std::string out = dir;
    if (out.empty() || out.back() != '/') out += '/';
    out += name;
    return out;
}

struct Entry {
    std::string name;
    bool regular;
};

Result<std::vector<Entry>> list_entries(const std::string& dir) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return fail_errno("opendir " + dir);
    std::vector<Entry> out;
    for (;;) {
        errno = 0;
        struct dirent* e = ::readdir(d.get());
        if (!e) {
            if (errno != 0) return fail_errno("readdir " + dir);
            break;
        }
        std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        bool regular = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st {};
            regular = ::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                      S_ISREG(st.st_mode);
        }
        out.push_back(Entry{std::string(name), regular});
    }
    return out;
}

// "queue/NAME": no empty, "." or ".." component, not absolute.
bool safe_relative(std::string_view path) {
    if (path.empty() || path.front() == '/') return false;
    while (!path.empty()) {
        size_t slash = path.find('/');
        std::string_view part = path.substr(0, slash);
        if (part.empty() || part == "." || part == "..") return false;
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
        if (path.empty()) return false;
    }
    return true;
}

bool is_temp_name(std::string_view name) {
    return name.find(kTempMarker) != std::string_view::npos;
}

// "ID.msg" → ID and suffix; false if the name has any other form.
bool split_queue_name(std::string_view name, std::string_view* id, std::string_view* suffix) {
    if (name.size() != QueueId::kLength + kMessageSuffix.size()) return false;
    *id = name.substr(0, QueueId::kLength);
    *suffix = name.substr(QueueId::kLength);
    return QueueId::validate(*id) && (*suffix == kMessageSuffix || *suffix == kEnvelopeSuffix);
}

Status ensure_dir(sys::Sys& s, const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
    auto m = s.mkdir(path, mode & 0777);
    if (!m.ok() && m.error() != EEXIST) return fail_errno("mkdir " + path, m.error());
    auto o = sys::retry_eintr(
        [&] { return s.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0); });
    if (!o.ok()) {
        if (o.error() == ENOTDIR || o.error() == ELOOP) {
            return fail("not a directory (or a symlink): " + path);
        }
        return fail_errno("open " + path, o.error());
    }
    int fd = static_cast<int>(o.value());
    struct Closer {
        sys::Sys& s;
        int fd;
        ~Closer() { (void)s.close(fd); }
    } closer{s, fd};
    struct stat st {};
    if (auto r = s.fstat(fd, &st); !r.ok()) return fail_errno("fstat " + path, r.error());
    if (!S_ISDIR(st.st_mode)) return fail("not a directory: " + path);
    if (st.st_uid != uid || st.st_gid != gid) {
        if (auto r = s.fchown(fd, uid, gid); !r.ok()) return fail_errno("chown " + path, r.error());
    }
    // After chown: chown may clear the set-id bits.
    if ((st.st_mode & 07777) != mode || st.st_uid != uid || st.st_gid != gid) {
        if (auto r = s.fchmod(fd, mode); !r.ok()) return fail_errno("chmod " + path, r.error());
    }
    return {};
}

}  // namespace

SpoolPaths::SpoolPaths(std::string spool_dir)
    : root(std::move(spool_dir)),
      incoming(join(root, "incoming")),
      queue(join(root, "queue")),
      hold(join(root, "hold")),
      corrupt(join(root, "corrupt")),
      maildrop(join(root, "maildrop")) {}

std::string SpoolPaths::incoming_file(const QueueId& id) const {
    return join(incoming, id.str());
}
std::string SpoolPaths::message_file(const QueueId& id) const {
    return join(queue, id.str() + std::string(kMessageSuffix));
}
std::string SpoolPaths::envelope_file(const QueueId& id) const {
    return join(queue, id.str() + std::string(kEnvelopeSuffix));
}
std::string SpoolPaths::held_envelope_file(const QueueId& id) const {
    return join(hold, id.str() + std::string(kEnvelopeSuffix));
}
std::string SpoolPaths::maildrop_file(const QueueId& id) const {
    return join(maildrop, id.str());
}

Status ensure_layout(const SpoolPaths& paths, const SpoolOwner& owner, sys::Sys& s) {
    if (auto r = ensure_dir(s, paths.root, owner.uid, owner.drop_gid, kSpoolDirMode); !r.ok()) {
        return r;
    }
    for (const std::string* dir : {&paths.incoming, &paths.queue, &paths.hold, &paths.corrupt}) {
        if (auto r = ensure_dir(s, *dir, owner.uid, owner.gid, kPrivateDirMode); !r.ok()) return r;
    }
    if (auto r = ensure_dir(s, paths.maildrop, owner.uid, owner.drop_gid, kMaildropDirMode);
        !r.ok()) {
        return r;
    }
    return fsync_dir(paths.root, s);
}

Result<QueueScan> scan_queue(const SpoolPaths& paths) {
    QueueScan scan;
    // id → {has .msg, has queue .env, has hold .env}
    struct Have {
        bool msg = false, env = false, held = false;
    };
    std::map<std::string, Have> ids;

    auto walk = [&](const std::string& dir, std::string_view rel, bool is_hold) -> Status {
        auto entries = list_entries(dir);
        if (!entries.ok()) return Err{entries.error()};
        for (const Entry& e : *entries) {
            std::string relpath = std::string(rel) + "/" + e.name;
            std::string_view id, suffix;
            if (!e.regular) {
                scan.invalid.push_back(relpath);
            } else if (split_queue_name(e.name, &id, &suffix) &&
                       !(is_hold && suffix == kMessageSuffix)) {
                Have& h = ids[std::string(id)];
                if (is_hold) {
                    h.held = true;
                } else if (suffix == kMessageSuffix) {
                    h.msg = true;
                } else {
                    h.env = true;
                }
            } else if (is_temp_name(e.name)) {
                scan.temp_files.push_back(relpath);
            } else {
                scan.invalid.push_back(relpath);
            }
        }
        return {};
    };
    if (auto r = walk(paths.queue, "queue", false); !r.ok()) return Err{r.error()};
    if (auto r = walk(paths.hold, "hold", true); !r.ok()) return Err{r.error()};

    for (const auto& [text, h] : ids) {
        auto id = QueueId::parse(text);
        if (!id.ok()) continue;  // unreachable: names were validated
        std::string msg = "queue/" + text + std::string(kMessageSuffix);
        std::string env = "queue/" + text + std::string(kEnvelopeSuffix);
        std::string held = "hold/" + text + std::string(kEnvelopeSuffix);
        if (h.msg && h.env) {
            scan.active.push_back(*id);
            if (h.held) scan.orphans.push_back(held);
        } else if (h.msg && h.held) {
            scan.held.push_back(*id);
        } else {
            if (h.msg) scan.orphans.push_back(msg);
            if (h.env) scan.orphans.push_back(env);
            if (h.held) scan.orphans.push_back(held);
        }
    }
    std::sort(scan.orphans.begin(), scan.orphans.end());
    std::sort(scan.temp_files.begin(), scan.temp_files.end());
    std::sort(scan.invalid.begin(), scan.invalid.end());
    return scan;
}

Result<DirScan> scan_flat_dir(const std::string& dir) {
    auto entries = list_entries(dir);
    if (!entries.ok()) return Err{entries.error()};
    DirScan scan;
    for (const Entry& e : *entries) {
        if (e.regular && QueueId::validate(e.name)) {
            scan.ids.push_back(*QueueId::parse(e.name));
        } else if (e.regular && is_temp_name(e.name)) {
            scan.temp_files.push_back(e.name);
        } else {
            scan.invalid.push_back(e.name);
        }
    }
    std::sort(scan.ids.begin(), scan.ids.end());
    std::sort(scan.temp_files.begin(), scan.temp_files.end());
    std::sort(scan.invalid.begin(), scan.invalid.end());
    return scan;
}

Result<std::string> move_to_corrupt(const SpoolPaths& paths, const std::string& rel_path,
                                    sys::Sys& s) {
    if (!safe_relative(rel_path)) {
        return fail("refusing to move " + rel_path + ": not a plain spool-relative path");
    }
    std::string from = join(paths.root, rel_path);
    std::string base = base_name(rel_path);
    for (int n = 0; n < kCorruptNameAttempts; ++n) {
        std::string name = n == 0 ? base : base + "." + std::to_string(n);
        std::string to = join(paths.corrupt, name);
        // corrupt/ never loses anything: an earlier file of the same name is
        // kept and this one gets a suffix. lstat-then-rename is not atomic,
        // but the queue-manager is the only writer of corrupt/.
        struct stat st {};
        auto l = s.lstat(to, &st);
        if (l.ok()) continue;
        if (l.error() != ENOENT) return fail_errno("lstat " + to, l.error());
        if (auto r = s.rename(from, to); !r.ok()) {
            return fail_errno("rename " + from + " to " + to, r.error());
        }
        if (auto d = fsync_dir(paths.corrupt, s); !d.ok()) return Err{d.error()};
        if (auto d = fsync_dir(dir_name(from), s); !d.ok()) return Err{d.error()};
        return "corrupt/" + name;
    }
    return fail("no free name in corrupt/ for " + base);
}

}  // namespace pbx::spool
