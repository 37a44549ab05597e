// Maildir delivery (DESIGN.md §5, §6; the layout Dovecot and Courier use):
// write tmp/NAME, fsync, link it to new/NAME (never replacing a file that is
// there), unlink tmp/NAME, fsync new/. maildir_deliver_batch does this for
// several messages with one fsync of new/ for all of them.
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
#include <vector>

#include "common/result.hpp"
#include "common/spool/sys.hpp"
#include "common/spool/thread_pool.hpp"

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
// tmp/ leftover is removed as well). A batch of one (below).
Result<MaildirDelivery> maildir_deliver(const std::string& maildir, std::string_view content,
                                        std::string_view host, uint64_t counter,
                                        sys::Sys& s = sys::real());

// Group commit of several deliveries (local-delivery's workers, see
// local-delivery(8) PROCESS MODEL). Every item is written to tmp/NAME, the
// writeback of every file started and waited for (sync_file_range, a batch
// of more than one: so that one journal commit covers all the files) and
// each file fsynced (the fsyncs of a batch run at once, on the threads of
// options.pool, so that the disk can serve them with one flush), then linked to new/NAME and its
// tmp/ name removed; then every new/ directory the batch linked into is
// fsynced ONCE, for all of its items. An item succeeds only when its file
// and its new/ entry are both durable; an item that failed at any step is
// removed from new/ again (after a failed fsync of new/ too: the retry by
// the queue must not meet a copy that may or may not survive a crash; if
// that unlink fails as well, the retry makes at worst a duplicate).
struct MaildirItem {
    std::string maildir;
    std::string_view content;  // the caller keeps it alive
    std::string host;
    uint64_t counter = 0;
};
struct MaildirBatchOptions {
    // When tmp/ is missing, make the Maildir (ensure_maildir) and try once
    // more: deliveries make it only when they find it missing.
    bool create_missing = false;
    // The fsyncs of a batch of more than one run side by side on this pool's
    // threads (and the caller's); none: one after another (a sys::Sys that
    // is not thread-safe, as tests' FakeSys).
    spool::ThreadPool* pool = nullptr;
};
// One result per item, in order.
std::vector<Result<MaildirDelivery>> maildir_deliver_batch(const std::vector<MaildirItem>& items,
                                                           const MaildirBatchOptions& options = {},
                                                           sys::Sys& s = sys::real());

}  // namespace pbx::mailbox
