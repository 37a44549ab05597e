// The imapd session: IMAP4rev1 (RFC 3501) in the authenticated and selected
// states, with the extensions imapd(8) lists, over a Maildir++ store.
//
// It is a state machine over bytes: feed() takes client bytes, output
// accumulates in take_output(); the caller (imapd/main.cpp, or a test) moves
// the bytes. The session does its own file-system work (the store) but no
// network I/O and no waiting: IDLE and big FETCHes are resumed by the caller
// (changed(), resume()). It never throws.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "imapd/parser.hpp"
#include "imapd/store.hpp"

namespace pbx::imap {

struct SessionConfig {
    std::string user;
    std::string root;       // the Maildir++ root (PBX_MAILBOX)
    std::string login_tag;  // tag to answer OK to; empty: "* PREAUTH" greeting
    uint64_t append_limit = 50u << 20;
    size_t output_high = 256 * 1024;  // a FETCH pauses above this much queued output
    // Called with the folder directory before a SELECT reads it ("" when
    // nothing is selected any more); true: its new/ and cur/ are watched
    // (inotify) and every change there comes through fs_event() before the
    // next command. Without it (or when it fails) the session looks at the
    // directories' mtimes before every command instead.
    std::function<bool(const std::string& dir)> watch;
};

// The capabilities of a logged-in session.
std::string session_capabilities(uint64_t append_limit);

class Session {
  public:
    explicit Session(SessionConfig cfg);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Prepares the store and writes the answer to the login (or PREAUTH).
    void start();
    // Consumes client bytes up to where the session must wait (busy(), done()).
    size_t feed(std::string_view in);
    // Work paused for the output to drain (a long FETCH): call resume() once
    // the queued output went out.
    bool busy() const;
    void resume();
    // The selected folder may have changed on disk (inotify, timer).
    void changed();
    // A change in the watched folder: "new/NAME" or "cur/NAME", "" when
    // unknown (queue overflow). Changes the session made itself are known
    // and cost no rescan; any other one does at the next command.
    void fs_event(std::string_view rel);
    // Autologout (RFC 3501 §5.4) and SIGTERM: "* BYE", then done().
    void autologout();
    void shutdown();

    bool done() const { return done_; }
    bool idling() const { return idle_; }
    std::string take_output();
    size_t output_size() const { return out_.size(); }
    // The selected folder's directory ("" when none): watch its new/ and cur/.
    std::string selected_dir() const;

  private:
    struct Msg;
    struct Selected;
    struct FetchItem;
    struct FetchJob;

    void command(const Command& c);
    void dispatch(const Command& c, bool uid);
    void tagged(const std::string& tag, std::string_view status, std::string_view text);
    void untagged(std::string_view line);
    void finish(const std::string& tag, std::string_view text, bool allow_expunge = true);
    void no(const std::string& tag, std::string_view text) { tagged(tag, "NO", text); }
    void bad(const std::string& tag, std::string_view text) { tagged(tag, "BAD", text); }
    bool need_selected(const Command& c);

    // Commands.
    void cmd_select(const Command& c, bool readonly);
    void cmd_create(const Command& c);
    void cmd_delete(const Command& c);
    void cmd_rename(const Command& c);
    void cmd_subscribe(const Command& c, bool on);
    void cmd_list(const Command& c, bool lsub);
    void cmd_status(const Command& c);
    void cmd_append(const Command& c);
    void cmd_idle(const Command& c);
    void cmd_close(const Command& c, bool expunge);
    void cmd_expunge(const Command& c, const std::vector<Value>& args, bool uid);
    void cmd_search(const Command& c, const std::vector<Value>& args, bool uid);
    void cmd_fetch(const Command& c, const std::vector<Value>& args, bool uid);
    void cmd_store(const Command& c, const std::vector<Value>& args, bool uid);
    void cmd_copy(const Command& c, const std::vector<Value>& args, bool uid, bool move);
    void cmd_enable(const Command& c);

    // The selected folder.
    // given: a sync the store did anyway (EXPUNGE), used instead of another.
    void sync_view(bool allow_expunge, bool force = false, Result<SyncResult>* given = nullptr);
    // "* N EXPUNGE" for the messages of the view marked gone, which leave it.
    void report_expunged();
    bool dirs_changed();
    void unselect();
    void expect(const std::string& rel);
    std::optional<std::vector<size_t>> resolve_set(const std::string& tag, const Value* v,
                                                   bool uid);
    std::string flags_string(const Msg& m) const;
    std::string status_items(const std::string& name, const std::vector<std::string>& items,
                             std::string& error);
    const std::string* load(size_t index);  // the CRLF text, cached; nullptr if gone
    void run_fetch();
    bool fetch_one(size_t index);
    bool parse_flags(const Value& v, uint8_t& flags, std::vector<std::string>& keywords,
                     std::string& error);
    std::string mailbox_arg(const Value& v) const;
    uint64_t message_size(size_t index);
    time_t internal_date(size_t index);
    bool set_message_flags(size_t index, uint8_t flags, uint32_t keywords);
    // The cached FETCH data of a message, computed (and the cache marked for
    // saving) when missing; nullptr when the message is gone.
    const CacheEntry* cache_entry(size_t index);
    void need_cache();
    void save_cache();

    SessionConfig cfg_;
    MailStore store_;
    CommandReader reader_;
    std::string out_;
    bool done_ = false;
    bool idle_ = false;
    std::string idle_tag_;
    std::unique_ptr<Selected> sel_;
    // With cfg_.watch: the selected folder changed since the last scan by
    // someone else; expected_: changes of our own not yet seen as events.
    bool trim_ = false;  // malloc_trim() once the command is done
    bool watching_ = false;
    bool dirty_ = false;
    std::multiset<std::string> expected_;
    std::unique_ptr<FetchJob> job_;
};

}  // namespace pbx::imap
