#include "pop3d/maildir_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <optional>

namespace pbx::pop3 {

namespace {

constexpr std::string_view kSizesFile = "pillarbox-pop3.sizes";
constexpr std::string_view kSizesHeader = "pillarbox-pop3-sizes 1\n";
constexpr std::string_view kLockFile = "pillarbox-pop3.lock";

// Arrival order for the names local-delivery (and Dovecot) make,
// "<secs>.M<usecs>P<pid>Q<n>.host": runs of digits compare by value.
bool natural_less(std::string_view a, std::string_view b) {
    size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        const bool da = a[i] >= '0' && a[i] <= '9', db = b[j] >= '0' && b[j] <= '9';
        if (da && db) {
            size_t ei = i, ej = j;
            while (ei < a.size() && a[ei] >= '0' && a[ei] <= '9') ++ei;
            while (ej < b.size() && b[ej] >= '0' && b[ej] <= '9') ++ej;
            std::string_view na = a.substr(i, ei - i), nb = b.substr(j, ej - j);
            while (na.size() > 1 && na[0] == '0') na.remove_prefix(1);
            while (nb.size() > 1 && nb[0] == '0') nb.remove_prefix(1);
            if (na.size() != nb.size()) return na.size() < nb.size();
            if (na != nb) return na < nb;
            i = ei;
            j = ej;
            continue;
        }
        if (a[i] != b[j]) return a[i] < b[j];
        ++i;
        ++j;
    }
    if ((a.size() - i) != (b.size() - j)) return a.size() - i < b.size() - j;
    return a < b;  // equal by value ("01" vs "1"): any fixed order
}

std::string base_of(std::string_view name) {
    size_t colon = name.find(':');
    return std::string(name.substr(0, colon));
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
    std::vector<std::string> out;
    DIR* d = opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT) return out;
        return fail_errno("opendir " + dir);
    }
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
        out.emplace_back(e->d_name);
    }
    closedir(d);
    return out;
}

// The ",W=<size>" field of a base name (Dovecot's virtual size, which
// local-delivery writes too: common/mailbox/maildir.hpp), if any.
std::optional<uint64_t> w_size(std::string_view base) {
    for (size_t c = base.find(','); c != std::string_view::npos; c = base.find(',', c + 1)) {
        if (base.substr(c + 1, 2) != "W=") continue;
        const char* b = base.data() + c + 3;
        const char* e = base.data() + base.size();
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(b, e, v);
        if (ec == std::errc() && p != b && (p == e || *p == ',')) return v;
    }
    return std::nullopt;
}

std::map<std::string, uint64_t, std::less<>> read_sizes(const std::string& path) {
    std::map<std::string, uint64_t, std::less<>> sizes;
    auto text = read_file_nofollow(path);
    if (!text || !text->starts_with(kSizesHeader)) return sizes;
    std::string_view t(*text);
    t.remove_prefix(kSizesHeader.size());
    while (!t.empty()) {
        size_t lf = t.find('\n');
        if (lf == std::string_view::npos) break;  // a torn last line: ignored
        std::string_view line = t.substr(0, lf);
        t.remove_prefix(lf + 1);
        size_t sp = line.find(' ');
        if (sp == std::string_view::npos) continue;
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + sp, v);
        if (ec != std::errc() || p != line.data() + sp) continue;
        sizes.emplace(std::string(line.substr(sp + 1)), v);
    }
    return sizes;
}

// `bases` yields the base name of message i; sizes from the name (W=) are
// not written.
template <class Bases>
void write_sizes(const std::string& root, const std::vector<MessageInfo>& infos,
                 const std::vector<bool>& from_name, Bases bases) {
    std::string text(kSizesHeader);
    for (size_t i = 0; i < infos.size(); ++i) {
        if (from_name[i]) continue;
        text += std::to_string(infos[i].size);
        text += ' ';
        text += bases(i);
        text += '\n';
    }
    const std::string tmp =
        root + "/tmp/" + std::string(kSizesFile) + "." + std::to_string(getpid());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return;  // a cache: failing to write it costs time later, nothing else
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            ::unlink(tmp.c_str());
            return;
        }
        off += static_cast<size_t>(n);
    }
    fd.reset();
    if (::rename(tmp.c_str(), (root + "/" + std::string(kSizesFile)).c_str()) != 0)
        ::unlink(tmp.c_str());
}

}  // namespace

