// The IMAP view of a Maildir++ store (DESIGN.md §6, pillarbox-maildir(5)).
//
// Layout under the Maildir++ root (PBX_MAILBOX):
//   cur/ new/ tmp/              INBOX
//   .Sent/ .a.b/ ...            folder "Sent", folder "a.b" (child of "a"),
//                               each with cur/ new/ tmp/ and maildirfolder
//   subscriptions               subscribed names, one a line
//   pillarbox-folders           marker: the special-use folders were created
// Per folder directory:
//   pillarbox-uidlist           UIDVALIDITY, UIDNEXT, uid → base name
//   pillarbox-uidlist.lock      flock()ed while the folder is synced/changed
//   dovecot-keywords            keyword names of the letters a..z in ":2,"
//
// Names are IMAP mailbox names in modified UTF-7 (RFC 3501 §5.1.3), stored
// as they are; the hierarchy delimiter is '.'. A name that could leave the
// root (containing '/', an empty component as in "..", a leading '~') or
// is not valid modified UTF-7 is refused before any path is built.
//
// Concurrency: every change of the uid list, of a message's flags (a
// rename) and every expunge happens under the folder's lock (after a fresh
// scan, except APPEND's new uid and an expunge of files where the caller
// saw them), so several sessions, local delivery (link into new/) and external
// tools (mv into cur/) can work on a folder at once. A file is identified by
// its base name (the part before ":2,"), which a flag change keeps.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::imap {

// System flags, as kept in the ":2," suffix.
enum : uint8_t {
    kFlagSeen = 1,      // S
    kFlagAnswered = 2,  // R
    kFlagFlagged = 4,   // F
    kFlagDeleted = 8,   // T
    kFlagDraft = 16,    // D
};
inline constexpr size_t kMaxKeywords = 26;  // letters a..z

// ---- pure parts (unit-tested) --------------------------------------------

struct UidList {
    uint32_t validity = 0;
    uint32_t next = 1;
    struct Entry {
        uint32_t uid;
        std::string base;
    };
    std::vector<Entry> entries;  // ascending uid
};
// nullopt (and `error`) when the text is not a valid uid list: bad header,
// uids not ascending or not below UIDNEXT, a repeated base name.
std::optional<UidList> parse_uidlist(std::string_view text, std::string& error);
std::string format_uidlist(const UidList& list);

// "base:2,FS" → base "base", flags, keyword letters; names without ":2,"
// have no flags.
struct NameInfo {
    std::string base;
    uint8_t flags = 0;
    uint32_t keywords = 0;  // bit i = letter 'a' + i
};
NameInfo parse_maildir_name(std::string_view name);
std::string maildir_name(std::string_view base, uint8_t flags, uint32_t keywords);

// Mailbox name checks and the Maildir++ directory of a name ("" = INBOX).
bool valid_mutf7(std::string_view name);
std::optional<std::string> folder_relpath(std::string_view name, std::string& error);
bool is_inbox(std::string_view name);

// LIST pattern matching: '*' any, '%' anything but the delimiter '.'.
bool list_match(std::string_view pattern, std::string_view name);

// dovecot-keywords: "N name" lines.
std::vector<std::string> parse_keywords(std::string_view text);
std::string format_keywords(const std::vector<std::string>& names);

// The per-folder cache of what FETCH needs often (pillarbox-cache): keyed by
// base name, which never changes for a message's content, so an entry stays
// valid as long as its file exists. The file carries a checksum; a file that
// does not parse or check is ignored and rebuilt, never trusted.
struct CacheEntry {
    uint64_t vsize = 0;                         // RFC822.SIZE (CRLF form)
    int64_t date = 0;                           // internal date (seconds)
    std::string envelope, body, bodystructure;  // FETCH texts
    // SEARCH: the decoded, case-folded lines of the fields the SUBJECT,
    // FROM, TO, CC and BCC keys look at (search.hpp cached_search_fields).
    std::string search_fields;
};
// Looked up by std::string_view too (no key string made per lookup).
struct CacheKeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using CacheMap = std::unordered_map<std::string, CacheEntry, CacheKeyHash, std::equal_to<>>;
std::string format_cache(const CacheMap& entries);
// The checksum on the cache file's first line (64 bits, eight bytes a step).
uint64_t cache_checksum(std::string_view text);
// nullopt when the text is not a valid cache file.
std::optional<CacheMap> parse_cache(std::string_view text);

