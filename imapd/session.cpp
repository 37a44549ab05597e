#include "imapd/session.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <utility>

#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "imapd/mime.hpp"
#include "imapd/search.hpp"

namespace pbx::imap {

namespace {

constexpr std::string_view kSystemFlags = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
constexpr size_t kMaxMessageRead = 1u << 30;

struct FlagName {
    std::string_view name;
    uint8_t bit;
};
constexpr FlagName kFlagNames[] = {
    {"\\Seen", kFlagSeen},       {"\\Answered", kFlagAnswered}, {"\\Flagged", kFlagFlagged},
    {"\\Deleted", kFlagDeleted}, {"\\Draft", kFlagDraft},
};

bool valid_keyword(std::string_view k) {
    if (k.empty() || k.size() > 100 || k[0] == '\\') return false;
    for (unsigned char c : k)
        if (c <= 0x20 || c >= 0x7f ||
            std::string_view("(){%*\"\\]").find(static_cast<char>(c)) != std::string_view::npos)
            return false;
    return true;
}

std::string imap_datetime(time_t t) {
    struct tm tm {};
    gmtime_r(&t, &tm);
    static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char buf[64];
    std::snprintf(buf, sizeof buf, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
                  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::optional<std::string> read_message(const std::string& path, bool& missing) {
    missing = false;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        missing = errno == ENOENT;
        return std::nullopt;
    }
    std::string out;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0)
        out.reserve(std::min<size_t>(static_cast<size_t>(st.st_size), kMaxMessageRead));
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > kMaxMessageRead) break;
    }
    ::close(fd);
    return out;
}

// The header section of a message file, up to and including the empty line
// (all of it when there is none), read without the body.
std::optional<std::string> read_header(const std::string& path, bool& missing) {
    missing = false;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        missing = errno == ENOENT;
        return std::nullopt;
    }
    std::string out;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t from = out.size() < 2 ? 0 : out.size() - 2;
        out.append(buf, static_cast<size_t>(n));
        size_t a = out.find("\n\n", from), b = out.find("\n\r\n", from);
        size_t end =
            std::min(a == std::string::npos ? a : a + 2, b == std::string::npos ? b : b + 3);
        if (end != std::string::npos) {
            out.resize(end);
            break;
        }
        if (out.size() > kMaxMessageRead) break;
    }
    return out;
}

// ",W=<n>" in a Maildir base name: the CRLF size (Dovecot's convention).
std::optional<uint64_t> name_vsize(std::string_view base) {
    size_t w = base.find(",W=");
    if (w == std::string_view::npos) return std::nullopt;
    uint64_t v = 0;
    size_t i = w + 3;
    if (i >= base.size()) return std::nullopt;
    for (; i < base.size() && base[i] >= '0' && base[i] <= '9'; ++i)
        v = v * 10 + static_cast<uint64_t>(base[i] - '0');
    return v;
}

}  // namespace

std::string session_capabilities(uint64_t append_limit) {
    return "IMAP4rev1 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN "
           "SPECIAL-USE LIST-EXTENDED LIST-STATUS APPENDLIMIT=" +
           std::to_string(append_limit);
}

// One message of the selected folder: 64 bytes and one string (5,000
// messages: ~0.5 MB). The base name is the file name's part before ":2,".
struct Session::Msg {
    std::string file;  // relative to the folder: "cur/BASE:2,FLAGS"
    int64_t vsize = -1;
    time_t date = 0;
    uint32_t uid = 0;
    uint32_t keywords = 0;
    uint8_t flags = 0;
    bool recent = false;
    bool gone = false;  // expunged elsewhere, not yet reported
    bool have_date = false;

    std::string_view base() const {
        std::string_view n(file);
        n.remove_prefix(std::min(n.size(), n.find('/') + 1));
        size_t c = n.find(":2,");
        return n.substr(0, c != std::string_view::npos ? c : n.find(':'));
    }
};

struct Session::Selected {
    std::string name;
    Folder folder;
    bool readonly = false;
    uint32_t validity = 0;
    uint32_t uidnext = 1;
    std::vector<Msg> msgs;
    std::vector<std::string> keyword_names;
    size_t recent_count = 0;
    // dirs_changed(): the state of new/ and cur/ at the last sync.
    struct timespec new_mtime {
    }, cur_mtime{};
    time_t last_sync = 0;
    // The last message read (FETCH of several items, SEARCH).
    uint32_t cached_uid = 0;
    std::string cached_text;
    // pillarbox-cache: FETCH data by base name, read at the first FETCH
    // that needs it (a SELECT does not).
    CacheMap cache;
    bool cache_loaded = false;
    bool cache_dirty = false;

    explicit Selected(std::string dir) : folder(std::move(dir)) {}
};

struct Session::FetchItem {
    enum class Kind {
        Flags,
        InternalDate,
        Size,
        Envelope,
        Body,
        BodyStructure,
        Uid,
        Rfc822,
        Rfc822Header,
        Rfc822Text,
        Section
    } kind;
    std::string section;  // Section: between the brackets
    bool peek = false;
    bool partial = false;
    uint64_t origin = 0, count = 0;
};

struct Session::FetchJob {
    std::string tag;
    bool uid = false;
    std::vector<FetchItem> items;
    std::vector<size_t> indexes;
    size_t next = 0;
    bool gone = false;
};

Session::Session(SessionConfig cfg) : cfg_(std::move(cfg)), store_(cfg_.root) {
    Limits l;
    l.max_append_literal = cfg_.append_limit;
    l.max_command = cfg_.append_limit + 1024 * 1024;
    reader_.set_limits(l);
}

Session::~Session() {
    save_cache();
}

std::string Session::take_output() {
    std::string s;
    s.swap(out_);
    return s;
}

std::string Session::selected_dir() const {
    return sel_ ? sel_->folder.dir() : std::string();
}

void Session::untagged(std::string_view line) {
    out_ += "* ";
    out_ += line;
    out_ += "\r\n";
}

void Session::tagged(const std::string& tag, std::string_view status, std::string_view text) {
    out_ += tag;
    out_ += ' ';
    out_ += status;
    out_ += ' ';
    out_ += text;
    out_ += "\r\n";
}

void Session::finish(const std::string& tag, std::string_view text, bool allow_expunge) {
    sync_view(allow_expunge);
    save_cache();
    tagged(tag, "OK", text);
}

void Session::save_cache() {
    if (!sel_ || !sel_->cache_dirty) return;
    sel_->cache_dirty = false;
    // Only entries of messages that still exist.
    std::set<std::string_view> live;
    for (const auto& m : sel_->msgs) live.insert(m.base());
    for (auto it = sel_->cache.begin(); it != sel_->cache.end();) {
        if (!live.count(it->first))
            it = sel_->cache.erase(it);
        else
            ++it;
    }
    if (auto st = sel_->folder.save_cache(sel_->cache); !st)
        log::warn(sel_->folder.dir(), ": cannot write the cache: ", st.error().message);
}

void Session::need_cache() {
    if (sel_->cache_loaded) return;
    sel_->cache = sel_->folder.load_cache();
    sel_->cache_loaded = true;
}

const CacheEntry* Session::cache_entry(size_t index) {
    need_cache();
    Msg& m = sel_->msgs[index];
    auto it = sel_->cache.find(m.base());
    if (it != sel_->cache.end()) return &it->second;
    std::string base(m.base());
    const std::string* text = load(index);
    if (!text) return nullptr;
    MimePart mime = parse_mime(*text);
    CacheEntry e;
    e.vsize = text->size();
    e.date = static_cast<int64_t>(internal_date(index));
    e.envelope = envelope(*text, mime);
    e.body = bodystructure(*text, mime, false);
    e.bodystructure = bodystructure(*text, mime, true);
    e.search_fields = cached_search_fields(*text, mime);
    sel_->cache_dirty = true;
    return &sel_->cache.emplace(std::move(base), std::move(e)).first->second;
}

