#include "common/auth/textfile.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.hpp"

namespace pbx::auth {

std::string FileError::to_string() const {
    if (line > 0) return file + ":" + std::to_string(line) + ": " + message;
    return file + ": " + message;
}

FileStamp FileStamp::of(const struct stat& st) {
    FileStamp s;
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime_sec = st.st_mtim.tv_sec;
    s.mtime_nsec = st.st_mtim.tv_nsec;
    s.owner = st.st_uid;
    s.mode = st.st_mode;
    s.exists = true;
    return s;
}

Result<ReadFile, Error> read_text_file(const std::string& path, size_t max_size) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) return fail_errno("open " + path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno("stat " + path);
    if (!S_ISREG(st.st_mode)) return fail(path + ": not a regular file");
    if (static_cast<uint64_t>(st.st_size) > max_size)
        return fail(path + ": larger than " + std::to_string(max_size) + " bytes");
    ReadFile out;
    out.stamp = FileStamp::of(st);
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("read " + path);
        if (n == 0) break;
        // The file may grow between fstat() and read(): the limit holds anyway.
        if (out.text.size() + static_cast<size_t>(n) > max_size)
            return fail(path + ": larger than " + std::to_string(max_size) + " bytes");
        out.text.append(buf, static_cast<size_t>(n));
    }
    return out;
}

Result<FileStamp, Error> stamp_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return FileStamp{};
        return fail_errno("stat " + path);
    }
    return FileStamp::of(st);
}

std::string ascii_lower(std::string_view s) {
    std::string r(s);
    for (char& c : r)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return r;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

}  // namespace pbx::auth
