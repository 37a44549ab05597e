// postdrop(8): puts one message into spool_dir/maildrop/ for the
// queue-manager to pick up; sendmail(1) runs it when the queue-manager does
// not answer.
//
// SECURITY: installed setgid pbx-drop (mode 2755), run by any local user,
// never setuid. The group's only power is to create files in maildrop/
// (1730 pbx-queue:pbx-drop, in a 0710 pbx-queue:pbx-drop spool directory).
// The environment is cleared and the umask fixed before anything else; the
// configuration (for spool_dir and message_size_limit only) and stdin are
// read with the caller's own group, the setgid group is taken back only for
// the one atomic write and then dropped for good. The input is the strict
// maildrop format, parsed under the size limit; the submitting uid and the
// time are ours (getuid(), the clock), never the caller's, and the file name
// is a fresh queue ID: the caller chooses neither. The queue-manager treats
// the file as untrusted input all the same (it checks the file's owner
// against the uid in it).
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

#include "common/config/config.hpp"
#include "common/spool/atomic_write.hpp"
#include "common/spool/layout.hpp"
#include "common/spool/maildrop.hpp"
#include "tools/mail_input.hpp"
#include "tools/submit.hpp"

namespace {

using namespace pbx;
using namespace pbx::mail;

constexpr std::string_view kDropGroup = "pbx-drop";
constexpr int kCreateAttempts = 5;  // fresh queue IDs tried when a name exists

[[noreturn]] void die(int code, const std::string& message) {
    // Whatever went wrong, the setgid group is not kept a moment longer
    // (this also lets LeakSanitizer, in test builds, inspect the process).
    gid_t real = ::getgid();
    if (::setresgid(real, real, real) != 0) std::_Exit(kExOsErr);
    std::fprintf(stderr, "postdrop: %s\n", message.c_str());
    std::exit(code);
}

// The group rights of the setgid bit, off except around the write.
class DropGroup {
  public:
    DropGroup() : real_(::getgid()), drop_(::getegid()) {}
    bool setgid_mode() const { return drop_ != real_; }
    gid_t drop_gid() const { return drop_; }

    void suspend() {
        if (setgid_mode() && ::setresgid(-1, real_, -1) != 0)
            die(kExOsErr, std::string("setresgid: ") + std::strerror(errno));
    }
    void resume() {
        if (setgid_mode() && ::setresgid(-1, drop_, -1) != 0)
            die(kExOsErr, std::string("setresgid: ") + std::strerror(errno));
    }
    void give_up() {
        if (::setresgid(real_, real_, real_) != 0)
            die(kExOsErr, std::string("setresgid: ") + std::strerror(errno));
        gid_t r, e, s;
        if (::getresgid(&r, &e, &s) != 0 || r != real_ || e != real_ || s != real_) std::abort();
    }

  private:
    gid_t real_;
    gid_t drop_;
};

std::string read_stdin(size_t max) {
    std::string data;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            die(kExIoErr, std::string("reading the message: ") + std::strerror(errno));
        }
        if (n == 0) return data;
        if (data.size() + static_cast<size_t>(n) > max)
            die(kExDataErr, "the message is larger than message_size_limit allows");
        data.append(buf, static_cast<size_t>(n));
    }
}

void check_maildrop_dir(const std::string& dir, const DropGroup& group) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0)
        die(kExCantCreat, dir + ": " + std::strerror(errno) +
                              " (the queue-manager creates it when it first starts)");
    mode_t mode = st.st_mode & 07777;
    if (!S_ISDIR(st.st_mode) || mode != spool::kMaildropDirMode ||
        (group.setgid_mode() && st.st_gid != group.drop_gid())) {
        char want[16];
        std::snprintf(want, sizeof want, "%04o", static_cast<unsigned>(spool::kMaildropDirMode));
        die(kExCantCreat, dir + " is not a maildrop directory (want a directory of mode " + want +
                              ", group " + std::string(kDropGroup) + ")");
    }
}

}  // namespace

int main(int argc, char** argv) {
    ensure_std_fds();
    ::umask(0222);  // maildrop files are 0444: the queue-manager reads them as "other"
    ::prctl(PR_SET_DUMPABLE, 0);
    ::signal(SIGXFSZ, SIG_IGN);  // a small RLIMIT_FSIZE must fail the write, not kill us mid-way

    std::string config_path(config::kDefaultPath);
    if (const char* env = std::getenv("PBX_CONFIG"); env && *env) config_path = env;
    ::clearenv();

    DropGroup group;
    if (group.setgid_mode()) {
        // Installed setgid to anything but pbx-drop (meson sets the group
        // only if it existed at install time) would be a hole: refuse.
        struct group* g = ::getgrnam(std::string(kDropGroup).c_str());
        if (!g || g->gr_gid != group.drop_gid())
            die(kExConfig, "installed setgid to gid " + std::to_string(group.drop_gid()) +
                               ", which is not the group " + std::string(kDropGroup) +
                               "; refusing to run");
    }
    group.suspend();

    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-c" && i + 1 < argc)
            config_path = argv[++i];
        else
            die(kExUsage, "usage: postdrop [-c config] < maildrop-record");
    }

    // Read as the caller: a configuration file only the drop group could
    // read would otherwise leak through our error messages.
    auto cfg = config::Config::load(config_path);
    if (!cfg) die(kExConfig, cfg.error().to_string());
    uint64_t limit = effective_size_limit(cfg->size("message_size_limit"));
    spool::SpoolPaths paths(cfg->str("spool_dir"));

    std::string input = read_stdin(limit + spool::MaildropLimits{}.max_header_size);
    uint32_t uid = ::getuid();
    auto record = rewrite_maildrop_input(input, uid, std::time(nullptr), limit);
    if (!record) die(kExDataErr, "bad input: " + record.error().message);

    group.resume();
    check_maildrop_dir(paths.maildrop, group);
    spool::AtomicWriteOptions opts;
    opts.mode = spool::kMaildropFileMode;
    opts.replace = false;
    opts.sync_dir = false;  // maildrop/ is -wx for us: it cannot be opened to fsync
    Status written = fail("no attempt");
    std::string target;
    for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
        target = paths.maildrop_file(spool::QueueId::generate());
        written = spool::atomic_write(target, *record, opts);
        if (written || written.error().sys_errno != EEXIST) break;
    }
    group.give_up();
    if (!written) {
        int e = written.error().sys_errno;
        die(e == ENOSPC || e == EDQUOT || e == EIO ? kExTempFail : kExCantCreat,
            "cannot write to " + paths.maildrop + ": " + written.error().message);
    }
    return 0;
}