void Session::start() {
    if (auto st = store_.ensure_defaults(); !st)
        log::warn("user ", cfg_.user, ": cannot prepare the mail store: ", st.error().message);
    std::string caps = session_capabilities(cfg_.append_limit);
    if (cfg_.login_tag.empty())
        untagged("PREAUTH [CAPABILITY " + caps + "] Logged in as " + cfg_.user);
    else
        tagged(cfg_.login_tag, "OK", "[CAPABILITY " + caps + "] Logged in");
}

void Session::autologout() {
    if (done_) return;
    untagged("BYE Autologout; idle for too long");
    done_ = true;
}

void Session::shutdown() {
    if (done_) return;
    untagged("BYE Server shutting down");
    done_ = true;
}

bool Session::busy() const {
    return job_ != nullptr;
}

void Session::resume() {
    if (job_) run_fetch();
}

void Session::changed() {
    if (idle_ && sel_) sync_view(true);
}

void Session::fs_event(std::string_view rel) {
    if (!watching_) return;
    if (!rel.empty()) {
        auto it = expected_.find(std::string(rel));
        if (it != expected_.end()) {
            expected_.erase(it);
            return;
        }
    }
    dirty_ = true;
}

void Session::expect(const std::string& rel) {
    if (!watching_) return;
    // Bounded: events that never came (a failed operation) must not pile up.
    if (expected_.size() >= 4096) {
        expected_.clear();
        dirty_ = true;
    }
    expected_.insert(rel);
}

void Session::unselect() {
    sel_.reset();
    if (watching_ && cfg_.watch) cfg_.watch(std::string());
    watching_ = false;
    dirty_ = false;
    expected_.clear();
}

size_t Session::feed(std::string_view in) {
    size_t used = 0;
    while (used < in.size() && !done_ && !job_) {
        if (idle_) {
            size_t lf = in.find('\n', used);
            if (lf == std::string_view::npos) {
                if (in.size() - used > 1024) {
                    idle_ = false;
                    bad(idle_tag_, "Expected DONE");
                    return in.size();
                }
                return used;
            }
            std::string_view line = in.substr(used, lf - used);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            used = lf + 1;
            idle_ = false;
            if (iequals(line, "DONE"))
                finish(idle_tag_, "IDLE terminated");
            else
                bad(idle_tag_, "Expected DONE");
            continue;
        }
        Event ev;
        used += reader_.feed(in.substr(used), ev);
        switch (ev.kind) {
            case Event::Kind::None:
                return used;
            case Event::Kind::Continue:
                out_ += "+ Ready for literal data\r\n";
                break;
            case Event::Kind::Error: {
                std::string text = ev.code.empty() ? ev.text : "[" + ev.code + "] " + ev.text;
                tagged(ev.tag, ev.reply_no ? "NO" : "BAD", text);
                break;
            }
            case Event::Kind::Command:
                command(ev.command);
                if (trim_) {
                    // After a SELECT: the scan's lists are freed now, but glibc
                    // keeps their pages; give them back (a session may idle
                    // for long with what it has after a SELECT).
                    trim_ = false;
                    ::malloc_trim(0);
                }
                break;
        }
    }
    return used;
}

bool Session::need_selected(const Command& c) {
    if (sel_) return true;
    bad(c.tag, "No mailbox selected");
    return false;
}

std::string Session::mailbox_arg(const Value& v) const {
    if (is_inbox(v.text)) return "INBOX";
    return v.text;
}

void Session::command(const Command& c) {
    const std::string& n = c.name;
    if (n == "UID") {
        if (!need_selected(c)) return;
        if (c.args.empty() || !c.args[0].is_atom()) {
            bad(c.tag, "UID needs a command");
            return;
        }
        std::string sub = upper(c.args[0].text);
        std::vector<Value> rest(c.args.begin() + 1, c.args.end());
        if (sub == "FETCH")
            cmd_fetch(c, rest, true);
        else if (sub == "STORE")
            cmd_store(c, rest, true);
        else if (sub == "SEARCH")
            cmd_search(c, rest, true);
        else if (sub == "COPY")
            cmd_copy(c, rest, true, false);
        else if (sub == "MOVE")
            cmd_copy(c, rest, true, true);
        else if (sub == "EXPUNGE")
            cmd_expunge(c, rest, true);
        else
            bad(c.tag, "Unknown UID command " + sub);
        return;
    }
    dispatch(c, false);
}

void Session::dispatch(const Command& c, bool) {
    const std::string& n = c.name;
    auto noargs = [&] {
        if (c.args.empty()) return true;
        bad(c.tag, n + " takes no arguments");
        return false;
    };
    if (n == "CAPABILITY") {
        if (!noargs()) return;
        untagged("CAPABILITY " + session_capabilities(cfg_.append_limit));
        finish(c.tag, "Capability completed");
    } else if (n == "NOOP") {
        if (!noargs()) return;
        sync_view(true, !watching_);  // watched: every change is known
        tagged(c.tag, "OK", "NOOP completed");
    } else if (n == "CHECK") {
        if (!noargs() || !need_selected(c)) return;
        sync_view(true, !watching_);
        tagged(c.tag, "OK", "CHECK completed");
    } else if (n == "LOGOUT") {
        if (!noargs()) return;
        untagged("BYE Logging out");
        tagged(c.tag, "OK", "Logout completed");
        done_ = true;
    } else if (n == "ID") {
        untagged("ID (\"name\" \"Pillarbox\" \"version\" \"" + std::string("0.1") + "\")");
        finish(c.tag, "ID completed");
    } else if (n == "NAMESPACE") {
        if (!noargs()) return;
        untagged("NAMESPACE ((\"\" \".\")) NIL NIL");
        finish(c.tag, "NAMESPACE completed");
    } else if (n == "ENABLE") {
        cmd_enable(c);
    } else if (n == "SELECT" || n == "EXAMINE") {
        cmd_select(c, n == "EXAMINE");
    } else if (n == "CREATE") {
        cmd_create(c);
    } else if (n == "DELETE") {
        cmd_delete(c);
    } else if (n == "RENAME") {
        cmd_rename(c);
    } else if (n == "SUBSCRIBE" || n == "UNSUBSCRIBE") {
        cmd_subscribe(c, n == "SUBSCRIBE");
    } else if (n == "LIST" || n == "LSUB") {
        cmd_list(c, n == "LSUB");
    } else if (n == "STATUS") {
        cmd_status(c);
    } else if (n == "APPEND") {
        cmd_append(c);
    } else if (n == "IDLE") {
        cmd_idle(c);
    } else if (n == "CLOSE" || n == "UNSELECT") {
        if (!noargs() || !need_selected(c)) return;
        cmd_close(c, n == "CLOSE");
    } else if (n == "EXPUNGE") {
        if (!noargs() || !need_selected(c)) return;
        cmd_expunge(c, c.args, false);
    } else if (n == "SEARCH") {
        if (!need_selected(c)) return;
        cmd_search(c, c.args, false);
    } else if (n == "FETCH") {
        if (!need_selected(c)) return;
        cmd_fetch(c, c.args, false);
    } else if (n == "STORE") {
        if (!need_selected(c)) return;
        cmd_store(c, c.args, false);
    } else if (n == "COPY" || n == "MOVE") {
        if (!need_selected(c)) return;
        cmd_copy(c, c.args, false, n == "MOVE");
    } else if (n == "LOGIN" || n == "AUTHENTICATE") {
        bad(c.tag, "Already logged in");
    } else if (n == "STARTTLS") {
        bad(c.tag, "TLS is negotiated before login");
    } else {
        bad(c.tag, "Unknown command " + n);
    }
}

// ---- the selected folder -------------------------------------------------

