// mbox delivery (DESIGN.md §5), the way Debian's /var/mail works:
//
//   1. dotlock: create "<mbox>.lock" with O_CREAT|O_EXCL; a lock older than
//      MboxOptions::stale_dotlock (5 min) is a crashed writer's and removed.
//      Where the directory does not let the recipient create files (the
//      usual 2775 root:mail /var/mail), the dotlock is skipped and the fcntl
//      lock alone protects the file, as procmail does without setgid mail.
//   2. open O_WRONLY|O_APPEND|O_NOFOLLOW|O_CREAT (0600); the file must be a
//      regular file with one link, owned by the writing uid.
//   3. fcntl write lock on the whole file (polled until lock_timeout).
//   4. remember the length, write the "From " line and the quoted message,
//      fsync. On ANY failure: ftruncate back to the old length (and fsync),
//      so no half message is ever left for a reader.
//
// The stored form (mbox_format): "From <sender> <asctime date>\n", the
// message with CRLF turned into LF and mboxrd quoting (every line matching
// ^>*From  gets one more '>'), a final newline if missing, then one blank
// line. The null sender is written as MAILER-DAEMON.
#pragma once

#include <chrono>
#include <ctime>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/spool/sys.hpp"

namespace pbx::mailbox {

struct MboxOptions {
    std::chrono::seconds lock_timeout{30};    // both locks, each
    std::chrono::seconds stale_dotlock{300};  // Debian's convention: 5 minutes
    std::chrono::milliseconds lock_poll{200};
};

// Errno values a caller maps to "try again later" besides ENOSPC/EDQUOT.
inline constexpr int kLockTimeoutErrno = ETIMEDOUT;

// "From sender Wed Nov 25 23:51:57 2026\n" (UTC, asctime format).
std::string mbox_from_line(std::string_view sender, std::time_t when);
// mboxrd quoting and CRLF → LF; ends with exactly one extra blank line.
std::string mboxrd_quote(std::string_view message);
// From line + quoted message.
std::string mbox_format(std::string_view message, std::string_view sender, std::time_t when);

// Appends `from_line` then `body` (two writes, so tests can fail the second),
// as described above. An error's sys_errno says why (ENOSPC, EDQUOT,
// kLockTimeoutErrno, ELOOP for a symlink, ...).
Status mbox_append(const std::string& path, std::string_view from_line, std::string_view body,
                   const MboxOptions& options = {}, sys::Sys& s = sys::real());

}  // namespace pbx::mailbox
