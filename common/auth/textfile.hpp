// Shared pieces of the user database files (pillarbox-users(5),
// pillarbox-aliases(5)): the error every parser returns (it names file and
// line), a bounded reader, and the identity used to notice that a file changed.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::auth {

struct FileError {
    std::string file;
    int line = 0;  // 0: not about one line (the file cannot be read, is too large)
    std::string message;
    std::string to_string() const;  // "file:line: message" or "file: message"
};

// What identifies one version of a file: a changed inode, size or mtime means
// it was rewritten (editors and `newaliases` replace files by rename, so the
// inode matters as much as the time).
struct FileStamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_sec = 0;
    int64_t mtime_nsec = 0;
    uid_t owner = 0;  // st_uid: commands and files in aliases need root's files
    mode_t mode = 0;  // st_mode
    bool exists = false;

    static FileStamp of(const struct stat& st);
    bool operator==(const FileStamp&) const = default;
    // Owned by root and not writable by group or others (pillarbox-aliases(5):
    // the condition for :include:, |command and /file targets).
    bool root_safe() const { return exists && owner == 0 && (mode & 022) == 0; }
};

struct ReadFile {
    std::string text;
    FileStamp stamp;  // of the opened file (fstat), not of whatever the path names later
};

// Reads a whole file of at most max_size bytes. A missing file is an error
// with sys_errno ENOENT, so callers can tell "absent" from "unreadable".
Result<ReadFile, Error> read_text_file(const std::string& path, size_t max_size);

// stat() of a path as a stamp; a missing file gives exists == false.
Result<FileStamp, Error> stamp_of(const std::string& path);

// ASCII lower-casing (names and domains are compared this way, never by locale).
std::string ascii_lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// Splits text into lines for the parsers: calls fn(line_number, line) for each
// '\n'-terminated line (a last line without '\n' counts too), without the '\n'.
// fn returns Result<void, FileError>; the first error stops the walk.
template <class Fn>
Result<void, FileError> for_each_line(std::string_view text, Fn&& fn) {
    int number = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        ++number;
        size_t nl = text.find('\n', pos);
        size_t end = nl == std::string_view::npos ? text.size() : nl;
        if (auto r = fn(number, text.substr(pos, end - pos)); !r) return r;
        pos = end + 1;
    }
    return {};
}

}  // namespace pbx::auth
