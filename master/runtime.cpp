#include "master/runtime.hpp"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/log.hpp"
#include "common/unique_fd.hpp"

namespace pbx::master {
namespace {

struct ChannelDir {
    const char* dir;
    const char* owner;  // user name; "root" for root
};

// One directory per channel; the server binds its socket inside. Mirrors the
// peers table in common/ipc (who may connect is checked there by SO_PEERCRED).
constexpr ChannelDir kChannelDirs[] = {
    {"control", "root"}, {"queue", "pbx-queue"},   {"auth", "pbx-auth"},
    {"local", "root"},   {"remote", "pbx-remote"}, {"session", "root"},
};

Status ensure_dir(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
    if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return fail_errno("mkdir " + path);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return fail_errno("stat " + path);
    if (!S_ISDIR(st.st_mode)) return fail(path + " exists and is not a directory");
    if (chown(path.c_str(), uid, gid) != 0) return fail_errno("chown " + path);
    if (chmod(path.c_str(), mode) != 0) return fail_errno("chmod " + path);
    return {};
}

}  // namespace

Status check_traversable(const std::string& path) {
    if (path.empty() || path.front() != '/') return fail("'" + path + "' is not an absolute path");
    std::string prefix;
    size_t pos = 0;
    while (pos < path.size()) {
        size_t next = path.find('/', pos + 1);
        if (next == std::string::npos) next = path.size();
        prefix = path.substr(0, next);
        pos = next;
        // The directory itself is its owner's business (the spool is 0710);
        // only the way to it must be open.
        if (prefix.empty() || next == path.size()) continue;
        struct stat st;
        if (stat(prefix.c_str(), &st) != 0) {
            if (errno == ENOENT) return {};  // created later, by us, with the right mode
            return fail_errno("stat " + prefix);
        }
        if (S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH))
            return fail(prefix + " (on the way to " + path +
                        ") cannot be traversed by other users (mode " +
                        std::to_string(st.st_mode & 07777) +
                        "); the unprivileged programs could not reach it. Choose a "
                        "directory outside it, or chmod o+x it");
    }
    return {};
}

Status prepare_runtime_dir(const config::Config& cfg) {
    std::string root = cfg.str("runtime_dir");
    if (auto s = check_traversable(root); !s) return s;
    if (root.size() > 80)
        return fail("runtime_dir '" + root +
                    "' is too long for Unix socket paths (80 bytes at most)");
    if (auto s = ensure_dir(root, 0, 0, 0755); !s) return s;
    for (const auto& ch : kChannelDirs) {
        uid_t uid = 0;
        gid_t gid = 0;
        if (std::strcmp(ch.owner, "root") != 0) {
            struct passwd* pw = getpwnam(ch.owner);
            if (!pw)
                return fail(std::string("system user '") + ch.owner +
                            "' does not exist (packaging/create-users.sh creates it)");
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        }
        if (auto s = ensure_dir(root + "/" + ch.dir, uid, gid, 0755); !s) return s;
    }
    return {};
}

void sd_notify(std::string_view state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t len = std::strlen(path);
    if (len >= sizeof addr.sun_path) return;
    std::memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd) return;
    socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    if (sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
               reinterpret_cast<sockaddr*>(&addr), alen) < 0)
        log::warn("sd_notify: ", std::strerror(errno));
}

}  // namespace pbx::master
