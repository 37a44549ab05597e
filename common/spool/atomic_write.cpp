#include "common/spool/atomic_write.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <utility>

namespace pbx::spool {
namespace {

// Tries this many temp names before giving up (a stale temp of a process with
// our pid, from before a reboot, takes one).
constexpr int kTempAttempts = 16;

std::atomic<unsigned> g_temp_counter{0};

Err<Error> sys_error(std::string_view what, const std::string& path, int e) {
    return fail_errno(std::string(what) + " " + path, e);
}

// Closes and unlinks a temp file unless released; failures here are not
// reported: the original error is the one that matters.
class TempGuard {
  public:
    TempGuard(sys::Sys& s, std::string path, int fd) : s_(s), path_(std::move(path)), fd_(fd) {}
    ~TempGuard() {
        if (fd_ >= 0) (void)s_.close(fd_);
        if (!path_.empty()) (void)s_.unlink(path_);
    }
    Result<void, int> close() {
        int fd = std::exchange(fd_, -1);
        auto r = s_.close(fd);
        // Linux releases the fd even on EINTR; the data was already fsynced.
        if (!r.ok() && r.error() != EINTR) return Err<int>{r.error()};
        return {};
    }
    void keep() { path_.clear(); }
    int fd() const { return fd_; }
    const std::string& path() const { return path_; }

  private:
    sys::Sys& s_;
    std::string path_;
    int fd_;
};

Result<int, int> open_new(sys::Sys& s, const std::string& path, mode_t mode) {
    auto r = sys::retry_eintr(
        [&] { return s.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode); });
    if (!r.ok()) return Err<int>{r.error()};
    return static_cast<int>(r.value());
}

Result<void, int> fsync_fd(sys::Sys& s, int fd) {
    auto r = sys::retry_eintr([&] { return s.fsync(fd); });
    if (!r.ok()) return Err<int>{r.error()};
    return {};
}

}  // namespace

std::string dir_name(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
    size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

Status fsync_dir(const std::string& dir, sys::Sys& s) {
    auto fd = sys::retry_eintr([&] { return s.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0); });
    if (!fd.ok()) return sys_error("open directory", dir, fd.error());
    int f = static_cast<int>(fd.value());
    auto r = fsync_fd(s, f);
    (void)s.close(f);
    if (!r.ok()) return sys_error("fsync directory", dir, r.error());
    return {};
}

Status atomic_write(const std::string& target, std::string_view data,
                    const AtomicWriteOptions& options, sys::Sys& s) {
    std::string tdir = options.temp_dir.empty() ? dir_name(target) : options.temp_dir;
    std::string prefix = tdir + "/" + base_name(target) + std::string(kTempMarker) +
                         std::to_string(s.getpid()) + ".";
    std::string temp;
    int fd = -1;
    for (int attempt = 0;; ++attempt) {
        temp = prefix + std::to_string(g_temp_counter.fetch_add(1));
        auto r = open_new(s, temp, options.mode);
        if (r.ok()) {
            fd = r.value();
            break;
        }
        if (r.error() != EEXIST || attempt + 1 >= kTempAttempts) {
            return sys_error("create", temp, r.error());
        }
    }
    TempGuard guard(s, temp, fd);

    if (auto w = sys::write_all(s, fd, data); !w.ok()) return sys_error("write", temp, w.error());
    if (auto f = fsync_fd(s, fd); !f.ok()) return sys_error("fsync", temp, f.error());
    if (auto c = guard.close(); !c.ok()) return sys_error("close", temp, c.error());

    if (options.replace) {
        auto r = s.rename(temp, target);
        if (!r.ok()) return sys_error("rename to " + target + ":", temp, r.error());
        guard.keep();
    } else {
        auto r = s.link(temp, target);
        if (!r.ok()) return sys_error("link to " + target + ":", temp, r.error());
        // The target holds the inode now; the temp name goes before the sync.
        (void)s.unlink(temp);
        guard.keep();
    }
    if (options.sync_dir) {
        if (auto d = fsync_dir(dir_name(target), s); !d.ok()) return d;
    }
    return {};
}