bool Session::dirs_changed() {
    if (watching_) return dirty_;
    struct stat a {
    }, b{};
    const std::string& d = sel_->folder.dir();
    if (::stat((d + "/new").c_str(), &a) != 0 || ::stat((d + "/cur").c_str(), &b) != 0) return true;
    auto same = [](const timespec& x, const timespec& y) {
        return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec;
    };
    // File system time stamps are coarse: a change within the same tick as
    // the last sync would not show, so recent ones are always looked at.
    time_t now = ::time(nullptr);
    bool recent =
        now - sel_->last_sync < 2 || now - a.st_mtim.tv_sec < 2 || now - b.st_mtim.tv_sec < 2;
    bool changed = !same(a.st_mtim, sel_->new_mtime) || !same(b.st_mtim, sel_->cur_mtime);
    sel_->new_mtime = a.st_mtim;
    sel_->cur_mtime = b.st_mtim;
    return changed || recent;
}

void Session::sync_view(bool allow_expunge, bool force, Result<SyncResult>* given) {
    if (!sel_ || done_) return;
    bool pending_gone = allow_expunge && std::any_of(sel_->msgs.begin(), sel_->msgs.end(),
                                                     [](const Msg& m) { return m.gone; });
    if (!given && !dirs_changed() && !force && !pending_gone) return;
    dirty_ = false;  // what changes from here on comes as events
    auto r = given ? std::move(*given) : sel_->folder.sync(!sel_->readonly);
    if (!r) {
        log::warn(sel_->folder.dir(), ": sync failed: ", r.error().message);
        dirty_ = true;
        return;
    }
    for (const auto& f : r->moved) expect(f);
    sel_->last_sync = ::time(nullptr);
    if (r->validity != sel_->validity) {
        untagged("BYE The mailbox's UIDVALIDITY changed; please reconnect");
        done_ = true;
        return;
    }
    sel_->keyword_names = sel_->folder.keywords();
    std::set<uint32_t> recent(r->recent.begin(), r->recent.end());
    std::vector<size_t> flag_changes;
    size_t j = 0;
    auto& msgs = sel_->msgs;
    const auto& disk = r->messages;
    for (size_t i = 0; i < msgs.size(); ++i) {
        while (j < disk.size() && disk[j].uid < msgs[i].uid) ++j;
        if (j < disk.size() && disk[j].uid == msgs[i].uid) {
            Msg& m = msgs[i];
            m.file = disk[j].file;
            if (m.flags != disk[j].flags || m.keywords != disk[j].keywords) {
                m.flags = disk[j].flags;
                m.keywords = disk[j].keywords;
                if (!m.gone) flag_changes.push_back(m.uid);
            }
        } else {
            msgs[i].gone = true;
        }
    }
    if (allow_expunge) report_expunged();
    size_t before = msgs.size();
    uint32_t last = msgs.empty() ? 0 : msgs.back().uid;
    bool new_recent = false;
    for (const auto& s : disk) {
        if (s.uid <= last) continue;
        Msg m;
        m.uid = s.uid;
        m.file = s.file;
        m.flags = s.flags;
        m.keywords = s.keywords;
        m.recent = recent.count(s.uid) > 0;
        if (m.recent) {
            ++sel_->recent_count;
            new_recent = true;
        }
        msgs.push_back(std::move(m));
    }
    sel_->uidnext = r->next;
    for (uint32_t uid : flag_changes) {
        auto it = std::lower_bound(msgs.begin(), msgs.end(), uid,
                                   [](const Msg& m, uint32_t u) { return m.uid < u; });
        if (it == msgs.end() || it->uid != uid) continue;
        size_t seq = static_cast<size_t>(it - msgs.begin()) + 1;
        untagged(std::to_string(seq) + " FETCH (UID " + std::to_string(uid) + " FLAGS " +
                 flags_string(*it) + ")");
    }
    if (msgs.size() != before) untagged(std::to_string(msgs.size()) + " EXISTS");
    if (msgs.size() != before || new_recent)
        untagged(std::to_string(sel_->recent_count) + " RECENT");
}

void Session::report_expunged() {
    auto& msgs = sel_->msgs;
    for (size_t i = msgs.size(); i-- > 0;) {
        if (!msgs[i].gone) continue;
        if (msgs[i].recent) --sel_->recent_count;
        untagged(std::to_string(i + 1) + " EXPUNGE");
        msgs.erase(msgs.begin() + static_cast<long>(i));
    }
}

std::string Session::flags_string(const Msg& m) const {
    std::string s = "(";
    auto add = [&](std::string_view f) {
        if (s.size() > 1) s += ' ';
        s += f;
    };
    for (const auto& f : kFlagNames)
        if (m.flags & f.bit) add(f.name);
    for (size_t i = 0; i < kMaxKeywords && sel_; ++i)
        if ((m.keywords & (1u << i)) && i < sel_->keyword_names.size() &&
            !sel_->keyword_names[i].empty())
            add(sel_->keyword_names[i]);
    if (m.recent) add("\\Recent");
    return s + ")";
}

std::optional<std::vector<size_t>> Session::resolve_set(const std::string& tag, const Value* v,
                                                        bool uid) {
    if (!v || !v->is_atom()) {
        bad(tag, "Missing message set");
        return std::nullopt;
    }
    std::optional<SequenceSet> set;
    std::vector<size_t> out;
    auto& msgs = sel_->msgs;
    if (v->text == "$") {
        bad(tag, "No saved search result ($)");
        return std::nullopt;
    }
    set = parse_sequence_set(v->text);
    if (!set) {
        bad(tag, "Invalid message set " + v->text);
        return std::nullopt;
    }
    if (uid) {
        uint32_t max_uid = msgs.empty() ? 0 : msgs.back().uid;
        for (size_t i = 0; i < msgs.size(); ++i)
            if (set->contains(msgs[i].uid, max_uid)) out.push_back(i);
        return out;
    }
    uint32_t n = static_cast<uint32_t>(msgs.size());
    for (const auto& r : set->ranges) {
        if ((r.lo != 0 && r.lo > n) || (r.hi != 0 && r.hi > n) || n == 0) {
            bad(tag, "Invalid message sequence number");
            return std::nullopt;
        }
    }
    for (size_t i = 0; i < msgs.size(); ++i)
        if (set->contains(static_cast<uint32_t>(i + 1), n)) out.push_back(i);
    return out;
}

const std::string* Session::load(size_t index) {
    Msg& m = sel_->msgs[index];
    if (sel_->cached_uid == m.uid && m.uid != 0) return &sel_->cached_text;
    for (int attempt = 0; attempt < 2; ++attempt) {
        bool missing = false;
        auto text = read_message(sel_->folder.dir() + "/" + m.file, missing);
        if (text) {
            sel_->cached_uid = m.uid;
            sel_->cached_text = to_crlf(*text);
            if (m.vsize < 0) m.vsize = static_cast<int64_t>(sel_->cached_text.size());
            return &sel_->cached_text;
        }
        if (!missing) break;
        // Renamed by another session (flags): find its new name.
        auto r = sel_->folder.sync(false);
        if (!r) break;
        bool found = false;
        for (const auto& s : r->messages)
            if (s.uid == m.uid) {
                m.file = s.file;
                found = true;
            }
        if (!found) {
            m.gone = true;
            break;
        }
    }
    return nullptr;
}

uint64_t Session::message_size(size_t index) {
    Msg& m = sel_->msgs[index];
    if (m.vsize >= 0) return static_cast<uint64_t>(m.vsize);
    if (auto w = name_vsize(m.base())) {
        m.vsize = static_cast<int64_t>(*w);
        return *w;
    }
    need_cache();
    if (auto it = sel_->cache.find(m.base()); it != sel_->cache.end()) {
        m.vsize = static_cast<int64_t>(it->second.vsize);
        return it->second.vsize;
    }
    const CacheEntry* e = cache_entry(index);
    return e ? e->vsize : 0;
}

