// pop3d's Maildir store: the messages of new/ and cur/ (DESIGN §6).
//
//   - Snapshot at open: every regular file in new/ and cur/ whose name does
//     not start with '.', sorted by base name (the part before ":2,"),
//     runs of digits by value: for the names local-delivery makes, that is
//     arrival order.
//   - UIDL: the base name (uidl_for), so it survives a move from new/ to cur/
//     and flag changes by other programs, and stays the same across
//     sessions. Messages are never moved or renamed by pop3d.
//   - Sizes: the CRLF size of each file. Computing it means reading the
//     file, so sizes are kept in the cache file `pillarbox-pop3.sizes` in the
//     Maildir (one "<size> <base name>" line per message; rewritten with temp
//     + rename when it changed; ignored when unreadable). A file's content
//     never changes in Maildir, so a base name's size stays true.
//   - One session at a time: flock() on `pillarbox-pop3.lock` in the
//     Maildir; a second session gets [IN-USE].
//   - commit: unlink the deleted files (found again by base name if another
//     program moved them), then fsync new/ and cur/.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "pop3d/store.hpp"

namespace pbx::pop3 {

enum class OpenError { InUse, Failed };

struct StoreOpenError {
    OpenError kind = OpenError::Failed;
    std::string message;
};

class MaildirStore final : public Store {
  public:
    static Result<std::unique_ptr<MaildirStore>, StoreOpenError> open(const std::string& maildir);

    const std::vector<MessageInfo>& messages() const override { return infos_; }
    Result<std::string> content(size_t index) override;
    Status commit(const std::vector<bool>& deleted) override;
    void release() override { lock_.reset(); }

  private:
    MaildirStore() = default;
    std::string find(size_t index) const;  // the file's current path, "" if gone
    // The base name of message `index`: paths_[index] without "new/" or
    // "cur/" and without the ":2,..." info (kept once per message, not twice).
    std::string_view base(size_t index) const;

    std::string root_;
    UniqueFd lock_;
    std::vector<MessageInfo> infos_;
    std::vector<std::string> paths_;  // "new/NAME" or "cur/NAME:2,S"
};

// Reads a whole file (regular files only, no symlinks followed).
Result<std::string> read_file_nofollow(const std::string& path);

}  // namespace pbx::pop3