Result<std::string> read_file_nofollow(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return fail_errno(path);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return fail_errno("fstat " + path);
    if (!S_ISREG(st.st_mode)) return fail(path + " is not a regular file");
    // One byte more than the size: a read that returns less has met the end
    // of the file, and the usual case takes one read() (no second one for
    // the end).
    std::string out;
    out.resize(static_cast<size_t>(st.st_size) + 1);
    size_t off = 0;
    for (;;) {
        if (off == out.size()) out.resize(out.size() + 4096);  // it grew meanwhile
        ssize_t n = ::read(fd.get(), out.data() + off, out.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("read " + path);
        if (n == 0) break;
        off += static_cast<size_t>(n);
        if (off < out.size()) break;  // short read of a regular file: its end
    }
    out.resize(off);
    return out;
}

Result<std::unique_ptr<MaildirStore>, StoreOpenError> MaildirStore::open(
    const std::string& maildir) {
    std::unique_ptr<MaildirStore> s(new MaildirStore());
    s->root_ = maildir;
    while (s->root_.size() > 1 && s->root_.back() == '/') s->root_.pop_back();
    struct stat st;
    if (::stat(s->root_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return Err{StoreOpenError{OpenError::Failed, "no Maildir at " + s->root_}};
    const std::string lock_path = s->root_ + "/" + std::string(kLockFile);
    s->lock_ = UniqueFd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!s->lock_)
        return Err{StoreOpenError{OpenError::Failed,
                                  "cannot open " + lock_path + ": " + std::strerror(errno)}};
    if (flock(s->lock_.get(), LOCK_EX | LOCK_NB) != 0)
        return Err{StoreOpenError{OpenError::InUse, "another POP3 session holds " + lock_path}};

    struct Entry {
        std::string base, path;
    };
    std::vector<Entry> entries;
    for (const char* sub : {"new", "cur"}) {
        auto names = list_dir(s->root_ + "/" + sub);
        if (!names) return Err{StoreOpenError{OpenError::Failed, names.error().message}};
        for (auto& n : *names) entries.push_back({base_of(n), std::string(sub) + "/" + n});
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return natural_less(a.base, b.base); });
    // The same base name twice (a copy in new/ and cur/ during another
    // program's move): one message.
    entries.erase(std::unique(entries.begin(), entries.end(),
                              [](const Entry& a, const Entry& b) { return a.base == b.base; }),
                  entries.end());

    // A size comes from the name's W= (no read; the cache leaves it out),
    // else from the cache, else from reading the message.
    const std::string sizes_path = s->root_ + "/" + std::string(kSizesFile);
    auto cached = read_sizes(sizes_path);
    size_t cache_used = 0;
    bool changed = false;
    s->infos_.reserve(entries.size());
    s->paths_.reserve(entries.size());
    std::vector<bool> from_name;
    from_name.reserve(entries.size());
    for (auto& e : entries) {
        uint64_t size = 0;
        const std::optional<uint64_t> w = w_size(e.base);
        if (w) {
            size = *w;
        } else if (auto it = cached.find(e.base); it != cached.end()) {
            size = it->second;
            ++cache_used;
        } else {
            auto text = read_file_nofollow(s->root_ + "/" + e.path);
            if (!text) continue;  // vanished since the listing: not in the snapshot
            size = crlf_size(*text);
            changed = true;
        }
        s->infos_.push_back(MessageInfo{size, uidl_for(e.base)});
        s->paths_.push_back(std::move(e.path));
        from_name.push_back(w.has_value());
    }
    if (changed || cache_used != cached.size())
        write_sizes(s->root_, s->infos_, from_name, [&](size_t i) { return s->base(i); });
    return s;
}

std::string_view MaildirStore::base(size_t index) const {
    std::string_view p = paths_[index];
    p.remove_prefix(std::min(p.size(), size_t{4}));  // "new/" or "cur/"
    return p.substr(0, p.find(':'));
}

std::string MaildirStore::find(size_t index) const {
    const std::string first = root_ + "/" + paths_[index];
    struct stat st;
    if (::lstat(first.c_str(), &st) == 0) return first;
    // Moved (new/ → cur/) or its flags changed: look for the base name.
    for (const char* sub : {"cur", "new"}) {
        auto names = list_dir(root_ + "/" + sub);
        if (!names) continue;
        for (const auto& n : *names)
            if (base_of(n) == base(index)) return root_ + "/" + sub + "/" + n;
    }
    return {};
}

Result<std::string> MaildirStore::content(size_t index) {
    if (index >= paths_.size()) return fail("no such message");
    // Where it was at the start (one open, no lstat first); else look for it.
    if (auto text = read_file_nofollow(root_ + "/" + paths_[index])) return text;
    std::string path = find(index);
    if (path.empty()) return fail("message " + std::string(base(index)) + " is gone");
    return read_file_nofollow(path);
}

Status MaildirStore::commit(const std::vector<bool>& deleted) {
    std::string errors;
    for (size_t i = 0; i < deleted.size() && i < paths_.size(); ++i) {
        if (!deleted[i]) continue;
        std::string path = find(i);
        if (path.empty()) continue;  // already gone: deleted all the same
        if (::unlink(path.c_str()) != 0 && errno != ENOENT && errors.empty())
            errors = "unlink " + path + ": " + std::strerror(errno);
    }
    for (const char* sub : {"new", "cur"}) {
        UniqueFd d(::open((root_ + "/" + sub).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (d) ::fsync(d.get());
    }
    if (!errors.empty()) return fail(errors);
    return {};
}

}  // namespace pbx::pop3