time_t Session::internal_date(size_t index) {
    Msg& m = sel_->msgs[index];
    if (m.have_date) return m.date;
    struct stat st {};
    if (::stat((sel_->folder.dir() + "/" + m.file).c_str(), &st) == 0) {
        m.date = st.st_mtime;
        m.have_date = true;
    }
    return m.date;
}

bool Session::set_message_flags(size_t index, uint8_t flags, uint32_t keywords) {
    Msg& m = sel_->msgs[index];
    std::string from = m.file;
    auto r = sel_->folder.set_flags(std::string(m.base()), flags, keywords, from);
    if (!r || !*r) {
        if (r && !*r) m.gone = true;
        return false;
    }
    m.file = **r;
    if (m.file != from) {
        expect(from);
        expect(m.file);
    }
    m.flags = flags;
    m.keywords = keywords;
    return true;
}

// ---- commands ----------------------------------------------------------------

void Session::cmd_enable(const Command& c) {
    if (c.args.empty()) {
        bad(c.tag, "ENABLE needs capability names");
        return;
    }
    for (const auto& a : c.args)
        if (!a.is_atom()) {
            bad(c.tag, "ENABLE takes capability names");
            return;
        }
    // None of our extensions needs enabling (no CONDSTORE/QRESYNC/UTF8=ACCEPT yet).
    untagged("ENABLED");
    finish(c.tag, "ENABLE completed");
}

void Session::cmd_select(const Command& c, bool readonly) {
    if (c.args.size() != 1 || !c.args[0].is_astring()) {
        bad(c.tag, c.name + " needs one mailbox name");
        return;
    }
    save_cache();
    unselect();  // a failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1)
    idle_ = false;
    std::string name = mailbox_arg(c.args[0]);
    std::string error;
    auto dir = store_.dir_of(name, error);
    if (!dir) {
        no(c.tag, error);
        return;
    }
    if (!store_.exists(name)) {
        no(c.tag, "[NONEXISTENT] Mailbox does not exist");
        return;
    }
    auto sel = std::make_unique<Selected>(*dir);
    sel->name = name;
    sel->readonly = readonly;
    // Watched before it is read: no change falls between the scan and the watch.
    watching_ = cfg_.watch && cfg_.watch(*dir);
    auto r = sel->folder.sync(!readonly);
    if (!r) {
        unselect();
        no(c.tag, "[SERVERBUG] Cannot open the mailbox");
        log::error(*dir, ": ", r.error().message);
        return;
    }
    for (const auto& f : r->moved) expect(f);
    sel->validity = r->validity;
    sel->uidnext = r->next;
    sel->keyword_names = sel->folder.keywords();
    sel->last_sync = ::time(nullptr);
    std::set<uint32_t> recent(r->recent.begin(), r->recent.end());
    for (const auto& s : r->messages) {
        Msg m;
        m.uid = s.uid;
        m.file = s.file;
        m.flags = s.flags;
        m.keywords = s.keywords;
        m.recent = recent.count(s.uid) > 0;
        if (m.recent) ++sel->recent_count;
        sel->msgs.push_back(std::move(m));
    }
    sel_ = std::move(sel);
    (void)dirs_changed();  // remember the directories' state
    std::string kw;
    for (const auto& k : sel_->keyword_names)
        if (!k.empty()) kw += " " + k;
    untagged("FLAGS (" + std::string(kSystemFlags) + kw + ")");
    if (readonly)
        untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
    else
        untagged("OK [PERMANENTFLAGS (" + std::string(kSystemFlags) + kw +
                 " \\*)] Flags permitted");
    untagged(std::to_string(sel_->msgs.size()) + " EXISTS");
    untagged(std::to_string(sel_->recent_count) + " RECENT");
    for (size_t i = 0; i < sel_->msgs.size(); ++i)
        if (!(sel_->msgs[i].flags & kFlagSeen)) {
            untagged("OK [UNSEEN " + std::to_string(i + 1) + "] First unseen");
            break;
        }
    untagged("OK [UIDVALIDITY " + std::to_string(sel_->validity) + "] UIDs valid");
    untagged("OK [UIDNEXT " + std::to_string(sel_->uidnext) + "] Predicted next UID");
    tagged(c.tag, "OK",
           readonly ? "[READ-ONLY] EXAMINE completed" : "[READ-WRITE] SELECT completed");
    trim_ = true;
}

void Session::cmd_create(const Command& c) {
    if (c.args.size() != 1 || !c.args[0].is_astring()) {
        bad(c.tag, "CREATE needs one mailbox name");
        return;
    }
    std::string name = mailbox_arg(c.args[0]);
    if (store_.exists(name)) {
        no(c.tag, "[ALREADYEXISTS] Mailbox exists already");
        return;
    }
    if (auto st = store_.create(name); !st) {
        no(c.tag, st.error().message);
        return;
    }
    finish(c.tag, "CREATE completed");
}

void Session::cmd_delete(const Command& c) {
    if (c.args.size() != 1 || !c.args[0].is_astring()) {
        bad(c.tag, "DELETE needs one mailbox name");
        return;
    }
    std::string name = mailbox_arg(c.args[0]);
    std::string error;
    if (!store_.dir_of(name, error)) {
        no(c.tag, error);
        return;
    }
    if (!is_inbox(name) && !store_.exists(name)) {
        no(c.tag, "[NONEXISTENT] Mailbox does not exist");
        return;
    }
    if (sel_ && sel_->name == name) unselect();
    if (auto st = store_.remove(name); !st) {
        no(c.tag, st.error().message);
        return;
    }
    finish(c.tag, "DELETE completed");
}

void Session::cmd_rename(const Command& c) {
    if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_astring()) {
        bad(c.tag, "RENAME needs two mailbox names");
        return;
    }
    std::string from = mailbox_arg(c.args[0]), to = mailbox_arg(c.args[1]);
    if (!is_inbox(from) && !store_.exists(from)) {
        std::string error;
        no(c.tag, store_.dir_of(from, error) ? "[NONEXISTENT] Mailbox does not exist" : error);
        return;
    }
    if (store_.exists(to)) {
        no(c.tag, "[ALREADYEXISTS] Target mailbox exists already");
        return;
    }
    if (sel_ && sel_->name == from && !is_inbox(from)) unselect();
    if (auto st = store_.rename(from, to); !st) {
        no(c.tag, st.error().message);
        return;
    }
    finish(c.tag, "RENAME completed");
}

void Session::cmd_subscribe(const Command& c, bool on) {
    if (c.args.size() != 1 || !c.args[0].is_astring()) {
        bad(c.tag, c.name + " needs one mailbox name");
        return;
    }
    std::string name = mailbox_arg(c.args[0]);
    std::string error;
    if (!store_.dir_of(name, error)) {
        no(c.tag, error);
        return;
    }
    if (on && !store_.exists(name)) {
        no(c.tag, "[NONEXISTENT] Mailbox does not exist");
        return;
    }
    if (auto st = store_.set_subscribed(name, on); !st) {
        no(c.tag, st.error().message);
        return;
    }
    finish(c.tag, c.name + " completed");
}

