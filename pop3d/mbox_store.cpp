#include "pop3d/mbox_store.hpp"

#include "pop3d/mbox_journal.hpp"
#include "pop3d/sha256.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <map>
#include <thread>

namespace pbx::pop3 {

namespace {

std::string sha_hex(std::string_view a, std::string_view b) {
    return sha256_hex({a, b}, 16);
}

Result<std::string> read_fd(int fd) {
    std::string out;
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("read");
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
        off += n;
    }
    return out;
}

std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

}  // namespace

std::vector<MboxMessage> split_mbox(std::string_view data) {
    std::vector<size_t> starts;
    if (data.starts_with("From ")) starts.push_back(0);
    size_t pos = 0;
    while ((pos = data.find("\n\nFrom ", pos)) != std::string_view::npos) {
        starts.push_back(pos + 2);
        pos += 2;
    }
    std::vector<MboxMessage> out;
    for (size_t k = 0; k < starts.size(); ++k) {
        MboxMessage m{};
        m.start = starts[k];
        m.end = k + 1 < starts.size() ? starts[k + 1] : data.size();
        size_t lf = data.find('\n', m.start);
        m.body = lf == std::string_view::npos || lf >= m.end ? m.end : lf + 1;
        m.body_end = m.end;
        // The blank line that separates this message from the next one (or
        // ends the file) is not part of it.
        if (m.body_end >= m.body + 1 && m.body_end >= 2 && data[m.body_end - 1] == '\n' &&
            (m.body_end - 1 == m.body || data[m.body_end - 2] == '\n'))
            --m.body_end;
        out.push_back(m);
    }
    return out;
}

std::string mboxrd_unquote(std::string_view stored) {
    std::string out;
    out.reserve(stored.size());
    size_t pos = 0;
    while (pos < stored.size()) {
        size_t lf = stored.find('\n', pos);
        size_t end = lf == std::string_view::npos ? stored.size() : lf + 1;
        std::string_view line = stored.substr(pos, end - pos);
        size_t q = 0;
        while (q < line.size() && line[q] == '>') ++q;
        if (q > 0 && line.substr(q).starts_with("From ")) line.remove_prefix(1);
        out.append(line);
        pos = end;
    }
    return out;
}

Result<std::unique_ptr<MboxStore>, StoreOpenError> MboxStore::open(const std::string& path,
                                                                   MboxStoreOptions options) {
    std::unique_ptr<MboxStore> s(new MboxStore());
    s->path_ = path;
    const auto deadline = std::chrono::steady_clock::now() + options.lock_wait;
    const auto poll = std::chrono::milliseconds(200);

    // 1. The dotlock, where the directory lets us make one.
    const std::string lock = path + ".lock";
    while (options.dotlock) {
        UniqueFd l(
            ::open(lock.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (l) {
            s->dotlock_ = lock;
            break;
        }
        if (errno == EACCES || errno == EPERM || errno == EROFS) break;  // fcntl alone
        if (errno != EEXIST)
            return Err{StoreOpenError{OpenError::Failed,
                                      "cannot create " + lock + ": " + std::strerror(errno)}};
        struct stat st;
        if (::lstat(lock.c_str(), &st) == 0 &&
            time(nullptr) - st.st_mtime > options.stale_dotlock.count()) {
            ::unlink(lock.c_str());  // a crashed writer's
            continue;
        }
        if (std::chrono::steady_clock::now() >= deadline)
            return Err{StoreOpenError{OpenError::InUse, lock + " is held by another program"}};
        std::this_thread::sleep_for(poll);
    }

    // 2. The file, and the fcntl lock.
    s->fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!s->fd_) {
        if (errno == ENOENT) return s;  // no mail yet: an empty mailbox
        return Err{
            StoreOpenError{OpenError::Failed, "cannot open " + path + ": " + std::strerror(errno)}};
    }
    struct stat st;
    if (fstat(s->fd_.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
        st.st_uid != geteuid())
        return Err{StoreOpenError{OpenError::Failed,
                                  path + " is not a regular file of this user with one link"}};
    for (;;) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(s->fd_.get(), F_SETLK, &fl) == 0) break;
        if (errno != EAGAIN && errno != EACCES)
            return Err{StoreOpenError{OpenError::Failed,
                                      "cannot lock " + path + ": " + std::strerror(errno)}};
        if (std::chrono::steady_clock::now() >= deadline)
            return Err{StoreOpenError{OpenError::InUse, path + " is locked by another program"}};
        std::this_thread::sleep_for(poll);
    }

    // 3. A rewrite that a crash interrupted is finished before anything is
    //    read (mbox_journal.hpp).
    s->journal_ = options.journal;
    auto rec = mbox_recover(s->fd_.get(), s->journal_);
    if (!rec) return Err{StoreOpenError{OpenError::Failed, path + ": " + rec.error().message}};
    s->recovered_ = std::move(rec).value();

    // 4. The snapshot.
    auto data = read_fd(s->fd_.get());
    if (!data) return Err{StoreOpenError{OpenError::Failed, path + ": " + data.error().message}};
    s->data_ = std::move(data).value();
    if (!s->data_.empty() && !s->data_.starts_with("From "))
        return Err{StoreOpenError{OpenError::Failed, path + " does not start with a From line"}};
    std::map<std::string, int> seen;
    for (const MboxMessage& m : split_mbox(s->data_)) {
        std::string_view d(s->data_);
        std::string content = mboxrd_unquote(d.substr(m.body, m.body_end - m.body));
        std::string id = "M" + sha_hex(d.substr(m.start, m.body - m.start), content);
        int n = ++seen[id];
        if (n > 1) id += "-" + std::to_string(n);
        s->spans_.push_back(Span{m.start, m.body, m.body_end, m.end});
        s->infos_.push_back(MessageInfo{crlf_size(content), id});
    }
    return s;
}

