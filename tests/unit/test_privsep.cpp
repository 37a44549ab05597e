// The privilege drop, exercised for real: each case forks, drops in the child
// and reports what /proc and the kernel say. Needs root (CI and test.sh are).
#include <catch2/catch.hpp>

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "common/privsep/privsep.hpp"

using pbx::privsep::DropSpec;
using pbx::privsep::KeepCaps;

namespace {

// Runs fn in a child; returns its exit code, or 128+signal.
int in_child(const std::function<int()>& fn) {
    pid_t pid = fork();
    if (pid == 0) {
        // The child must never return into the test runner.
        int rc = 100;
        try {
            rc = fn();
        } catch (...) {
            rc = 101;
        }
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

std::string status_field(const std::string& name) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) {
            auto v = line.substr(name.size() + 1);
            auto start = v.find_first_not_of(" \t");
            return start == std::string::npos ? "" : v.substr(start);
        }
    return "";
}

DropSpec user_spec(const char* user) {
    DropSpec s;
    s.user = user;
    auto r = pbx::privsep::resolve(s);
    REQUIRE(r.ok());
    return *r;
}

}  // namespace

TEST_CASE("privsep: resolve refuses unknown users and uid 0", "[privsep]") {
    DropSpec s;
    s.user = "no-such-user-pbx";
    CHECK_FALSE(pbx::privsep::resolve(s).ok());
    DropSpec root;
    root.user = "root";
    auto r = pbx::privsep::resolve(root);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("uid/gid 0") != std::string::npos);
    DropSpec none;
    CHECK_FALSE(pbx::privsep::resolve(none).ok());
}

TEST_CASE("privsep: drop to a system user leaves no privilege", "[privsep]") {
    REQUIRE(geteuid() == 0);  // the drop is tested for real: run as root
    DropSpec spec = user_spec("pbx-smtpd");
    int rc = in_child([&] {
        if (auto d = pbx::privsep::drop(spec); !d) {
            std::fprintf(stderr, "drop: %s\n", d.error().message.c_str());
            return 10;
        }
        if (getuid() != spec.uid || geteuid() != spec.uid) return 11;
        if (status_field("CapEff") != "0000000000000000") return 12;
        if (status_field("CapPrm") != "0000000000000000") return 13;
        if (status_field("CapBnd") != "0000000000000000") return 14;
        if (status_field("NoNewPrivs") != "1") return 15;
        if (setuid(0) == 0) return 16;
        if (status_field("Groups") != "") return 17;
        return 0;
    });
    CHECK(rc == 0);
}

TEST_CASE("privsep: local-delivery's parent keeps exactly CAP_SETUID and CAP_SETGID", "[privsep]") {
    REQUIRE(geteuid() == 0);  // the drop is tested for real: run as root
    DropSpec spec;
    spec.uid = 0;
    spec.gid = 0;
    spec.allow_root = true;
    spec.keep = KeepCaps::SetuidSetgid;
    mkdir("/tmp/pbx-privsep-test", 0700);
    REQUIRE(chown("/tmp/pbx-privsep-test", 65534, 65534) == 0);
    int rc = in_child([&] {
        if (auto d = pbx::privsep::drop(spec); !d) {
            std::fprintf(stderr, "drop: %s\n", d.error().message.c_str());
            return 10;
        }
        if (status_field("CapEff") != "00000000000000c0") return 12;
        if (status_field("CapBnd") != "0000000000000000") return 14;
        if (status_field("NoNewPrivs") != "1") return 15;
        // It cannot open a root-only file: CAP_DAC_OVERRIDE is gone...
        if (mkdir("/tmp/pbx-privsep-test/sub", 0700) == 0) return 18;
        // ...but it can become a recipient.
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) return 19;
        return 0;
    });
    rmdir("/tmp/pbx-privsep-test/sub");
    rmdir("/tmp/pbx-privsep-test");
    CHECK(rc == 0);
}

TEST_CASE("privsep: login processes cannot fork and are not dumpable", "[privsep]") {
    REQUIRE(geteuid() == 0);  // the drop is tested for real: run as root
    DropSpec spec = user_spec("pbx-login");
    spec.no_fork_not_dumpable = true;
    int rc = in_child([&] {
        if (auto d = pbx::privsep::drop(spec); !d) {
            std::fprintf(stderr, "drop: %s\n", d.error().message.c_str());
            return 10;
        }
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return 11;
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) return 12;  // fork must fail
        return 0;
    });
    CHECK(rc == 0);
}

TEST_CASE("privsep: chroot confines the program", "[privsep]") {
    REQUIRE(geteuid() == 0);  // the drop is tested for real: run as root
    char dir[] = "/tmp/pbx-chroot-XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    chmod(dir, 0755);
    DropSpec spec = user_spec("pbx-smtpd");
    spec.chroot_dir = dir;
    int rc = in_child([&] {
        if (auto d = pbx::privsep::drop(spec); !d) {
            std::fprintf(stderr, "drop: %s\n", d.error().message.c_str());
            return 10;
        }
        if (access("/etc/passwd", F_OK) == 0) return 11;
        char cwd[64];
        if (!getcwd(cwd, sizeof cwd) || std::string(cwd) != "/") return 12;
        return 0;
    });
    rmdir(dir);
    CHECK(rc == 0);
}

TEST_CASE("privsep: drop refuses uid 0 without allow_root", "[privsep]") {
    DropSpec spec;
    spec.uid = 0;
    spec.gid = 0;
    int rc = in_child([&] { return pbx::privsep::drop(spec).ok() ? 1 : 0; });
    CHECK(rc == 0);
}

TEST_CASE("privsep: verify notices privileges that are still held", "[privsep]") {
    REQUIRE(geteuid() == 0);  // the drop is tested for real: run as root
    DropSpec spec = user_spec("pbx-smtpd");
    // Not dropped: we are still root, so verification must fail.
    auto s = pbx::privsep::verify(spec);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message.find("uids are 0") != std::string::npos);
}
