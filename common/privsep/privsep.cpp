#include "common/privsep/privsep.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/log.hpp"

namespace pbx::privsep {
namespace {

constexpr cap_value_t kSetidCaps[] = {CAP_SETUID, CAP_SETGID};

// Emptying the bounding set needs CAP_SETPCAP, so it happens before the uid
// change takes it away; once it is empty no exec can bring a capability back.
// A capability already gone from the set is skipped: local-delivery's child
// drops again from a parent whose set is empty and that has no CAP_SETPCAP.
Status clear_bounding_set() {
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
        if (CAP_IS_SUPPORTED(c) && cap_get_bound(c) == 1 && cap_drop_bound(c) != 0 &&
            errno != EINVAL)
            return fail_errno("cap_drop_bound");
    }
    return {};
}

Status clear_capabilities(KeepCaps keep) {
    cap_t caps = cap_init();  // all sets empty
    if (!caps) return fail_errno("cap_init");
    if (keep == KeepCaps::SetuidSetgid) {
        if (cap_set_flag(caps, CAP_EFFECTIVE, 2, kSetidCaps, CAP_SET) != 0 ||
            cap_set_flag(caps, CAP_PERMITTED, 2, kSetidCaps, CAP_SET) != 0) {
            cap_free(caps);
            return fail_errno("cap_set_flag");
        }
    }
    int rc = cap_set_proc(caps);
    int saved = errno;
    cap_free(caps);
    if (rc != 0) return fail_errno("cap_set_proc", saved);
    // Ambient capabilities would survive exec; there must be none.
    if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() != 0) return fail_errno("cap_reset_ambient");
    return {};
}

Status check_caps(KeepCaps keep) {
    cap_t current = cap_get_proc();
    if (!current) return fail_errno("cap_get_proc");
    cap_t want = cap_init();
    if (keep == KeepCaps::SetuidSetgid) {
        cap_set_flag(want, CAP_EFFECTIVE, 2, kSetidCaps, CAP_SET);
        cap_set_flag(want, CAP_PERMITTED, 2, kSetidCaps, CAP_SET);
    }
    int diff = cap_compare(current, want);
    cap_free(current);
    cap_free(want);
    if (diff != 0) return fail("capability sets differ from the expected ones");
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
        if (CAP_IS_SUPPORTED(c) && cap_get_bound(c) == 1)
            return fail("bounding set still holds capability " + std::to_string(c));
    }
    return {};
}

}  // namespace

Result<DropSpec> resolve(DropSpec spec) {
    if (!spec.user.empty()) {
        errno = 0;
        struct passwd* pw = getpwnam(spec.user.c_str());
        if (!pw) return fail("unknown user '" + spec.user + "'");
        spec.uid = pw->pw_uid;
        spec.gid = pw->pw_gid;
    }
    if (spec.uid == static_cast<uid_t>(-1) || spec.gid == static_cast<gid_t>(-1))
        return fail("no user or uid/gid given for the privilege drop");
    if (!spec.allow_root && (spec.uid == 0 || spec.gid == 0))
        return fail("refusing to run as uid/gid 0 (user '" + spec.user + "')");
    return spec;
}

Status verify(const DropSpec& spec) {
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return fail_errno("getresuid");
    if (ru != spec.uid || eu != spec.uid || su != spec.uid)
        return fail("uids are " + std::to_string(ru) + "/" + std::to_string(eu) + "/" +
                    std::to_string(su) + ", expected " + std::to_string(spec.uid));
    if (rg != spec.gid || eg != spec.gid || sg != spec.gid)
        return fail("gids are not " + std::to_string(spec.gid));
    if (spec.keep == KeepCaps::None && spec.uid != 0) {
        // The classic check (qmail, Dovecot): regaining root must be impossible.
        if (setuid(0) == 0 || seteuid(0) == 0) return fail("setuid(0) succeeded after the drop");
        if (setgid(0) == 0 || setegid(0) == 0) return fail("setgid(0) succeeded after the drop");
    }
    if (auto s = check_caps(spec.keep); !s) return s;
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return fail("NO_NEW_PRIVS is not set");
    if (spec.no_fork_not_dumpable) {
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return fail("process is still dumpable");
        struct rlimit rl;
        if (getrlimit(RLIMIT_NPROC, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
            return fail("RLIMIT_NPROC is not 0");
    }
    return {};
}

Status drop(const DropSpec& spec) {
    if (!spec.allow_root && (spec.uid == 0 || spec.gid == 0))
        return fail("refusing to drop to uid/gid 0");
    if (!spec.chroot_dir.empty()) {
        if (chroot(spec.chroot_dir.c_str()) != 0) return fail_errno("chroot " + spec.chroot_dir);
        if (chdir("/") != 0) return fail_errno("chdir /");
    }
    if (spec.keep != KeepCaps::None) {
        // Keep the permitted set across setresuid so the kept caps survive.
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return fail_errno("PR_SET_KEEPCAPS");
    }
    if (auto s = clear_bounding_set(); !s) return s;
    if (setgroups(spec.supplementary_groups.size(), spec.supplementary_groups.data()) != 0)
        return fail_errno("setgroups");
    if (setresgid(spec.gid, spec.gid, spec.gid) != 0) return fail_errno("setresgid");
    if (setresuid(spec.uid, spec.uid, spec.uid) != 0) return fail_errno("setresuid");
    if (auto s = clear_capabilities(spec.keep); !s) return s;
    if (spec.keep != KeepCaps::None && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
        return fail_errno("PR_SET_KEEPCAPS off");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("PR_SET_NO_NEW_PRIVS");
    if (spec.no_fork_not_dumpable) {
        struct rlimit none = {0, 0};
        if (setrlimit(RLIMIT_NPROC, &none) != 0) return fail_errno("setrlimit RLIMIT_NPROC");
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return fail_errno("PR_SET_DUMPABLE");
    }
    if (auto s = verify(spec); !s) {
        log::error("privilege drop did not hold: ", s.error().message);
        std::fprintf(stderr, "privilege drop did not hold: %s\n", s.error().message.c_str());
        std::abort();
    }
    return {};
}

}  // namespace pbx::privsep