MboxStore::~MboxStore() {
    release();
}

void MboxStore::release() {
    fd_.reset();  // the fcntl lock goes with it
    if (!dotlock_.empty()) ::unlink(dotlock_.c_str());
    dotlock_.clear();
}

void MboxStore::keep_alive() {
    if (!dotlock_.empty()) ::utimensat(AT_FDCWD, dotlock_.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
}

Result<std::string> MboxStore::content(size_t index) {
    if (index >= spans_.size()) return fail("no such message");
    const Span& sp = spans_[index];
    return mboxrd_unquote(std::string_view(data_).substr(sp.body, sp.body_end - sp.body));
}

Status MboxStore::commit(const std::vector<bool>& deleted) {
    if (!fd_) return {};
    // Anything appended after the snapshot (by a writer that ignored our
    // locks) is kept as it is.
    std::string tail;
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) return fail_errno("fstat " + path_);
    if (static_cast<size_t>(st.st_size) > data_.size()) {
        auto all = read_fd(fd_.get());
        if (!all) return Err{all.error()};
        tail = all->substr(data_.size());
    }
    if (!dotlock_.empty()) return commit_rename(deleted, tail);
    return commit_in_place(deleted, tail);
}

Status MboxStore::commit_rename(const std::vector<bool>& deleted, const std::string& tail) {
    const std::string dir = dir_of(path_);
    const std::string base = path_.substr(path_.rfind('/') + 1);
    const std::string tmp = dir + "/." + base + ".pop3-" + std::to_string(getpid());
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) return fail_errno("fstat " + path_);
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        st.st_mode & 07777));
    if (!out) return fail_errno("create " + tmp);
    std::string text;
    text.reserve(data_.size());
    size_t covered = 0;
    for (size_t i = 0; i < spans_.size(); ++i) {
        if (i < deleted.size() && deleted[i]) continue;
        text.append(data_, spans_[i].start, spans_[i].end - spans_[i].start);
        covered = spans_[i].end;
    }
    (void)covered;
    text += tail;
    Status s = pwrite_all(out.get(), text, 0);
    if (s && ::fchmod(out.get(), st.st_mode & 07777) != 0) s = fail_errno("fchmod " + tmp);
    if (s && ::fsync(out.get()) != 0) s = fail_errno("fsync " + tmp);
    if (s && ::rename(tmp.c_str(), path_.c_str()) != 0) s = fail_errno("rename " + tmp);
    if (!s) {
        ::unlink(tmp.c_str());
        return s;
    }
    UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d) ::fsync(d.get());
    // The new file is the mailbox now; our lock was on the old one, and the
    // dotlock still keeps every writer out until we are gone.
    fd_ = std::move(out);
    return {};
}

Status MboxStore::commit_in_place(const std::vector<bool>& deleted, const std::string& tail) {
    size_t first = spans_.size();
    for (size_t i = 0; i < spans_.size(); ++i)
        if (i < deleted.size() && deleted[i]) {
            first = i;
            break;
        }
    if (first == spans_.size()) return {};
    MboxRewrite rw;
    rw.offset = spans_[first].start;
    rw.old_size = data_.size() + tail.size();
    for (size_t i = first; i < spans_.size(); ++i) {
        if (i < deleted.size() && deleted[i]) continue;
        rw.data.append(data_, spans_[i].start, spans_[i].end - spans_[i].start);
    }
    rw.data += tail;
    if (auto s = mbox_rewrite(fd_.get(), journal_, rw); !s)
        return fail("rewriting " + path_ + ": " + s.error().message);
    return {};
}

}  // namespace pbx::pop3