void Session::cmd_list(const Command& c, bool lsub) {
    // LIST [(selection options)] reference (patterns | pattern) [RETURN (options)]
    size_t i = 0;
    bool sel_subscribed = false, sel_special = false;
    bool ret_subscribed = false, ret_children = true, ret_special = true;
    std::vector<std::string> status_list;
    bool extended = false;
    if (!lsub && i < c.args.size() && c.args[i].is_list()) {
        extended = true;
        for (const auto& o : c.args[i].list) {
            std::string u = upper(o.text);
            if (!o.is_atom()) {
                bad(c.tag, "Invalid selection option");
                return;
            }
            if (u == "SUBSCRIBED")
                sel_subscribed = ret_subscribed = true;
            else if (u == "SPECIAL-USE")
                sel_special = true;
            else if (u == "REMOTE" || u == "RECURSIVEMATCH")
                ;
            else {
                bad(c.tag, "Unknown selection option " + o.text);
                return;
            }
        }
        ++i;
    }
    if (i + 2 > c.args.size() || !c.args[i].is_astring()) {
        bad(c.tag, c.name + " needs a reference and a pattern");
        return;
    }
    std::string reference = c.args[i].text;
    std::vector<std::string> patterns;
    const Value& pv = c.args[i + 1];
    if (pv.is_list() && !lsub) {
        extended = true;
        for (const auto& p : pv.list) {
            if (!p.is_astring()) {
                bad(c.tag, "Invalid pattern");
                return;
            }
            patterns.push_back(p.text);
        }
    } else if (pv.is_astring()) {
        patterns.push_back(pv.text);
    } else {
        bad(c.tag, "Invalid pattern");
        return;
    }
    i += 2;
    if (i < c.args.size()) {
        if (lsub || i + 2 != c.args.size() || !c.args[i].is_atom() ||
            !iequals(c.args[i].text, "RETURN") || !c.args[i + 1].is_list()) {
            bad(c.tag, "Unexpected arguments after the pattern");
            return;
        }
        const auto& opts = c.args[i + 1].list;
        for (size_t k = 0; k < opts.size(); ++k) {
            std::string u = upper(opts[k].text);
            if (u == "SUBSCRIBED") {
                ret_subscribed = true;
            } else if (u == "CHILDREN") {
                ret_children = true;
            } else if (u == "SPECIAL-USE") {
                ret_special = true;
            } else if (u == "STATUS" && k + 1 < opts.size() && opts[k + 1].is_list()) {
                for (const auto& s : opts[k + 1].list) status_list.push_back(upper(s.text));
                ++k;
            } else {
                bad(c.tag, "Unknown return option " + opts[k].text);
                return;
            }
        }
    }
    (void)extended;
    // LIST "" "": the hierarchy delimiter.
    if (!lsub && patterns.size() == 1 && patterns[0].empty()) {
        untagged("LIST (\\Noselect) \".\" \"\"");
        finish(c.tag, "LIST completed");
        return;
    }
    std::vector<std::string> names = store_.list();
    std::vector<std::string> subs = store_.subscriptions();
    std::set<std::string> exist(names.begin(), names.end());
    std::set<std::string> subscribed(subs.begin(), subs.end());
    // Every name and its parents ("a.b.c" → "a", "a.b").
    std::set<std::string> all(exist);
    for (const auto& n : lsub ? subs : names)
        for (size_t dot = n.find('.'); dot != std::string::npos; dot = n.find('.', dot + 1))
            all.insert(n.substr(0, dot));
    if (lsub)
        for (const auto& s : subs) all.insert(s);
    auto has_children = [&](const std::string& n) {
        auto it = all.upper_bound(n);
        for (; it != all.end(); ++it) {
            if (it->compare(0, n.size(), n) != 0) break;
            if (it->size() > n.size() && (*it)[n.size()] == '.' && exist.count(*it)) return true;
        }
        return false;
    };
    const char* word = lsub ? "LSUB" : "LIST";
    for (const auto& n : all) {
        bool match = false;
        for (const auto& p : patterns) {
            std::string full = reference + p;
            if (is_inbox(n) ? list_match(upper(full), "INBOX") || list_match(full, n)
                            : list_match(full, n))
                match = true;
        }
        if (!match) continue;
        bool is_sub = subscribed.count(n) > 0;
        bool exists = exist.count(n) > 0;
        if (lsub && !is_sub) {
            // A parent of a subscribed name that a '%' reached.
            bool child_subscribed = false;
            for (const auto& s : subs)
                if (s.size() > n.size() && s.compare(0, n.size(), n) == 0 && s[n.size()] == '.')
                    child_subscribed = true;
            if (!child_subscribed) continue;
        }
        if (sel_subscribed && !is_sub) continue;
        std::string_view special = is_inbox(n) ? std::string_view() : MailStore::special_use(n);
        if (sel_special && special.empty()) continue;
        std::string attrs;
        auto add = [&](std::string_view a) {
            if (!attrs.empty()) attrs += ' ';
            attrs += a;
        };
        if (!exists) add(lsub ? "\\Noselect" : "\\NonExistent");
        if (!lsub && !exists) add("\\Noselect");
        if (ret_children && !lsub) add(has_children(n) ? "\\HasChildren" : "\\HasNoChildren");
        if (ret_subscribed && is_sub && !lsub) add("\\Subscribed");
        if (ret_special && !special.empty()) add(special);
        if (lsub && !is_sub) {
            attrs = "\\Noselect";
        }
        untagged(std::string(word) + " (" + attrs + ") \".\" " + quote_astring(n));
        if (!status_list.empty() && exists) {
            std::string error;
            std::string st = status_items(n, status_list, error);
            if (!st.empty()) untagged("STATUS " + quote_astring(n) + " (" + st + ")");
        }
    }
    finish(c.tag, std::string(word) + " completed");
}

std::string Session::status_items(const std::string& name, const std::vector<std::string>& items,
                                  std::string& error) {
    std::string dir_error;
    auto dir = store_.dir_of(name, dir_error);
    if (!dir) {
        error = dir_error;
        return {};
    }
    Folder f(*dir);
    auto r = f.sync(false);
    if (!r) {
        error = "Cannot read the mailbox";
        return {};
    }
    size_t unseen = 0, recent = 0;
    for (const auto& m : r->messages) {
        if (!(m.flags & kFlagSeen)) ++unseen;
        if (m.file.compare(0, 4, "new/") == 0) ++recent;
    }
    if (sel_ && sel_->name == name) recent = std::max(recent, sel_->recent_count);
    std::string out;
    for (const auto& it : items) {
        std::string v;
        if (it == "MESSAGES")
            v = std::to_string(r->messages.size());
        else if (it == "RECENT")
            v = std::to_string(recent);
        else if (it == "UIDNEXT")
            v = std::to_string(r->next);
        else if (it == "UIDVALIDITY")
            v = std::to_string(r->validity);
        else if (it == "UNSEEN")
            v = std::to_string(unseen);
        else if (it == "APPENDLIMIT")
            v = std::to_string(cfg_.append_limit);
        else {
            error = "Unknown status item " + it;
            return {};
        }
        if (!out.empty()) out += ' ';
        out += it + " " + v;
    }
    return out;
}

void Session::cmd_status(const Command& c) {
    if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_list() ||
        c.args[1].list.empty()) {
        bad(c.tag, "STATUS needs a mailbox name and a list of items");
        return;
    }
    std::string name = mailbox_arg(c.args[0]);
    std::vector<std::string> items;
    for (const auto& v : c.args[1].list) {
        if (!v.is_atom()) {
            bad(c.tag, "Invalid status item");
            return;
        }
        items.push_back(upper(v.text));
    }
    std::string error;
    if (!store_.dir_of(name, error)) {
        no(c.tag, error);
        return;
    }
    if (!store_.exists(name)) {
        no(c.tag, "[NONEXISTENT] Mailbox does not exist");
        return;
    }
    std::string st = status_items(name, items, error);
    if (st.empty()) {
        bad(c.tag, error);
        return;
    }
    untagged("STATUS " + quote_astring(name) + " (" + st + ")");
    finish(c.tag, "STATUS completed");
}

bool Session::parse_flags(const Value& v, uint8_t& flags, std::vector<std::string>& keywords,
                          std::string& error) {
    std::vector<const Value*> list;
    if (v.is_list())
        for (const auto& x : v.list) list.push_back(&x);
    else
        list.push_back(&v);
    for (const Value* f : list) {
        if (!f->is_atom()) {
            error = "Flags must be atoms";
            return false;
        }
        bool known = false;
        for (const auto& fn : kFlagNames)
            if (iequals(f->text, fn.name)) {
                flags |= fn.bit;
                known = true;
            }
        if (known || iequals(f->text, "\\Recent")) continue;
        if (!valid_keyword(f->text)) {
            error = "Invalid flag " + f->text;
            return false;
        }
        keywords.push_back(f->text);
    }
    return true;
}

