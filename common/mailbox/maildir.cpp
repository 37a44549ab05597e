#include "common/mailbox/maildir.hpp"

#include <fcntl.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <optional>
#include <utility>

#include "common/spool/atomic_write.hpp"

namespace pbx::mailbox {

std::string escape_maildir_host(std::string_view host) {
    std::string out;
    out.reserve(host.size());
    for (char c : host) {
        if (c == '/')
            out += "\\057";
        else if (c == ':')
            out += "\\072";
        else
            out += c;
    }
    return out;
}

std::string maildir_unique_name(const UniqueParts& p) {
    return std::to_string(p.secs) + ".M" + std::to_string(p.usecs) + "P" + std::to_string(p.pid) +
           "Q" + std::to_string(p.counter) + "." + escape_maildir_host(p.host) +
           ",S=" + std::to_string(p.size) +
           (p.virtual_size ? ",W=" + std::to_string(*p.virtual_size) : std::string());
}

uint64_t virtual_size(std::string_view content) {
    uint64_t n = content.size();
    for (size_t i = content.find('\n'); i != std::string_view::npos; i = content.find('\n', i + 1))
        if (i == 0 || content[i - 1] != '\r') ++n;
    return n;
}

namespace {

Status make_dir(sys::Sys& s, const std::string& path) {
    auto r = s.mkdir(path, 0700);
    if (r.ok() || r.error() == EEXIST) return {};
    return fail_errno("mkdir " + path, r.error());
}

std::string strip_slash(std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
}

}  // namespace

Status ensure_maildir(const std::string& maildir_in, sys::Sys& s) {
    std::string maildir = strip_slash(maildir_in);
    if (auto st = make_dir(s, maildir); !st) return st;
    for (const char* sub : {"/cur", "/new", "/tmp"})
        if (auto st = make_dir(s, maildir + sub); !st) return st;
    return {};
}

namespace {

// Runs every function: side by side on the pool, or one after another.
void run_all(std::vector<std::function<void()>>& fns, spool::ThreadPool* pool) {
    if (pool) return pool->run_all(fns);
    for (auto& f : fns) f();
}

Result<void, int> fsync_retry(sys::Sys& s, int fd) {
    auto r = sys::retry_eintr([&] { return s.fsync(fd); });
    if (!r.ok()) return Err<int>{r.error()};
    return {};
}

struct Staged {
    std::string maildir;  // without a trailing '/'
    std::string temp;     // tmp/NAME
    std::string target;   // new/NAME
    int fd = -1;
    int fsync_errno = 0;
    bool linked = false;
    std::optional<Error> error;
};

Result<int, int> create_temp(sys::Sys& s, const std::string& path) {
    auto r = sys::retry_eintr(
        [&] { return s.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600); });
    if (!r.ok()) return Err<int>{r.error()};
    return static_cast<int>(r.value());
}

}  // namespace

