#include "common/spool/sys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace pbx::sys {
namespace {

SysResult wrap(long rc) {
    if (rc < 0) return sys_fail(errno);
    return rc;
}

class RealSys final : public Sys {
  public:
    SysResult open(const std::string& path, int flags, mode_t mode) override {
        return wrap(::open(path.c_str(), flags, mode));
    }
    SysResult read(int fd, void* buf, size_t len) override { return wrap(::read(fd, buf, len)); }
    SysResult write(int fd, const void* buf, size_t len) override {
        return wrap(::write(fd, buf, len));
    }
    SysResult fsync(int fd) override { return wrap(::fsync(fd)); }
    SysResult sync_file_range(int fd, unsigned flags) override {
        return wrap(::sync_file_range(fd, 0, 0, flags));
    }
    SysResult close(int fd) override { return wrap(::close(fd)); }
    SysResult rename(const std::string& from, const std::string& to) override {
        return wrap(::rename(from.c_str(), to.c_str()));
    }
    SysResult link(const std::string& from, const std::string& to) override {
        return wrap(::link(from.c_str(), to.c_str()));
    }
    SysResult unlink(const std::string& path) override { return wrap(::unlink(path.c_str())); }
    SysResult mkdir(const std::string& path, mode_t mode) override {
        return wrap(::mkdir(path.c_str(), mode));
    }
    SysResult fchown(int fd, uid_t uid, gid_t gid) override { return wrap(::fchown(fd, uid, gid)); }
    SysResult fchmod(int fd, mode_t mode) override { return wrap(::fchmod(fd, mode)); }
    SysResult fstat(int fd, struct stat* st) override { return wrap(::fstat(fd, st)); }
    SysResult lstat(const std::string& path, struct stat* st) override {
        return wrap(::lstat(path.c_str(), st));
    }
    pid_t getpid() override { return ::getpid(); }
};

}  // namespace

Sys& real() {
    static RealSys instance;
    return instance;
}

Result<void, int> write_all(Sys& s, int fd, std::string_view data) {
    while (!data.empty()) {
        SysResult r = s.write(fd, data.data(), data.size());
        if (!r.ok()) {
            if (r.error() == EINTR) continue;
            return Err<int>{r.error()};
        }
        long n = r.value();
        if (n <= 0 || static_cast<size_t>(n) > data.size()) return Err<int>{EIO};
        data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

}  // namespace pbx::sys