void Session::cmd_append(const Command& c) {
    // APPEND mailbox [(flags)] [date-time] message
    if (c.args.size() < 2 || !c.args[0].is_astring()) {
        bad(c.tag, "APPEND needs a mailbox and a message");
        return;
    }
    std::string name = mailbox_arg(c.args[0]);
    size_t i = 1;
    uint8_t flags = 0;
    std::vector<std::string> keywords;
    time_t date = 0;
    if (i < c.args.size() && c.args[i].is_list()) {
        std::string error;
        if (!parse_flags(c.args[i], flags, keywords, error)) {
            bad(c.tag, error);
            return;
        }
        ++i;
    }
    if (i + 1 < c.args.size() && c.args[i].is_string() && !c.args[i].literal) {
        auto d = parse_imap_datetime(c.args[i].text);
        if (!d) {
            bad(c.tag, "Invalid date-time (expected \"dd-Mon-yyyy hh:mm:ss +zzzz\")");
            return;
        }
        date = *d;
        ++i;
    }
    if (i + 1 != c.args.size() || !c.args[i].is_string()) {
        bad(c.tag, "APPEND needs the message as a literal");
        return;
    }
    const std::string& message = c.args[i].text;
    if (message.size() > cfg_.append_limit) {
        no(c.tag, "[TOOBIG] Message too large");
        return;
    }
    std::string error;
    auto dir = store_.dir_of(name, error);
    if (!dir) {
        no(c.tag, error);
        return;
    }
    if (!store_.exists(name)) {
        no(c.tag, "[TRYCREATE] Mailbox does not exist");
        return;
    }
    Folder f(*dir);
    uint32_t kw = 0;
    for (const auto& k : keywords) {
        int idx = f.keyword_index(k, true);
        if (idx < 0) {
            no(c.tag, "[LIMIT] Too many keywords in this mailbox");
            return;
        }
        kw |= 1u << idx;
    }
    std::string file;
    auto r = f.append(message, flags, kw, date, &file);
    if (!r) {
        log::error(*dir, ": APPEND failed: ", r.error().message);
        no(c.tag, "[SERVERBUG] Cannot store the message");
        return;
    }
    std::string text = "[APPENDUID " + std::to_string(r->second) + " " + std::to_string(r->first) +
                       "] APPEND completed";
    if (sel_ && *dir == sel_->folder.dir()) {
        expect(file);  // its event is ours
        if (r->first == sel_->uidnext && r->second == sel_->validity && !dirty_) {
            // The next uid of our view and nothing else changed: shown
            // without a scan (EXISTS in this answer).
            Msg m;
            m.uid = r->first;
            m.file = file;
            m.flags = flags;
            m.keywords = kw;
            sel_->msgs.push_back(std::move(m));
            sel_->uidnext = r->first + 1;
            untagged(std::to_string(sel_->msgs.size()) + " EXISTS");
            untagged(std::to_string(sel_->recent_count) + " RECENT");
        } else {
            dirty_ = true;  // others' changes too: a sync, EXISTS in this answer
        }
    }
    finish(c.tag, text);
}

void Session::cmd_idle(const Command& c) {
    if (!c.args.empty()) {
        bad(c.tag, "IDLE takes no arguments");
        return;
    }
    sync_view(true);
    out_ += "+ idling\r\n";
    idle_ = true;
    idle_tag_ = c.tag;
}

void Session::cmd_close(const Command& c, bool expunge) {
    if (expunge && !sel_->readonly) {
        std::vector<std::string> bases, files;
        for (const auto& m : sel_->msgs)
            if (m.flags & kFlagDeleted) {
                bases.push_back(std::string(m.base()));
                files.push_back(m.file);
            }
        if (!bases.empty()) {
            if (auto st = sel_->folder.expunge(bases, files); !st)
                log::warn(sel_->folder.dir(), ": expunge failed: ", st.error().message);
        }
    }
    save_cache();
    unselect();
    tagged(c.tag, "OK", expunge ? "CLOSE completed" : "UNSELECT completed");
}

