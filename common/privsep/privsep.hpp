// The one privilege drop (DESIGN §2, STYLE item 2). Every program calls it
// through the service skeleton (service.hpp), never directly, so none can skip
// or reorder it.
//
// Order: resolve the user (before any chroot) → chroot (optional) →
// setgroups → setresgid → setresuid → clear capabilities (keeping only the
// listed ones in effective/permitted, and emptying the bounding set) →
// PR_SET_NO_NEW_PRIVS → (login processes) RLIMIT_NPROC 0 and not dumpable →
// verify: real/effective/saved ids are the target, setuid(0)/setgid(0) fail,
// the capability sets are exactly the kept ones, NO_NEW_PRIVS is 1. A failed
// verification aborts the process: running with unexpected privileges is
// worse than not running.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/result.hpp"

namespace pbx::privsep {

enum class KeepCaps {
    None,
    // local-delivery's parent: may become any recipient, nothing else.
    SetuidSetgid,
};

struct DropSpec {
    // Either a user name (resolved with getpwnam before chroot) or explicit ids.
    std::string user;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    std::vector<gid_t> supplementary_groups;
    // Empty: no chroot. Otherwise chroot here and chdir("/").
    std::string chroot_dir;
    KeepCaps keep = KeepCaps::None;
    // Login processes: RLIMIT_NPROC = 0 (cannot fork) and PR_SET_DUMPABLE 0.
    bool no_fork_not_dumpable = false;
    // Refuse uid 0 / gid 0 targets (the default). Only local-delivery's parent
    // stays uid 0, holding nothing but CAP_SETUID/CAP_SETGID.
    bool allow_root = false;
};

// Resolves user names to ids; fails for an unknown user or a uid 0 target.
Result<DropSpec> resolve(DropSpec spec);

// Performs the drop described above. On success the process holds exactly
// the privileges of `spec`; any inconsistency after the drop aborts.
Status drop(const DropSpec& spec);

// Checks the current process against `spec` without changing anything; the
// text names the first mismatch. drop() calls this and aborts on failure.
Status verify(const DropSpec& spec);

}  // namespace pbx::privsep
