#include "pop3d/mbox_journal.hpp"

#include "pop3d/sha256.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <string_view>

#include "common/unique_fd.hpp"

namespace pbx::pop3 {

namespace {

constexpr std::string_view kMagic = "pillarbox-mbox-journal 1\n";

// Exactly `size` bytes at `offset` (fewer only at the end of the file).
Result<std::string> pread_some(int fd, uint64_t offset, uint64_t size) {
    std::string out(static_cast<size_t>(size), '\0');
    size_t got = 0;
    while (got < out.size()) {
        ssize_t n =
            ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("read");
        if (n == 0) break;
        got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
}

Status fsync_dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d) return fail_errno("open " + dir);
    if (::fsync(d.get()) != 0) return fail_errno("fsync " + dir);
    return {};
}

struct Header {
    uint64_t device = 0, inode = 0, offset = 0, old_size = 0, length = 0;
    std::string stale_sha, data_sha;
};

std::string format_header(const Header& h) {
    std::string s(kMagic);
    s += "device " + std::to_string(h.device) + "\n";
    s += "inode " + std::to_string(h.inode) + "\n";
    s += "offset " + std::to_string(h.offset) + "\n";
    s += "old-size " + std::to_string(h.old_size) + "\n";
    s += "length " + std::to_string(h.length) + "\n";
    s += "stale-sha256 " + h.stale_sha + "\n";
    s += "data-sha256 " + h.data_sha + "\n\n";
    return s;
}

// Parses the header; `rest` is left at the data.
bool parse_header(std::string_view& rest, Header& h) {
    if (!rest.starts_with(kMagic)) return false;
    rest.remove_prefix(kMagic.size());
    auto field = [&rest](std::string_view name, std::string_view& value) {
        size_t lf = rest.find('\n');
        if (lf == std::string_view::npos) return false;
        std::string_view line = rest.substr(0, lf);
        rest.remove_prefix(lf + 1);
        if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != ' ')
            return false;
        value = line.substr(name.size() + 1);
        return true;
    };
    auto number = [&field](std::string_view name, uint64_t& out) {
        std::string_view v;
        if (!field(name, v) || v.empty()) return false;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
        return ec == std::errc{} && p == v.data() + v.size();
    };
    std::string_view stale, data;
    if (!number("device", h.device) || !number("inode", h.inode) || !number("offset", h.offset) ||
        !number("old-size", h.old_size) || !number("length", h.length) ||
        !field("stale-sha256", stale) || !field("data-sha256", data) || !rest.starts_with("\n"))
        return false;
    rest.remove_prefix(1);
    h.stale_sha = std::string(stale);
    h.data_sha = std::string(data);
    return h.offset + h.length < h.old_size && rest.size() == h.length;
}

// Puts the data at X and whatever mail came after the rewrite began behind
// it, then truncates. Idempotent: running it again after a crash anywhere
// inside gives the same file.
Status apply(int fd, const Header& h, std::string_view data) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return fail_errno("fstat");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    const uint64_t end = h.offset + h.length;
    std::string later;  // mail appended since the rewrite began
    bool truncated = true;
    if (size >= h.old_size) {
        auto stale = pread_some(fd, end, h.old_size - end);
        if (!stale) return Err{stale.error()};
        truncated = sha256_hex({*stale}) != h.stale_sha;
    }
    uint64_t later_from = truncated ? end : h.old_size;
    if (size > later_from) {
        auto r = pread_some(fd, later_from, size - later_from);
        if (!r) return Err{r.error()};
        later = std::move(r).value();
    }
    if (auto s = pwrite_all(fd, data, h.offset); !s) return s;
    if (auto s = pwrite_all(fd, later, end); !s) return s;
    if (::fsync(fd) != 0) return fail_errno("fsync");
    if (::ftruncate(fd, static_cast<off_t>(end + later.size())) != 0) return fail_errno("truncate");
    if (::fsync(fd) != 0) return fail_errno("fsync");
    return {};
}

}  // namespace

