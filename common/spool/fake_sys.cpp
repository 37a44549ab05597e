#include "common/spool/fake_sys.hpp"

#include <algorithm>

namespace pbx::sys {

const char* op_name(Op op) {
    switch (op) {
        case Op::Open:
            return "open";
        case Op::Read:
            return "read";
        case Op::Write:
            return "write";
        case Op::Fsync:
            return "fsync";
        case Op::Close:
            return "close";
        case Op::Rename:
            return "rename";
        case Op::Link:
            return "link";
        case Op::Unlink:
            return "unlink";
        case Op::Mkdir:
            return "mkdir";
        case Op::Fchown:
            return "fchown";
        case Op::Fchmod:
            return "fchmod";
        case Op::Fstat:
            return "fstat";
        case Op::Lstat:
            return "lstat";
        case Op::SyncFileRange:
            return "sync_file_range";
    }
    return "?";
}

void FakeSys::fail(Op op, int err, int nth, bool sticky) {
    rules_.push_back(Rule{op, err, std::max(nth, 1), sticky});
}

int FakeSys::calls(Op op) const {
    return counts_[static_cast<int>(op)];
}

int FakeSys::enter(Op op, std::string detail) {
    ++counts_[static_cast<int>(op)];
    trace_.push_back(detail.empty() ? std::string(op_name(op))
                                    : std::string(op_name(op)) + " " + detail);
    int inject = 0;
    for (auto it = rules_.begin(); it != rules_.end();) {
        if (it->op != op) {
            ++it;
            continue;
        }
        if (it->countdown > 1) {
            --it->countdown;
            ++it;
            continue;
        }
        if (inject == 0) inject = it->err;
        if (it->sticky) {
            ++it;
        } else {
            it = rules_.erase(it);
        }
    }
    return inject;
}

SysResult FakeSys::open(const std::string& path, int flags, mode_t mode) {
    if (int e = enter(Op::Open, path)) return sys_fail(e);
    return real().open(path, flags, mode);
}
SysResult FakeSys::read(int fd, void* buf, size_t len) {
    if (int e = enter(Op::Read, {})) return sys_fail(e);
    return real().read(fd, buf, len);
}
SysResult FakeSys::write(int fd, const void* buf, size_t len) {
    if (int e = enter(Op::Write, {})) return sys_fail(e);
    if (max_write_ != 0) len = std::min(len, max_write_);
    return real().write(fd, buf, len);
}
SysResult FakeSys::fsync(int fd) {
    if (int e = enter(Op::Fsync, {})) return sys_fail(e);
    return real().fsync(fd);
}
SysResult FakeSys::sync_file_range(int fd, unsigned flags) {
    if (int e = enter(Op::SyncFileRange, {})) return sys_fail(e);
    return real().sync_file_range(fd, flags);
}
SysResult FakeSys::close(int fd) {
    // As on Linux, the descriptor is released even when close reports an error.
    int e = enter(Op::Close, {});
    SysResult r = real().close(fd);
    if (e) return sys_fail(e);
    return r;
}
SysResult FakeSys::rename(const std::string& from, const std::string& to) {
    if (int e = enter(Op::Rename, from + " " + to)) return sys_fail(e);
    return real().rename(from, to);
}
SysResult FakeSys::link(const std::string& from, const std::string& to) {
    if (int e = enter(Op::Link, from + " " + to)) return sys_fail(e);
    return real().link(from, to);
}
SysResult FakeSys::unlink(const std::string& path) {
    if (int e = enter(Op::Unlink, path)) return sys_fail(e);
    return real().unlink(path);
}
SysResult FakeSys::mkdir(const std::string& path, mode_t mode) {
    if (int e = enter(Op::Mkdir, path)) return sys_fail(e);
    return real().mkdir(path, mode);
}
SysResult FakeSys::fchown(int fd, uid_t uid, gid_t gid) {
    if (int e = enter(Op::Fchown, {})) return sys_fail(e);
    return real().fchown(fd, uid, gid);
}
SysResult FakeSys::fchmod(int fd, mode_t mode) {
    if (int e = enter(Op::Fchmod, {})) return sys_fail(e);
    return real().fchmod(fd, mode);
}
SysResult FakeSys::fstat(int fd, struct stat* st) {
    if (int e = enter(Op::Fstat, {})) return sys_fail(e);
    return real().fstat(fd, st);
}
SysResult FakeSys::lstat(const std::string& path, struct stat* st) {
    if (int e = enter(Op::Lstat, path)) return sys_fail(e);
    return real().lstat(path, st);
}

}  // namespace pbx::sys
