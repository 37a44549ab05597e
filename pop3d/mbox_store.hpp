// pop3d's mbox store: one mbox file (/var/mail/USER, or a users-file path),
// in the format local-delivery writes (common/mailbox/mbox.hpp: "From " line,
// mboxrd quoting, one blank line after each message).
//
//   - Locked for the whole session, the way local-delivery locks for an
//     append: a dotlock "<mbox>.lock" where the directory lets the user
//     create one (refreshed every minute, keep_alive(), so it never looks
//     stale), and an fcntl write lock on the file. Either held by someone
//     else for longer than lock_wait: [IN-USE].
//   - Messages: each starts at a "From " line at the start of the file or
//     after a blank line; its content is what follows up to the blank line
//     before the next one, mboxrd-unquoted (">From " → "From ").
//   - UIDL: "M" + 32 hex digits of the SHA-256 of the "From " line and the
//     stored message, so the same message has the same id in every session
//     as long as nobody edits it; identical copies get "-2", "-3", ... in
//     file order.
//   - commit (UPDATE state), crash-safe: where the directory is writable, the
//     kept messages (byte for byte as stored) and anything appended after
//     the snapshot go to a temp file next to the mbox, which is fsynced and
//     renamed over it (under the dotlock, so no appender holds the old
//     file). Where it is not (Debian's 2775 root:mail /var/mail), the file
//     is rewritten in place under the fcntl lock through a redo journal in
//     the user's home (mbox_journal.hpp), which the next session finishes
//     after a crash; without a journal path the deletions are refused.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/unique_fd.hpp"
#include "pop3d/maildir_store.hpp"
#include "pop3d/store.hpp"

namespace pbx::pop3 {

struct MboxStoreOptions {
    std::chrono::milliseconds lock_wait{10000};
    std::chrono::seconds stale_dotlock{300};
    // false: never take a dotlock (tests of the in-place commit; as root a
    // read-only directory does not stop the dotlock).
    bool dotlock = true;
    // The redo journal of an in-place rewrite ($HOME/.pillarbox-pop3-journal);
    // empty: an mbox whose directory we cannot write keeps its deletions.
    std::string journal;
};

class MboxStore final : public Store {
  public:
    static Result<std::unique_ptr<MboxStore>, StoreOpenError> open(const std::string& path,
                                                                   MboxStoreOptions options = {});
    // What open() did about a left-over journal ("" nothing), for the log.
    const std::string& recovered() const { return recovered_; }
    ~MboxStore() override;

    const std::vector<MessageInfo>& messages() const override { return infos_; }
    Result<std::string> content(size_t index) override;
    Status commit(const std::vector<bool>& deleted) override;
    void keep_alive() override;
    void release() override;

  private:
    MboxStore() = default;
    struct Span {
        size_t start = 0;     // the "From " line
        size_t body = 0;      // after the "From " line
        size_t body_end = 0;  // before the separating blank line
        size_t end = 0;       // where the next message starts
    };
    Status commit_rename(const std::vector<bool>& deleted, const std::string& tail);
    Status commit_in_place(const std::vector<bool>& deleted, const std::string& tail);

    std::string path_;
    std::string dotlock_;  // empty: none taken
    std::string journal_;
    UniqueFd fd_;
    std::string data_;  // the snapshot
    std::vector<Span> spans_;
    std::vector<MessageInfo> infos_;
    std::string recovered_;
};

// The messages of an mbox text (exposed for tests).
struct MboxMessage {
    size_t start, body, body_end, end;
};
std::vector<MboxMessage> split_mbox(std::string_view data);
std::string mboxrd_unquote(std::string_view stored);

}  // namespace pbx::pop3
