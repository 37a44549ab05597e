// Start-up recovery (DESIGN §4, pillarbox-spool(5)): after a crash the spool
// may hold partial work; this decides, file by file, what it is.
//
//   incoming/*                 a transaction that never committed: removed
//                              (anything but a regular file: corrupt/)
//   queue/ and hold/ temp files an interrupted atomic_write: removed
//   queue/ID.msg + queue/ID.env  loaded (active)
//   queue/ID.msg + hold/ID.env   loaded (held)
//   a .msg without envelope, an envelope without .msg, a name that is not a
//   queue file, an envelope the strict reader rejects, an envelope whose id
//   is not its file name, a .msg whose size is not the envelope's size
//                              moved to corrupt/ (the .msg with its envelope)
//
// Nothing is ever deleted from queue/ or hold/ here: what is not loaded is
// kept in corrupt/ for the administrator.
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/layout.hpp"

namespace pbx::qm {

struct LoadedEntry {
    spool::Envelope env;
    bool held = false;
};

struct RecoveryReport {
    std::vector<LoadedEntry> entries;  // in queue ID (arrival) order
    std::vector<std::string> removed;  // spool-relative paths
    struct Moved {
        std::string from;  // spool-relative
        std::string to;    // "corrupt/NAME"
        std::string reason;
    };
    std::vector<Moved> corrupted;
    // Files that should have moved to corrupt/ or been removed but could not;
    // they stay where they were and are not loaded.
    std::vector<std::string> errors;
};

// Fails only when a directory cannot be read.
Result<RecoveryReport> recover_spool(const spool::SpoolPaths& paths,
                                     const spool::EnvelopeLimits& limits = {},
                                     sys::Sys& s = sys::real());

}  // namespace pbx::qm