Status rename_durable(const std::string& from, const std::string& to, sys::Sys& s) {
    auto r = s.rename(from, to);
    if (!r.ok()) return sys_error("rename to " + to + ":", from, r.error());
    return fsync_dir(dir_name(to), s);
}

Result<DurableFile> DurableFile::create(const std::string& path, mode_t mode, sys::Sys& s) {
    auto r = open_new(s, path, mode);
    if (!r.ok()) return sys_error("create", path, r.error());
    return DurableFile(path, r.value(), &s);
}

DurableFile::DurableFile(DurableFile&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), sys_(o.sys_), size_(o.size_) {
    o.path_.clear();
}

DurableFile& DurableFile::operator=(DurableFile&& o) noexcept {
    if (this != &o) {
        abandon();
        path_ = std::move(o.path_);
        o.path_.clear();
        fd_ = std::exchange(o.fd_, -1);
        sys_ = o.sys_;
        size_ = o.size_;
    }
    return *this;
}

DurableFile::~DurableFile() {
    abandon();
}

void DurableFile::abandon() {
    if (fd_ >= 0) (void)sys_->close(std::exchange(fd_, -1));
    if (!path_.empty()) (void)sys_->unlink(std::exchange(path_, std::string()));
}

Status DurableFile::append(std::string_view data) {
    if (fd_ < 0) return fail("append to a closed file " + path_);
    if (auto w = sys::write_all(*sys_, fd_, data); !w.ok()) {
        return sys_error("write", path_, w.error());
    }
    size_ += data.size();
    return {};
}

Status DurableFile::commit() {
    if (fd_ < 0) return fail("commit of a closed file " + path_);
    if (auto f = fsync_fd(*sys_, fd_); !f.ok()) return sys_error("fsync", path_, f.error());
    auto c = sys_->close(std::exchange(fd_, -1));
    if (!c.ok() && c.error() != EINTR) return sys_error("close", path_, c.error());
    path_.clear();  // committed: the destructor must not unlink it
    return {};
}

Status write_file_durable(const std::string& path, std::string_view data, mode_t mode,
                          sys::Sys& s) {
    auto f = DurableFile::create(path, mode, s);
    if (!f.ok()) return Err{f.error()};
    if (auto a = f->append(data); !a.ok()) return a;
    return f->commit();
}

Result<std::string> read_file_limited(const std::string& path, size_t max_size, sys::Sys& s,
                                      struct stat* st_out) {
    auto o = sys::retry_eintr(
        [&] { return s.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0); });
    if (!o.ok()) return sys_error("open", path, o.error());
    int fd = static_cast<int>(o.value());
    struct Closer {
        sys::Sys& s;
        int fd;
        ~Closer() { (void)s.close(fd); }
    } closer{s, fd};

    struct stat st {};
    if (auto r = s.fstat(fd, &st); !r.ok()) return sys_error("fstat", path, r.error());
    if (!S_ISREG(st.st_mode)) return Err{Error{"not a regular file: " + path, EINVAL}};
    if (st_out) *st_out = st;
    if (static_cast<uint64_t>(st.st_size) > max_size) {
        return Err{
            Error{"file larger than " + std::to_string(max_size) + " bytes: " + path, EFBIG}};
    }
    std::string out;
    out.reserve(static_cast<size_t>(st.st_size));
    char buf[16384];
    for (;;) {
        auto r = sys::retry_eintr([&] { return s.read(fd, buf, sizeof buf); });
        if (!r.ok()) return sys_error("read", path, r.error());
        if (r.value() == 0) break;
        // The file may grow while we read it: the limit holds regardless.
        if (out.size() + static_cast<size_t>(r.value()) > max_size) {
            return Err{
                Error{"file larger than " + std::to_string(max_size) + " bytes: " + path, EFBIG}};
        }
        out.append(buf, static_cast<size_t>(r.value()));
    }
    return out;
}

}  // namespace pbx::spool