void Session::cmd_expunge(const Command& c, const std::vector<Value>& args, bool uid) {
    if (sel_->readonly) {
        no(c.tag, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    std::vector<size_t> which;
    if (uid) {
        if (args.size() != 1) {
            bad(c.tag, "UID EXPUNGE needs a UID set");
            return;
        }
        auto set = resolve_set(c.tag, &args[0], true);
        if (!set) return;
        which = *set;
    } else {
        for (size_t i = 0; i < sel_->msgs.size(); ++i) which.push_back(i);
    }
    // Sync first so flags set elsewhere count (and our view is current).
    sync_view(true);
    std::set<uint32_t> uids;
    for (size_t i : which)
        if (i < sel_->msgs.size()) uids.insert(sel_->msgs[i].uid);
    std::vector<std::string> bases, files;
    for (const auto& m : sel_->msgs)
        if ((m.flags & kFlagDeleted) && uids.count(m.uid)) {
            bases.push_back(std::string(m.base()));
            files.push_back(m.file);
        }
    for (const auto& f : files) expect(f);
    if (!bases.empty()) {
        auto st = sel_->folder.expunge(bases, files);
        if (!st) {
            log::error(sel_->folder.dir(), ": expunge failed: ", st.error().message);
            no(c.tag, "[SERVERBUG] Expunge failed");
            return;
        }
        if (st->has_value()) {
            Result<SyncResult> after(std::move(**st));
            sync_view(true, true, &after);  // the folder as the expunge left it
        } else {
            // Removed where we saw them: gone from the view without a scan;
            // others' changes (events) as after any command.
            for (auto& m : sel_->msgs)
                if ((m.flags & kFlagDeleted) && uids.count(m.uid)) m.gone = true;
            report_expunged();
            sync_view(true);
        }
    } else {
        sync_view(true, true);
    }
    tagged(c.tag, "OK", "EXPUNGE completed");
}

void Session::cmd_search(const Command& c, const std::vector<Value>& args, bool uid) {
    std::string error;
    bool bad_charset = false;
    // RETURN () (ESEARCH) is not offered; plain SEARCH only.
    auto key = parse_search(args, 0, error, bad_charset);
    if (!key) {
        if (bad_charset)
            no(c.tag, "[BADCHARSET (UTF-8 US-ASCII)] " + error);
        else
            bad(c.tag, error);
        return;
    }
    auto& msgs = sel_->msgs;
    uint32_t max_seq = static_cast<uint32_t>(msgs.size());
    uint32_t max_uid = msgs.empty() ? 0 : msgs.back().uid;
    std::string result = "SEARCH";
    std::function<bool(const SearchKey&, std::initializer_list<SearchKey::Op>)> uses =
        [&](const SearchKey& k, std::initializer_list<SearchKey::Op> ops) {
            for (auto op : ops)
                if (k.op == op) return true;
            for (const auto& ch : k.children)
                if (uses(ch, ops)) return true;
            return false;
        };
    using Op = SearchKey::Op;
    bool need_size = uses(*key, {Op::Larger, Op::Smaller});
    // SENT* fall back to the internal date when there is no Date: field.
    bool need_date =
        uses(*key, {Op::Before, Op::On, Op::Since, Op::SentBefore, Op::SentOn, Op::SentSince});
    bool need_body = uses(*key, {Op::Body, Op::Text});
    // SUBJECT, FROM, TO, CC, BCC: from the cache (filled for the messages it
    // lacks, once), not from the files.
    std::function<bool(const SearchKey&)> uses_fields = [&](const SearchKey& k) {
        if (k.op == Op::Header && is_cached_search_field(k.field)) return true;
        for (const auto& ch : k.children)
            if (uses_fields(ch)) return true;
        return false;
    };
    bool use_cache = uses_fields(*key);
    uint32_t header_uid = 0;
    std::string header;
    for (size_t i = 0; i < msgs.size(); ++i) {
        if (msgs[i].gone) continue;
        SearchMessage sm;
        sm.seq = static_cast<uint32_t>(i + 1);
        sm.uid = msgs[i].uid;
        sm.flags = msgs[i].flags;
        sm.recent = msgs[i].recent;
        for (size_t k = 0; k < kMaxKeywords; ++k)
            if ((msgs[i].keywords & (1u << k)) && k < sel_->keyword_names.size())
                sm.keywords.push_back(sel_->keyword_names[k]);
        // The internal date (a stat) and the size only when a key needs them;
        // only the header section when no key looks at the body.
        if (need_date) sm.internal_days = static_cast<int64_t>(internal_date(i)) / 86400;
        if (need_body) {
            sm.text = [&, i]() -> std::string_view {
                const std::string* t = load(i);
                return t ? std::string_view(*t) : std::string_view();
            };
        } else {
            sm.text = [&, i]() -> std::string_view {
                if (header_uid != msgs[i].uid) {
                    header_uid = msgs[i].uid;
                    header.clear();
                    bool missing = false;
                    auto h = read_header(sel_->folder.dir() + "/" + msgs[i].file, missing);
                    if (h) {
                        header = to_crlf(*h);
                    } else if (const std::string* t = load(i)) {  // renamed meanwhile
                        size_t end = t->find("\r\n\r\n");
                        header = t->substr(0, end == std::string::npos ? t->size() : end + 4);
                    }
                }
                return header;
            };
        }
        sm.size = need_size ? message_size(i) : 0;
        if (use_cache)
            if (const CacheEntry* e = cache_entry(i)) sm.fields = &e->search_fields;
        if (search_match(*key, sm, max_seq, max_uid))
            result += " " + std::to_string(uid ? msgs[i].uid : i + 1);
    }
    untagged(result);
    finish(c.tag, uid ? "UID SEARCH completed" : "SEARCH completed", false);
}

void Session::cmd_fetch(const Command& c, const std::vector<Value>& args, bool uid) {
    if (args.size() != 2) {
        bad(c.tag, "FETCH needs a message set and items");
        return;
    }
    auto set = resolve_set(c.tag, &args[0], uid);
    if (!set) return;
    auto job = std::make_unique<FetchJob>();
    job->tag = c.tag;
    job->uid = uid;
    std::vector<std::string> names;
    if (args[1].is_list()) {
        for (const auto& v : args[1].list) {
            if (!v.is_atom()) {
                bad(c.tag, "Invalid FETCH item");
                return;
            }
            names.push_back(v.text);
        }
    } else if (args[1].is_atom()) {
        std::string m = upper(args[1].text);
        if (m == "ALL")
            names = {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"};
        else if (m == "FAST")
            names = {"FLAGS", "INTERNALDATE", "RFC822.SIZE"};
        else if (m == "FULL")
            names = {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"};
        else
            names.push_back(args[1].text);
    } else {
        bad(c.tag, "Invalid FETCH items");
        return;
    }
    if (names.empty()) {
        bad(c.tag, "No FETCH items");
        return;
    }
    using K = FetchItem::Kind;
    bool have_uid = false;
    for (const auto& raw : names) {
        FetchItem it{};
        std::string u = upper(raw);
        size_t br = u.find('[');
        if (br == std::string::npos) {
            // The FETCH items without a section (RFC 3501 6.4.5).
            static constexpr std::pair<std::string_view, K> kItems[] = {
                {"FLAGS", K::Flags},
                {"INTERNALDATE", K::InternalDate},
                {"RFC822.SIZE", K::Size},
                {"ENVELOPE", K::Envelope},
                {"BODY", K::Body},
                {"BODYSTRUCTURE", K::BodyStructure},
                {"UID", K::Uid},
                {"RFC822", K::Rfc822},
                {"RFC822.HEADER", K::Rfc822Header},
                {"RFC822.TEXT", K::Rfc822Text},
            };
            const auto* item = std::find_if(std::begin(kItems), std::end(kItems),
                                            [&](const auto& e) { return e.first == u; });
            if (item == std::end(kItems)) {
                bad(c.tag, "Unknown FETCH item " + raw);
                return;
            }
            it.kind = item->second;
        } else {
            std::string prefix = u.substr(0, br);
            if (prefix != "BODY" && prefix != "BODY.PEEK") {
                bad(c.tag, "Unknown FETCH item " + raw);
                return;
            }
            size_t close = u.find(']', br);
            if (close == std::string::npos) {
                bad(c.tag, "Missing ']' in " + raw);
                return;
            }
            it.kind = K::Section;
            it.peek = prefix == "BODY.PEEK";
            it.section = u.substr(br + 1, close - br - 1);
            if (!valid_section(it.section)) {
                bad(c.tag, "Invalid section " + raw);
                return;
            }
            std::string rest = u.substr(close + 1);
            if (!rest.empty()) {
                // <origin.count>
                size_t dot = rest.find('.');
                if (rest.front() != '<' || rest.back() != '>' || dot == std::string::npos) {
                    bad(c.tag, "Invalid partial range in " + raw);
                    return;
                }
                std::string o = rest.substr(1, dot - 1),
                            n = rest.substr(dot + 1, rest.size() - dot - 2);
                auto num = [](const std::string& s, uint64_t& v) {
                    if (s.empty() || s.size() > 10) return false;
                    v = 0;
                    for (char ch : s) {
                        if (ch < '0' || ch > '9') return false;
                        v = v * 10 + static_cast<uint64_t>(ch - '0');
                    }
                    return true;
                };
                if (!num(o, it.origin) || !num(n, it.count) || it.count == 0) {
                    bad(c.tag, "Invalid partial range in " + raw);
                    return;
                }
                it.partial = true;
            }
        }
        if (it.kind == K::Uid) have_uid = true;
        job->items.push_back(std::move(it));
    }
    if (uid && !have_uid) job->items.insert(job->items.begin(), FetchItem{K::Uid});
    job->indexes = std::move(*set);
    job_ = std::move(job);
    run_fetch();
}

void Session::run_fetch() {
    while (job_ && job_->next < job_->indexes.size()) {
        if (out_.size() >= cfg_.output_high) return;  // resume() continues
        size_t index = job_->indexes[job_->next++];
        if (index >= sel_->msgs.size()) continue;
        if (!fetch_one(index)) job_->gone = true;
    }
    if (!job_) return;
    std::string tag = job_->tag;
    bool gone = job_->gone;
    bool uid = job_->uid;
    job_.reset();
    sync_view(false);
    save_cache();
    if (gone)
        no(tag, "[EXPUNGEISSUED] Some messages were expunged by another session");
    else
        tagged(tag, "OK", uid ? "UID FETCH completed" : "FETCH completed");
}

bool Session::fetch_one(size_t index) {
    using K = FetchItem::Kind;
    Msg& m = sel_->msgs[index];
    if (m.gone) return false;
    std::string items;
    bool set_seen = false;
    auto add = [&](const std::string& s) {
        if (!items.empty()) items += ' ';
        items += s;
    };
    bool want_flags = false;
    for (const auto& it : job_->items) {
        if (it.kind == K::Flags) want_flags = true;
        if (((it.kind == K::Section && !it.peek) || it.kind == K::Rfc822 ||
             it.kind == K::Rfc822Text) &&
            !(m.flags & kFlagSeen) && !sel_->readonly)
            set_seen = true;
    }
    if (set_seen) {
        if (!set_message_flags(index, static_cast<uint8_t>(m.flags | kFlagSeen), m.keywords) &&
            m.gone)
            return false;
    }
    std::optional<MimePart> mime;
    const std::string* text = nullptr;
    auto need_text = [&]() -> bool {
        if (text) return true;
        text = load(index);
        return text != nullptr;
    };
    auto need_mime = [&]() -> bool {
        if (mime) return true;
        if (!need_text()) return false;
        mime = parse_mime(*text);
        return true;
    };
    for (const auto& it : job_->items) {
        switch (it.kind) {
            case K::Flags:
                add("FLAGS " + flags_string(m));
                break;
            case K::Uid:
                add("UID " + std::to_string(m.uid));
                break;
            case K::InternalDate:
                add("INTERNALDATE " + imap_datetime(internal_date(index)));
                break;
            case K::Size:
                add("RFC822.SIZE " + std::to_string(message_size(index)));
                break;
            case K::Envelope:
            case K::Body:
            case K::BodyStructure: {
                const CacheEntry* e = cache_entry(index);
                if (!e) return false;
                if (it.kind == K::Envelope)
                    add("ENVELOPE " + e->envelope);
                else if (it.kind == K::Body)
                    add("BODY " + e->body);
                else
                    add("BODYSTRUCTURE " + e->bodystructure);
                break;
            }
            case K::Rfc822:
                if (!need_text()) return false;
                add("RFC822 " + quote_string(*text));
                break;
            case K::Rfc822Header:
            case K::Rfc822Text: {
                if (!need_mime()) return false;
                auto s = body_section(*text, *mime, it.kind == K::Rfc822Header ? "HEADER" : "TEXT");
                std::string v = s ? *s : std::string();
                add(std::string(it.kind == K::Rfc822Header ? "RFC822.HEADER " : "RFC822.TEXT ") +
                    "{" + std::to_string(v.size()) + "}\r\n" + v);
                break;
            }
            case K::Section: {
                if (!need_mime()) return false;
                auto s = body_section(*text, *mime, it.section);
                std::string v = s ? *s : std::string();
                std::string name = "BODY[" + it.section + "]";
                if (it.partial) {
                    name += "<" + std::to_string(it.origin) + ">";
                    v = it.origin >= v.size() ? std::string() : v.substr(it.origin, it.count);
                }
                add(name + " {" + std::to_string(v.size()) + "}\r\n" + v);
                break;
            }
        }
    }
    if (set_seen && !want_flags) add("FLAGS " + flags_string(m));
    untagged(std::to_string(index + 1) + " FETCH (" + items + ")");
    return true;
}

void Session::cmd_store(const Command& c, const std::vector<Value>& args, bool uid) {
    if (args.size() < 3) {
        bad(c.tag, "STORE needs a message set, an item and flags");
        return;
    }
    auto set = resolve_set(c.tag, &args[0], uid);
    if (!set) return;
    if (!args[1].is_atom()) {
        bad(c.tag, "Invalid STORE item");
        return;
    }
    std::string item = upper(args[1].text);
    bool silent = false;
    if (item.size() > 7 && item.substr(item.size() - 7) == ".SILENT") {
        silent = true;
        item.resize(item.size() - 7);
    }
    int mode;  // 0 replace, 1 add, -1 remove
    if (item == "FLAGS")
        mode = 0;
    else if (item == "+FLAGS")
        mode = 1;
    else if (item == "-FLAGS")
        mode = -1;
    else {
        bad(c.tag, "Invalid STORE item " + args[1].text);
        return;
    }
    uint8_t flags = 0;
    std::vector<std::string> keywords;
    std::string error;
    if (args.size() == 3) {
        if (!parse_flags(args[2], flags, keywords, error)) {
            bad(c.tag, error);
            return;
        }
    } else {
        Value list;
        list.kind = Value::Kind::List;
        list.list.assign(args.begin() + 2, args.end());
        if (!parse_flags(list, flags, keywords, error)) {
            bad(c.tag, error);
            return;
        }
    }
    if (sel_->readonly) {
        no(c.tag, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    uint32_t kw = 0;
    for (const auto& k : keywords) {
        int idx = sel_->folder.keyword_index(k, mode >= 0);
        if (idx < 0) {
            if (mode < 0) continue;
            no(c.tag, "[LIMIT] Too many keywords in this mailbox");
            return;
        }
        kw |= 1u << idx;
    }
    sel_->keyword_names = sel_->folder.keywords();
    bool any_gone = false;
    for (size_t i : *set) {
        Msg& m = sel_->msgs[i];
        if (m.gone) {
            any_gone = true;
            continue;
        }
        uint8_t nf = mode == 0 ? flags : mode > 0 ? (m.flags | flags) : (m.flags & ~flags);
        uint32_t nk = mode == 0 ? kw : mode > 0 ? (m.keywords | kw) : (m.keywords & ~kw);
        if (nf != m.flags || nk != m.keywords) {
            if (!set_message_flags(i, nf, nk)) {
                any_gone = true;
                continue;
            }
        }
        if (!silent)
            untagged(std::to_string(i + 1) + " FETCH (" +
                     (uid ? "UID " + std::to_string(m.uid) + " " : std::string()) + "FLAGS " +
                     flags_string(m) + ")");
    }
    sync_view(false);
    if (any_gone)
        no(c.tag, "[EXPUNGEISSUED] Some messages were expunged by another session");
    else
        tagged(c.tag, "OK", "STORE completed");
}

void Session::cmd_copy(const Command& c, const std::vector<Value>& args, bool uid, bool move) {
    if (args.size() != 2 || !args[1].is_astring()) {
        bad(c.tag, c.name + " needs a message set and a mailbox");
        return;
    }
    auto set = resolve_set(c.tag, &args[0], uid);
    if (!set) return;
    std::string name = mailbox_arg(args[1]);
    std::string error;
    auto dir = store_.dir_of(name, error);
    if (!dir) {
        no(c.tag, error);
        return;
    }
    if (!store_.exists(name)) {
        no(c.tag, "[TRYCREATE] Mailbox does not exist");
        return;
    }
    if (move && sel_->readonly) {
        no(c.tag, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    Folder dest(*dir);
    std::string src_uids, dst_uids;
    std::vector<std::string> moved, moved_files;
    uint32_t validity = 0;
    for (size_t i : *set) {
        Msg& m = sel_->msgs[i];
        if (m.gone) continue;
        uint32_t kw = 0;
        for (size_t k = 0; k < kMaxKeywords && k < sel_->keyword_names.size(); ++k)
            if ((m.keywords & (1u << k)) && !sel_->keyword_names[k].empty()) {
                int idx = dest.keyword_index(sel_->keyword_names[k], true);
                if (idx >= 0) kw |= 1u << idx;
            }
        auto r = dest.copy_in(sel_->folder.dir() + "/" + m.file, m.flags, kw);
        if (!r) {
            // The file may have been renamed by another session meanwhile.
            if (load(i)) r = dest.copy_in(sel_->folder.dir() + "/" + m.file, m.flags, kw);
        }
        if (!r) {
            log::error(*dir, ": ", c.name, " failed: ", r.error().message);
            no(c.tag, "[SERVERBUG] " + c.name + " failed");
            return;
        }
        if (!src_uids.empty()) {
            src_uids += ',';
            dst_uids += ',';
        }
        src_uids += std::to_string(m.uid);
        dst_uids += std::to_string(*r);
        moved.push_back(std::string(m.base()));
        moved_files.push_back(m.file);
    }
    if (*dir == sel_->folder.dir()) dirty_ = true;  // copied into itself
    auto st = dest.sync(false);
    if (st) validity = st->validity;
    std::string code = src_uids.empty() ? std::string()
                                        : "[COPYUID " + std::to_string(validity) + " " + src_uids +
                                              " " + dst_uids + "] ";
    if (move) {
        if (!code.empty()) untagged("OK " + code + "Moved");
        if (!moved.empty()) {
            for (const auto& f : moved_files) expect(f);
            if (auto ex = sel_->folder.expunge(moved, moved_files); !ex)
                log::error(sel_->folder.dir(), ": MOVE expunge failed: ", ex.error().message);
        }
        sync_view(true, true);
        tagged(c.tag, "OK", "MOVE completed");
        return;
    }
    finish(c.tag, code + "COPY completed", false);
}

}  // namespace pbx::imap
