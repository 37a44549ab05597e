// Maildir delivery (DESIGN.md §5, §6; the layout Dovecot and Courier use):
// write tmp/NAME, fsync, link it to new/NAME (never replacing a file that is
// there), unlink tmp/NAME, fsync new/. spool::atomic_write does exactly this
// with temp_dir = tmp/ and replace = false.
//
// Unique names, as Dovecot makes them:
//   <secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size>
// where host has '/' written as "\057" and ':' as "\072" (':' starts the
// flags suffix, '/' would make a path) and S= is the size in bytes of the
// stored file (readers use it for quota without a stat).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/spool/sys.hpp"

namespace pbx::mailbox {

// '/' → "\057", ':' → "\072" (Dovecot's escaping of the host name).
std::string escape_maildir_host(std::string_view host);

struct UniqueParts {
    int64_t secs = 0;
    long usecs = 0;
    pid_t pid = 0;
    uint64_t counter = 0;
    std::string host;  // unescaped
    uint64_t size = 0;
};
std::string maildir_unique_name(const UniqueParts& p);

// Creates `maildir` (and its parent, one level, e.g. the home's Maildir) with
// cur/ new/ tmp/, mode 0700, for an existing user; existing directories are
// kept as they are. Run as the recipient so everything is theirs.
Status ensure_maildir(const std::string& maildir, sys::Sys& s = sys::real());

struct MaildirDelivery {
    std::string path;  // new/NAME
};

// Stores `content` as a new message; `host` and `counter` go into the name.
// The result names the file in new/. On failure nothing is left in new/ (a
// tmp/ leftover is removed as well).
Result<MaildirDelivery> maildir_deliver(const std::string& maildir, std::string_view content,
                                        std::string_view host, uint64_t counter,
                                        sys::Sys& s = sys::real());

}  // namespace pbx::mailbox
