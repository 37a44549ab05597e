// FakeSys: a sys::Sys for tests. It performs the real syscalls (so tests run
// on a temporary directory) except where a test asked for a failure: "the 2nd
// fsync fails with EIO", "every write returns at most 3 bytes", "the next
// write is interrupted (EINTR)". It also records each call, so a test can
// check the order of the commit protocol (write, fsync, rename, fsync dir).
#pragma once

#include <string>
#include <vector>

#include "common/spool/sys.hpp"

namespace pbx::sys {

enum class Op {
    Open,
    Read,
    Write,
    Fsync,
    Close,
    Rename,
    Link,
    Unlink,
    Mkdir,
    Fchown,
    Fchmod,
    Fstat,
    Lstat,
    SyncFileRange,
};

const char* op_name(Op op);

class FakeSys final : public Sys {
  public:
    // The `nth` (1-based, counted from now) call of `op` fails with `err`;
    // with `sticky`, that call and every later one fail.
    void fail(Op op, int err, int nth = 1, bool sticky = false);
    // Every write transfers at most `n` bytes (0: no limit).
    void set_max_write(size_t n) { max_write_ = n; }
    // Forget pending failures (the trace and counters stay).
    void clear_failures() { rules_.clear(); }

    int calls(Op op) const;
    // One entry per call: "open PATH", "write", "fsync", "rename FROM TO", ...
    const std::vector<std::string>& trace() const { return trace_; }

    SysResult open(const std::string& path, int flags, mode_t mode) override;
    SysResult read(int fd, void* buf, size_t len) override;
    SysResult write(int fd, const void* buf, size_t len) override;
    SysResult fsync(int fd) override;
    SysResult sync_file_range(int fd, unsigned flags) override;
    SysResult close(int fd) override;
    SysResult rename(const std::string& from, const std::string& to) override;
    SysResult link(const std::string& from, const std::string& to) override;
    SysResult unlink(const std::string& path) override;
    SysResult mkdir(const std::string& path, mode_t mode) override;
    SysResult fchown(int fd, uid_t uid, gid_t gid) override;
    SysResult fchmod(int fd, mode_t mode) override;
    SysResult fstat(int fd, struct stat* st) override;
    SysResult lstat(const std::string& path, struct stat* st) override;
    pid_t getpid() override { return real().getpid(); }

  private:
    struct Rule {
        Op op;
        int err;
        int countdown;
        bool sticky;
    };
    // Counts the call, records it, and returns the errno to inject (0: none).
    int enter(Op op, std::string detail);

    std::vector<Rule> rules_;
    std::vector<std::string> trace_;
    int counts_[static_cast<int>(Op::SyncFileRange) + 1] = {};
    size_t max_write_ = 0;
};

}  // namespace pbx::sys
