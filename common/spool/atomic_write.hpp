// The one durable-write path of Pillarbox (STYLE.md 7). Envelope updates,
// the commit of a message into queue/, maildrop files and Maildir deliveries
// all go through these functions, so "written" always means "on disk":
//
//   atomic_write:  temp file (O_CREAT|O_EXCL|O_CLOEXEC|O_NOFOLLOW) next to the
//                  target → write all → fsync → rename over the target →
//                  fsync the directory. Readers see the old file or the new
//                  one, never a mixture; after a crash, the same.
//   DurableFile:   a new file written in pieces (incoming/ID while a message
//                  arrives), fsynced by commit(), removed if abandoned.
//   rename_durable: rename + fsync of the target's directory (incoming/ID →
//                  queue/ID.msg).
//
// Every syscall goes through sys::Sys so tests inject failures. On failure
// these functions remove the temp file they created and leave the old target
// untouched, except where noted: once rename() has succeeded, a failed
// directory fsync is still reported (the new file is in place but not known
// to be durable, so the caller must not acknowledge it).
//
// Temp files are named "<target name>.tmp.<pid>.<n>" (kTempMarker); the
// spool scanner reports such names as leftovers of a crash.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/spool/sys.hpp"

namespace pbx::spool {

inline constexpr std::string_view kTempMarker = ".tmp.";

struct AtomicWriteOptions {
    mode_t mode = 0600;
    // Where the temp file goes; empty = the target's directory. Maildir sets
    // its tmp/ here (it must be on the same file system as the target).
    std::string temp_dir;
    // false: fail with EEXIST instead of replacing an existing target (done
    // with link() + unlink() of the temp, as Maildir delivery requires).
    bool replace = true;
    // false only where the writer cannot open the directory: maildrop/ is
    // -wx for the setgid drop helper, which therefore cannot fsync it.
    bool sync_dir = true;
};

Status atomic_write(const std::string& target, std::string_view data,
                    const AtomicWriteOptions& options = {}, sys::Sys& s = sys::real());

// fsync of a directory, so that a rename or create in it survives a crash.
Status fsync_dir(const std::string& dir, sys::Sys& s = sys::real());

// rename(from, to) then fsync of to's directory. The source directory is not
// synced: a crash can leave the old name as well, which recovery removes
// (incoming/ leftovers).
Status rename_durable(const std::string& from, const std::string& to, sys::Sys& s = sys::real());

// A new file, written in pieces and made durable by commit(). Created with
// O_EXCL: an existing file is an error (EEXIST: generate another queue ID).
// Destroying an uncommitted DurableFile closes and unlinks it.
class DurableFile {
  public:
    static Result<DurableFile> create(const std::string& path, mode_t mode,
                                      sys::Sys& s = sys::real());

    DurableFile(DurableFile&& o) noexcept;
    DurableFile& operator=(DurableFile&& o) noexcept;
    DurableFile(const DurableFile&) = delete;
    DurableFile& operator=(const DurableFile&) = delete;
    ~DurableFile();

    Status append(std::string_view data);
    // fsync + close. The directory is not synced: the file is expected to be
    // renamed next with rename_durable(), which syncs the target directory.
    Status commit();
    // Close and unlink now (also what the destructor does).
    void abandon();

    const std::string& path() const { return path_; }
    int fd() const { return fd_; }
    uint64_t size() const { return size_; }

  private:
    DurableFile(std::string path, int fd, sys::Sys* s) : path_(std::move(path)), fd_(fd), sys_(s) {}
    std::string path_;
    int fd_ = -1;
    sys::Sys* sys_ = nullptr;
    uint64_t size_ = 0;
};

// DurableFile::create + append + commit: a complete new file (O_EXCL), for the
// message file.
Status write_file_durable(const std::string& path, std::string_view data, mode_t mode,
                          sys::Sys& s = sys::real());

// Reads a whole regular file (O_NOFOLLOW: a symlink is refused) of at most
// `max_size` octets. A larger file fails with sys_errno EFBIG, a non-regular
// one with EINVAL. `st_out`, when given, receives the file's fstat.
Result<std::string> read_file_limited(const std::string& path, size_t max_size,
                                      sys::Sys& s = sys::real(), struct stat* st_out = nullptr);

// "a/b/c" → "a/b"; "c" → "."; "/c" → "/".
std::string dir_name(const std::string& path);
std::string base_name(const std::string& path);

}  // namespace pbx::spool