Status pwrite_all(int fd, std::string_view data, uint64_t offset) {
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n =
            ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("write");
        done += static_cast<size_t>(n);
    }
    return {};
}

Status mbox_write_journal(int fd, const std::string& journal_path, const MboxRewrite& rw) {
    if (journal_path.empty()) return fail("no directory for the rewrite journal ($HOME unset)");
    struct stat st;
    if (::fstat(fd, &st) != 0) return fail_errno("fstat");
    Header h;
    h.device = static_cast<uint64_t>(st.st_dev);
    h.inode = static_cast<uint64_t>(st.st_ino);
    h.offset = rw.offset;
    h.old_size = rw.old_size;
    h.length = rw.data.size();
    if (h.offset + h.length >= h.old_size || static_cast<uint64_t>(st.st_size) < h.old_size)
        return fail("mbox rewrite: the new text is not shorter than the old one");
    auto stale = pread_some(fd, h.offset + h.length, h.old_size - h.offset - h.length);
    if (!stale) return Err{stale.error()};
    h.stale_sha = sha256_hex({*stale});
    h.data_sha = sha256_hex({rw.data});
    const std::string header = format_header(h);
    const std::string tmp = journal_path + ".tmp";
    UniqueFd j(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!j) return fail_errno("create " + tmp);
    Status s = pwrite_all(j.get(), header, 0);
    if (s) s = pwrite_all(j.get(), rw.data, header.size());
    if (s && ::fsync(j.get()) != 0) s = fail_errno("fsync " + tmp);
    if (s && ::rename(tmp.c_str(), journal_path.c_str()) != 0) s = fail_errno("rename " + tmp);
    if (!s) {
        ::unlink(tmp.c_str());
        return s;
    }
    return fsync_dir_of(journal_path);
}

Status mbox_rewrite(int fd, const std::string& journal_path, const MboxRewrite& rw) {
    // The rewrite is its own recovery: once the journal is durable, doing
    // it is exactly what the next session would do after a crash.
    if (auto s = mbox_write_journal(fd, journal_path, rw); !s) return s;
    auto r = mbox_recover(fd, journal_path);
    if (!r) return Err{r.error()};
    return {};
}

Result<std::string> mbox_recover(int fd, const std::string& journal_path) {
    if (journal_path.empty()) return std::string();
    ::unlink((journal_path + ".tmp").c_str());  // never got as far as the mbox
    UniqueFd j(::open(journal_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!j) {
        if (errno == ENOENT) return std::string();
        return fail_errno("open " + journal_path);
    }
    struct stat jst;
    if (::fstat(j.get(), &jst) != 0) return fail_errno("fstat " + journal_path);
    auto text = pread_some(j.get(), 0, static_cast<uint64_t>(jst.st_size));
    if (!text) return Err{text.error()};
    std::string_view rest(*text);
    Header h;
    if (!parse_header(rest, h) || sha256_hex({rest}) != h.data_sha)
        return fail(journal_path +
                    " is damaged: the mailbox may hold an unfinished rewrite; look at both "
                    "and remove the journal");
    struct stat st;
    if (::fstat(fd, &st) != 0) return fail_errno("fstat");
    if (static_cast<uint64_t>(st.st_dev) != h.device ||
        static_cast<uint64_t>(st.st_ino) != h.inode) {
        if (::unlink(journal_path.c_str()) != 0) return fail_errno("unlink " + journal_path);
        return std::string("removed " + journal_path + " (a journal of a replaced mailbox)");
    }
    if (auto s = apply(fd, h, rest); !s) return Err{s.error()};
    if (::unlink(journal_path.c_str()) != 0) return fail_errno("unlink " + journal_path);
    if (auto s = fsync_dir_of(journal_path); !s) return Err{s.error()};
    return std::string("finished an interrupted rewrite from " + journal_path);
}

}  // namespace pbx::pop3