std::vector<Result<MaildirDelivery>> maildir_deliver_batch(const std::vector<MaildirItem>& items,
                                                           const MaildirBatchOptions& options,
                                                           sys::Sys& s) {
    std::vector<Staged> st(items.size());
    pid_t pid = s.getpid();
    // 1. tmp/NAME, written (not yet synced).
    for (size_t i = 0; i < items.size(); ++i) {
        const MaildirItem& it = items[i];
        Staged& x = st[i];
        x.maildir = strip_slash(it.maildir);
        timeval tv{};
        gettimeofday(&tv, nullptr);
        UniqueParts parts{tv.tv_sec,        static_cast<long>(tv.tv_usec), pid, it.counter, it.host,
                          it.content.size()};
        if (it.content.ends_with('\n')) parts.virtual_size = virtual_size(it.content);
        std::string name = maildir_unique_name(parts);
        x.temp = x.maildir + "/tmp/" + name;
        x.target = x.maildir + "/new/" + name;
        auto fd = create_temp(s, x.temp);
        if (!fd.ok() && fd.error() == ENOENT && options.create_missing) {
            if (auto e = ensure_maildir(x.maildir, s); !e) {
                x.error = e.error();
                continue;
            }
            fd = create_temp(s, x.temp);
        }
        if (!fd.ok()) {
            x.error = fail_errno("create " + x.temp, fd.error()).error;
            continue;
        }
        x.fd = fd.value();
        if (auto w = sys::write_all(s, x.fd, it.content); !w.ok()) {
            x.error = fail_errno("write " + x.temp, w.error()).error;
            (void)s.close(std::exchange(x.fd, -1));
            (void)s.unlink(x.temp);
        }
    }
    // 2. Every file's writeback, started for all of them and then waited
    // for, before any fsync (a batch of more than one): ext4 allocates a
    // file's blocks and records its extents in the running journal
    // transaction when its writeback runs, so with every file written back
    // first one journal commit covers the whole batch, where fsyncs that
    // each start their own writeback often end in one commit per file (the
    // queue-manager's commit does the same, queue-manager/commit.cpp). Not a
    // substitute for the fsyncs: they follow, one per file.
    size_t open_files = 0;
    for (const Staged& x : st) open_files += x.fd >= 0 ? 1 : 0;
    if (open_files > 1) {
        constexpr unsigned kWait =
            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
        for (unsigned flags : {unsigned{SYNC_FILE_RANGE_WRITE}, kWait})
            for (Staged& x : st) {
                if (x.fd < 0) continue;
                auto r = sys::retry_eintr([&] { return s.sync_file_range(x.fd, flags); });
                if (!r.ok()) {
                    x.error = fail_errno("sync_file_range " + x.temp, r.error()).error;
                    (void)s.close(std::exchange(x.fd, -1));
                    (void)s.unlink(x.temp);
                }
            }
    }
    // 3. Every file's fsync, at once.
    std::vector<std::function<void()>> syncs;
    for (Staged& x : st)
        if (x.fd >= 0)
            syncs.emplace_back([&s, &x] {
                auto r = fsync_retry(s, x.fd);
                if (!r.ok()) x.fsync_errno = r.error();
            });
    run_all(syncs, options.pool);
    // 4. new/NAME (never replacing a file), tmp/NAME gone.
    std::vector<std::string> dirs;  // the Maildirs linked into, once each
    for (Staged& x : st) {
        if (x.fd < 0) continue;
        auto c = s.close(std::exchange(x.fd, -1));
        if (x.fsync_errno != 0) {
            x.error = fail_errno("fsync " + x.temp, x.fsync_errno).error;
        } else if (!c.ok() && c.error() != EINTR) {
            x.error = fail_errno("close " + x.temp, c.error()).error;
        } else if (auto l = s.link(x.temp, x.target); !l.ok()) {
            x.error = fail_errno("link " + x.temp + " to " + x.target, l.error()).error;
        } else {
            x.linked = true;
            if (std::find(dirs.begin(), dirs.end(), x.maildir) == dirs.end())
                dirs.push_back(x.maildir);
        }
        (void)s.unlink(x.temp);
    }
    // 5. One fsync of each new/, for all of its messages.
    std::vector<std::optional<Error>> dir_errors(dirs.size());
    std::vector<std::function<void()>> dir_syncs;
    for (size_t d = 0; d < dirs.size(); ++d)
        dir_syncs.emplace_back([&s, &dirs, &dir_errors, d] {
            if (auto r = spool::fsync_dir(dirs[d] + "/new", s); !r) dir_errors[d] = r.error();
        });
    run_all(dir_syncs, options.pool);
    std::vector<Result<MaildirDelivery>> out;
    out.reserve(st.size());
    for (Staged& x : st) {
        if (x.linked) {
            size_t d =
                static_cast<size_t>(std::find(dirs.begin(), dirs.end(), x.maildir) - dirs.begin());
            if (dir_errors[d]) {
                x.error = dir_errors[d];
                (void)s.unlink(x.target);
            }
        }
        if (x.error)
            out.emplace_back(Err{*x.error});
        else
            out.emplace_back(MaildirDelivery{x.target});
    }
    return out;
}

Result<MaildirDelivery> maildir_deliver(const std::string& maildir, std::string_view content,
                                        std::string_view host, uint64_t counter, sys::Sys& s) {
    std::vector<MaildirItem> one{{maildir, content, std::string(host), counter}};
    auto r = maildir_deliver_batch(one, {}, s);
    return std::move(r.front());
}

}  // namespace pbx::mailbox