// ---- a folder on disk ----------------------------------------------------

struct StoredMessage {
    uint32_t uid = 0;
    std::string base;
    std::string file;  // relative to the folder: "cur/NAME" or "new/NAME"
    uint8_t flags = 0;
    uint32_t keywords = 0;
};

class Folder;

// The folder's lock (flock on pillarbox-uidlist.lock), held while alive.
class FolderLock {
  public:
    static Result<FolderLock> take(const std::string& dir);
    FolderLock(FolderLock&&) = default;
    FolderLock& operator=(FolderLock&&) = default;

  private:
    explicit FolderLock(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

struct SyncResult {
    uint32_t validity = 0;
    uint32_t next = 1;
    std::vector<StoredMessage> messages;  // ascending uid
    std::vector<uint32_t> recent;         // moved from new/ to cur/ by this sync
    std::vector<std::string> moved;       // those moves: "new/X", "cur/Y", ...
    bool rebuilt = false;                 // the uid list was missing or corrupt
};

class Folder {
  public:
    explicit Folder(std::string dir) : dir_(std::move(dir)) {}
    const std::string& dir() const { return dir_; }

    // Scans new/ and cur/ under the lock, gives new files uids, forgets
    // files that are gone, moves new/ files to cur/ when `take_new`, and
    // writes the uid list when it changed.
    Result<SyncResult> sync(bool take_new);
    // The same, while the caller holds the lock.
    Result<SyncResult> sync_locked(bool take_new);

    // Sets a message's flags (rename under the lock). Returns the new file
    // (relative) or nullopt when the message is gone. `known` (relative, may
    // be empty): where the caller last saw the file; renamed from there
    // without scanning the folder unless it has moved since.
    Result<std::optional<std::string>> set_flags(const std::string& base, uint8_t flags,
                                                 uint32_t keywords, const std::string& known = {});
    // Removes the messages with these base names (under the lock); `known`:
    // their files where the caller last saw them (scanned for when gone).
    // nullopt when every one was removed where it was known: no scan, and
    // the uid list keeps their entries until the next sync forgets them;
    // else the folder as a scan after the removal found it.
    Result<std::optional<SyncResult>> expunge(const std::vector<std::string>& bases,
                                              const std::vector<std::string>& known = {});
    // Stores a message into cur/ with flags and date; returns its uid and the
    // folder's UIDVALIDITY. The uid is added to the uid list without a scan
    // of the folder (others' new files get theirs at the next sync).
    // `file`, if given, gets the new file's name ("cur/NAME").
    Result<std::pair<uint32_t, uint32_t>> append(std::string_view content, uint8_t flags,
                                                 uint32_t keywords, time_t internal_date,
                                                 std::string* file = nullptr);
    // Hard-links (COPY) a message file into this folder; returns its uid.
    Result<uint32_t> copy_in(const std::string& source_path, uint8_t flags, uint32_t keywords);

    // Keywords: the folder's names; index_of() adds a name when `create`
    // (up to 26); -1 when it does not exist or there is no room.
    std::vector<std::string> keywords();
    int keyword_index(std::string_view name, bool create);

    // The cache file (pillarbox-cache): empty when missing or invalid;
    // save_cache() writes exactly `entries`, temp + rename.
    CacheMap load_cache();
    Status save_cache(const CacheMap& entries);

  private:
    Result<std::string> new_unique_name(uint64_t size);
    std::string dir_;
};

// ---- the whole store -------------------------------------------------------

class MailStore {
  public:
    explicit MailStore(std::string root) : root_(std::move(root)) {}
    const std::string& root() const { return root_; }

    // Absolute folder directory of a valid name; nullopt + error otherwise.
    std::optional<std::string> dir_of(std::string_view name, std::string& error) const;
    bool exists(std::string_view name) const;

    // Every folder name (INBOX first), and the names of folders with
    // children missing as folders of their own.
    std::vector<std::string> list() const;

    Status create(std::string_view name);
    Status remove(std::string_view name);
    Status rename(std::string_view from, std::string_view to);

    std::vector<std::string> subscriptions() const;
    Status set_subscribed(std::string_view name, bool on);

    // "\\Sent" etc. for the special-use folders, "" otherwise.
    static std::string_view special_use(std::string_view name);
    // Creates INBOX and, once per store, the special-use folders.
    Status ensure_defaults();

  private:
    std::string root_;
};

}  // namespace pbx::imap
