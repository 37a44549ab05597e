// Maildir delivery (DESIGN.md §5, §6; the layout Dovecot and Courier use):
// write tmp/NAME, fsync, link it to new/NAME (never replacing a file that is
// there), unlink tmp/NAME, fsync new/. spool::atomic_write does exactly this
// with temp_dir = tmp/ and replace = false.
//
// Unique names, as Dovecot makes them:
//   <secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size>[,W=<virtual size>]
// where host has '/' written as "\057" and ':' as "\072" (':' starts the
// flags suffix, '/' would make a path), S= is the size in bytes of the
// stored file (readers use it for quota without a stat) and W= the size with
// CRLF line ends (Dovecot's "virtual size": what POP3 LIST/STAT report, so
// pop3d opening a new mailbox reads no message to learn it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
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
    std::optional<uint64_t> virtual_size;  // W=, when set
};
// The size of `content` with every LF not preceded by CR made CRLF.
uint64_t virtual_size(std::string_view content);
std::string maildir_unique_name(const UniqueParts& p);

// Creates `maildir` (and its parent, one level, e.g. the home's Maildir) with
// cur/ new/ tmp/, mode 0700, for an existing user; existing directories are
// kept as they are. Run as the recipient so everything is theirs.
Status ensure_maildir(const std::string& maildir, sys::Sys& s = sys::real());

struct MaildirDelivery {
    std::string path;  // new/NAME
};

// Stores `content` as a new message; `host` and `counter` go into the name,
// and W= when the content ends with a line end (mail that came by SMTP
// always does; otherwise POP3's size, with the CRLF it adds, would differ).
// The result names the file in new/. On failure nothing is left in new/ (a
// tmp/ leftover is removed as well).
Result<MaildirDelivery> maildir_deliver(const std::string& maildir, std::string_view content,
                                        std::string_view host, uint64_t counter,
                                        sys::Sys& s = sys::real());

}  // namespace pbx::mailbox
