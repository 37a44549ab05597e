// sys: the syscalls the spool code makes, behind an interface so that tests
// can inject EIO, ENOSPC, EINTR and short writes without root (STYLE.md 15).
//
// Every call returns Result<long, int>: the syscall's return value, or the
// errno it failed with. Nothing here retries EINTR or loops over partial
// writes: callers decide (write_all() below does both for write).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::sys {

using SysResult = Result<long, int>;

inline Err<int> sys_fail(int e) {
    return Err<int>{e};
}

class Sys {
  public:
    virtual ~Sys() = default;

    virtual SysResult open(const std::string& path, int flags, mode_t mode) = 0;
    virtual SysResult read(int fd, void* buf, size_t len) = 0;
    virtual SysResult write(int fd, const void* buf, size_t len) = 0;
    virtual SysResult fsync(int fd) = 0;
    // sync_file_range(2) over the whole file (offset 0, length 0): starts
    // and/or waits for the writeback of its dirty pages. Never a substitute
    // for fsync (it syncs no metadata and flushes no disk cache); the commit
    // uses it to have several files' blocks allocated before their fsyncs,
    // so that one journal commit covers them all (queue-manager/commit.cpp).
    virtual SysResult sync_file_range(int fd, unsigned flags) = 0;
    // The fd is gone after close whatever the result (Linux semantics).
    virtual SysResult close(int fd) = 0;
    virtual SysResult rename(const std::string& from, const std::string& to) = 0;
    virtual SysResult link(const std::string& from, const std::string& to) = 0;
    virtual SysResult unlink(const std::string& path) = 0;
    virtual SysResult mkdir(const std::string& path, mode_t mode) = 0;
    virtual SysResult fchown(int fd, uid_t uid, gid_t gid) = 0;
    virtual SysResult fchmod(int fd, mode_t mode) = 0;
    virtual SysResult fstat(int fd, struct stat* st) = 0;
    virtual SysResult lstat(const std::string& path, struct stat* st) = 0;
    virtual pid_t getpid() = 0;
};

// The process-wide real implementation (plain syscalls).
Sys& real();

// Writes all of `data`, retrying EINTR and continuing after short writes.
// A write that returns 0 for a non-empty buffer is reported as EIO rather than
// looping forever.
Result<void, int> write_all(Sys& s, int fd, std::string_view data);

// Calls `fn` again while it fails with EINTR (open, fsync, read...; never close).
template <class Fn>
SysResult retry_eintr(Fn&& fn) {
    for (;;) {
        SysResult r = fn();
        if (r.ok() || r.error() != EINTR) return r;
    }
}

}  // namespace pbx::sys
