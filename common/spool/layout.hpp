// The spool directory (DESIGN.md §4, pillarbox-spool(5)):
//
//   spool_dir/   pbx-queue:pbx-drop 0710  (the drop group may only traverse)
//     incoming/  pbx-queue 0700   incoming/ID while a message arrives
//     queue/     pbx-queue 0700   ID.msg + ID.env, the committed messages
//     hold/      pbx-queue 0700   ID.env of messages held by the administrator
//     corrupt/   pbx-queue 0700   whatever could not be parsed; never deleted
//     maildrop/  pbx-queue:pbx-drop 1730  written by the sendmail drop helper
//
// DESIGN.md asks for a 0700 spool directory; 0710 with group pbx-drop is the
// least that lets the setgid drop helper reach maildrop/ (Postfix's postdrop
// needs the same), and still lets nobody else in or anyone list it.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/spool/queue_id.hpp"
#include "common/spool/sys.hpp"

namespace pbx::spool {

inline constexpr std::string_view kMessageSuffix = ".msg";
inline constexpr std::string_view kEnvelopeSuffix = ".env";

inline constexpr mode_t kSpoolDirMode = 0710;
inline constexpr mode_t kPrivateDirMode = 0700;  // incoming, queue, hold, corrupt
inline constexpr mode_t kMaildropDirMode = 01730;
inline constexpr mode_t kMessageFileMode = 0600;
inline constexpr mode_t kEnvelopeFileMode = 0600;
// Readable by the queue-manager, which is neither the owner (the submitting
// user) nor in the group; nobody else can reach the directory.
inline constexpr mode_t kMaildropFileMode = 0444;

struct SpoolPaths {
    // `spool_dir` as configured ("/var/spool/pillarbox"), or "." / "/" inside
    // the queue-manager's chroot.
    explicit SpoolPaths(std::string spool_dir);

    std::string root;
    std::string incoming;
    std::string queue;
    std::string hold;
    std::string corrupt;
    std::string maildrop;

    std::string incoming_file(const QueueId& id) const;       // incoming/ID
    std::string message_file(const QueueId& id) const;        // queue/ID.msg
    std::string envelope_file(const QueueId& id) const;       // queue/ID.env
    std::string held_envelope_file(const QueueId& id) const;  // hold/ID.env
    std::string maildrop_file(const QueueId& id) const;       // maildrop/ID
};

struct SpoolOwner {
    uid_t uid;       // pbx-queue
    gid_t gid;       // pbx-queue's group
    gid_t drop_gid;  // pbx-drop
};

// Creates the missing directories and sets the owner and mode of all of them
// (an existing directory with a wrong mode or owner is corrected; needs root
// unless the owner is the caller). A symlink or a non-directory in place of
// one of them is an error. Runs as root before the queue-manager starts.
Status ensure_layout(const SpoolPaths& paths, const SpoolOwner& owner, sys::Sys& s = sys::real());

// What queue/ and hold/ hold. Paths are relative to the spool directory
// ("queue/ID.msg"). Lists are sorted (IDs in arrival order).
struct QueueScan {
    std::vector<QueueId> active;  // queue/ID.msg + queue/ID.env
    std::vector<QueueId> held;    // queue/ID.msg + hold/ID.env
    // A message without any envelope, an envelope without its message, or a
    // hold/ID.env shadowed by queue/ID.env. Recovery moves these to corrupt/.
    std::vector<std::string> orphans;
    // "NAME.tmp.PID.N": an atomic_write interrupted by a crash; removable.
    std::vector<std::string> temp_files;
    // Anything else: names that are not ID.msg / ID.env, or not regular files.
    std::vector<std::string> invalid;
};

Result<QueueScan> scan_queue(const SpoolPaths& paths);

// What a flat directory (incoming/, maildrop/) holds, names only.
struct DirScan {
    std::vector<QueueId> ids;             // regular files named exactly ID
    std::vector<std::string> temp_files;  // atomic_write leftovers
    std::vector<std::string> invalid;     // anything else
};

Result<DirScan> scan_flat_dir(const std::string& dir);

// Moves spool-relative `rel_path` (e.g. "queue/ID.msg") to corrupt/, under
// its base name or, if that is taken, NAME.1, NAME.2, ... (never replacing a
// file), then syncs both directories. Works for any file type (a stray
// directory in queue/ too). Returns the new spool-relative path.
Result<std::string> move_to_corrupt(const SpoolPaths& paths, const std::string& rel_path,
                                    sys::Sys& s = sys::real());

}  // namespace pbx::spool
