// The crash-safe in-place rewrite of an mbox file (pop3d's UPDATE state on
// Debian's 2775 root:mail /var/mail, where the user may not create a temp
// file or a dotlock next to the mailbox, so there is nothing to rename).
//
// A redo journal in a directory of the user's (pop3d: $HOME) makes it
// atomic: before the mbox is touched, the journal holds the new bytes from
// the first deleted message on, with the file's identity and size, and is
// durable (written to "<journal>.tmp", fsynced, renamed, directory fsynced).
// Then those bytes are written over the mbox, fsynced, the file is
// truncated, fsynced, and the journal removed. The next session that locks
// the mbox finds a left-over journal and does the rewrite again from it
// (mbox_recover), which gives the same result however far the first one
// got. Mail appended after a crash, before the recovery (local-delivery
// holds only the fcntl lock, which the crash released), is kept: a hash of
// the bytes that the truncate would have cut off tells whether the truncate
// happened, and so where the appended mail starts.
//
// The journal file (text header, then the data):
//   pillarbox-mbox-journal 1
//   device <st_dev of the mbox>
//   inode <st_ino>
//   offset <X: where the first deleted message started>
//   old-size <S: the file's size when the rewrite began>
//   length <L: bytes of data>
//   stale-sha256 <hex of the bytes [X+L, S) before the rewrite>
//   data-sha256 <hex of the data>
//   <empty line>
//   <data>
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::pop3 {

// All of `data` at `offset` (pwrite, EINTR and short writes handled).
Status pwrite_all(int fd, std::string_view data, uint64_t offset);

struct MboxRewrite {
    uint64_t offset = 0;    // X
    uint64_t old_size = 0;  // S; the data must be shorter than S - X
    std::string data;       // what belongs at X from now on
};

// Rewrites the mbox open (and fcntl-locked) at `fd` as described above. An
// error before the journal is durable leaves the mbox untouched; after it,
// the next mbox_recover finishes the job.
Status mbox_rewrite(int fd, const std::string& journal_path, const MboxRewrite& rw);

// Step 1 of mbox_rewrite alone: the journal, durable, the mbox untouched
// (for tests that stop there, as a crash would).
Status mbox_write_journal(int fd, const std::string& journal_path, const MboxRewrite& rw);

// Looks for a left-over journal at journal_path and, when it is one of the
// file at `fd` (same device and inode), finishes that rewrite and removes
// it. Returns what it did, for the log ("" when there was nothing to do).
// A journal of another file (the mbox was replaced since) is removed; a
// damaged one is an error (the mbox may be half rewritten: an
// administrator must look).
Result<std::string> mbox_recover(int fd, const std::string& journal_path);

}  // namespace pbx::pop3
