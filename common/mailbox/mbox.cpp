#include "common/mailbox/mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace pbx::mailbox {

std::string mbox_from_line(std::string_view sender, std::time_t when) {
    std::tm tm{};
    gmtime_r(&when, &tm);
    char buf[64];
    // asctime format without its newline: "Wed Nov 25 23:51:57 2026".
    size_t n = std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
    std::string out = "From ";
    out.append(sender.empty() ? std::string_view("MAILER-DAEMON") : sender);
    out += ' ';
    out.append(buf, n);
    out += '\n';
    return out;
}

std::string mboxrd_quote(std::string_view message) {
    std::string out;
    out.reserve(message.size() + message.size() / 64 + 2);
    size_t pos = 0;
    while (pos < message.size()) {
        size_t nl = message.find('\n', pos);
        bool has_nl = nl != std::string_view::npos;
        std::string_view line = message.substr(pos, has_nl ? nl - pos : message.size() - pos);
        pos = has_nl ? nl + 1 : message.size();
        if (has_nl && !line.empty() && line.back() == '\r') line.remove_suffix(1);
        size_t q = 0;
        while (q < line.size() && line[q] == '>') ++q;
        if (line.substr(q).starts_with("From ")) out += '>';
        out.append(line);
        out += '\n';
    }
    out += '\n';  // the blank line that ends a message in an mbox
    return out;
}

std::string mbox_format(std::string_view message, std::string_view sender, std::time_t when) {
    return mbox_from_line(sender, when) + mboxrd_quote(message);
}

namespace {

using Clock = std::chrono::steady_clock;

// The dotlock, removed by the destructor when we made it.
class DotLock {
  public:
    DotLock(sys::Sys& s) : s_(s) {}
    ~DotLock() {
        if (!path_.empty()) (void)s_.unlink(path_);
    }
    DotLock(const DotLock&) = delete;
    DotLock& operator=(const DotLock&) = delete;

    Status acquire(const std::string& lock, const MboxOptions& o) {
        auto deadline = Clock::now() + o.lock_timeout;
        for (;;) {
            auto r = s_.open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (r.ok()) {
                (void)s_.close(static_cast<int>(*r));
                path_ = lock;
                return {};
            }
            // The directory is not ours to write (2775 root:mail): fcntl only.
            if (r.error() == EACCES || r.error() == EPERM || r.error() == EROFS) return {};
            if (r.error() != EEXIST) return fail_errno("create " + lock, r.error());
            struct stat st {};
            if (s_.lstat(lock, &st).ok() &&
                std::time(nullptr) - st.st_mtime > o.stale_dotlock.count()) {
                (void)s_.unlink(lock);  // a crashed writer's lock
                continue;
            }
            if (Clock::now() >= deadline)
                return Err{Error{"timed out waiting for " + lock, kLockTimeoutErrno}};
            std::this_thread::sleep_for(o.lock_poll);
        }
    }

  private:
    sys::Sys& s_;
    std::string path_;
};

class Fd {
  public:
    Fd(sys::Sys& s, int fd) : s_(s), fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) (void)s_.close(fd_);  // also releases the fcntl lock
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    sys::Sys& s_;
    int fd_;
};

Status fcntl_lock(int fd, const MboxOptions& o, const std::string& path) {
    auto deadline = Clock::now() + o.lock_timeout;
    for (;;) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_SETLK, &fl) == 0) return {};
        if (errno != EACCES && errno != EAGAIN && errno != EINTR) return fail_errno("lock " + path);
        if (Clock::now() >= deadline)
            return Err{Error{"timed out waiting for the lock of " + path, kLockTimeoutErrno}};
        std::this_thread::sleep_for(o.lock_poll);
    }
}

}  // namespace

Status mbox_append(const std::string& path, std::string_view from_line, std::string_view body,
                   const MboxOptions& options, sys::Sys& s) {
    DotLock dot(s);
    if (auto st = dot.acquire(path + ".lock", options); !st) return st;

    auto r = sys::retry_eintr([&] {
        return s.open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                      0600);
    });
    if (!r.ok()) return fail_errno("open " + path, r.error());
    Fd fd(s, static_cast<int>(*r));
    struct stat st {};
    if (auto f = s.fstat(fd.get(), &st); !f.ok()) return fail_errno("fstat " + path, f.error());
    if (!S_ISREG(st.st_mode)) return fail(path + " is not a regular file");
    if (st.st_nlink != 1) return fail(path + " has " + std::to_string(st.st_nlink) + " links");
    if (st.st_uid != geteuid())
        return fail(path + " belongs to uid " + std::to_string(st.st_uid) +
                    ", not to the recipient");

    if (auto l = fcntl_lock(fd.get(), options, path); !l) return l;
    // The length after locking: another writer may have appended meanwhile.
    if (auto f = s.fstat(fd.get(), &st); !f.ok()) return fail_errno("fstat " + path, f.error());
    off_t old_size = st.st_size;

    auto rollback = [&](Error e) -> Status {
        if (ftruncate(fd.get(), old_size) != 0)
            e.message += "; and truncating back failed: " + std::string(std::strerror(errno));
        else
            (void)s.fsync(fd.get());
        return Err{std::move(e)};
    };
    if (auto w = sys::write_all(s, fd.get(), from_line); !w.ok())
        return rollback(Error::from_errno("write " + path, w.error()));
    if (auto w = sys::write_all(s, fd.get(), body); !w.ok())
        return rollback(Error::from_errno("write " + path, w.error()));
    if (auto f = sys::retry_eintr([&] { return s.fsync(fd.get()); }); !f.ok())
        return rollback(Error::from_errno("fsync " + path, f.error()));
    return {};
}

}  // namespace pbx::mailbox
