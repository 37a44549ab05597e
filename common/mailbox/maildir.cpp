#include "common/mailbox/maildir.hpp"

#include <sys/time.h>

#include <cerrno>

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

Result<MaildirDelivery> maildir_deliver(const std::string& maildir_in, std::string_view content,
                                        std::string_view host, uint64_t counter, sys::Sys& s) {
    std::string maildir = strip_slash(maildir_in);
    timeval tv{};
    gettimeofday(&tv, nullptr);
    UniqueParts parts{tv.tv_sec,         static_cast<long>(tv.tv_usec),
                      s.getpid(),        counter,
                      std::string(host), content.size()};
    if (content.ends_with('\n')) parts.virtual_size = virtual_size(content);
    std::string name = maildir_unique_name(parts);
    std::string target = maildir + "/new/" + name;
    spool::AtomicWriteOptions opt;
    opt.mode = 0600;
    opt.temp_dir = maildir + "/tmp";
    opt.replace = false;  // a name collision is an error, never an overwrite
    if (auto st = spool::atomic_write(target, content, opt, s); !st) return Err{st.error()};
    return MaildirDelivery{target};
}

}  // namespace pbx::mailbox
