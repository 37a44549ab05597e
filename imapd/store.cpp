#include "imapd/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "common/log.hpp"
#include "common/mailbox/maildir.hpp"
#include "common/spool/atomic_write.hpp"

namespace pbx::imap {

namespace {

constexpr std::string_view kUidListName = "pillarbox-uidlist";
constexpr std::string_view kUidListMagic = "pillarbox-uidlist 1";
constexpr std::string_view kKeywordsName = "dovecot-keywords";
constexpr std::string_view kCacheName = "pillarbox-cache";
constexpr std::string_view kCacheMagic = "pillarbox-cache 2 ";
// The format before the SEARCH fields: not an error, only outdated.
constexpr std::string_view kCacheMagicV1 = "pillarbox-cache 1 ";
constexpr std::string_view kSubscriptionsName = "subscriptions";
constexpr std::string_view kDefaultsMarker = "pillarbox-folders";
constexpr size_t kMaxNameBytes = 200;

bool parse_u32(std::string_view s, uint32_t& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

// Temp + rename without fsync, for files whose loss costs only work.
Status write_unsynced(const std::string& target, std::string_view text) {
    std::string temp = target + ".tmp." + std::to_string(::getpid());
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return fail_errno("open " + temp);
    std::string_view left = text;
    while (!left.empty()) {
        ssize_t n = ::write(fd.get(), left.data(), left.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            ::unlink(temp.c_str());
            errno = e;
            return fail_errno("write " + temp);
        }
        left.remove_prefix(static_cast<size_t>(n));
    }
    fd.reset();
    if (::rename(temp.c_str(), target.c_str()) != 0) {
        int e = errno;
        ::unlink(temp.c_str());
        errno = e;
        return fail_errno("rename " + temp);
    }
    return {};
}

Result<std::string> read_file(const std::string& path, bool& missing) {
    missing = false;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        if (errno == ENOENT) {
            missing = true;
            return std::string();
        }
        return fail_errno("open " + path);
    }
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("read " + path);
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

struct DirEntry {
    std::string name;
    bool in_new;
};

// Regular (or unknown-type) entries of dir/sub, skipping dot files.
void scan_dir(const std::string& dir, std::string_view sub, bool in_new,
              std::vector<DirEntry>& out) {
    std::string path = dir + "/" + std::string(sub);
    DIR* d = ::opendir(path.c_str());
    if (!d) return;
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
        out.push_back(DirEntry{e->d_name, in_new});
    }
    ::closedir(d);
}

const char kFlagLetters[] = {'D', 'F', 'R', 'S', 'T'};
uint8_t flag_of_letter(char c) {
    switch (c) {
        case 'S':
            return kFlagSeen;
        case 'R':
            return kFlagAnswered;
        case 'F':
            return kFlagFlagged;
        case 'T':
            return kFlagDeleted;
        case 'D':
            return kFlagDraft;
    }
    return 0;
}

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
    return buf;
}

uint64_t counter_next() {
    static uint64_t c = 0;
    return ++c;
}

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == ',') return 63;
    return -1;
}

}  // namespace

// ---- pure parts ------------------------------------------------------------

std::optional<UidList> parse_uidlist(std::string_view text, std::string& error) {
    UidList list;
    size_t eol = text.find('\n');
    if (eol == std::string_view::npos) {
        error = "no header line";
        return std::nullopt;
    }
    std::string_view header = text.substr(0, eol);
    if (header.substr(0, kUidListMagic.size()) != kUidListMagic) {
        error = "bad header";
        return std::nullopt;
    }
    bool have_v = false, have_n = false;
    size_t pos = kUidListMagic.size();
    while (pos < header.size()) {
        if (header[pos] == ' ') {
            ++pos;
            continue;
        }
        size_t end = header.find(' ', pos);
        if (end == std::string_view::npos) end = header.size();
        std::string_view field = header.substr(pos, end - pos);
        pos = end;
        if (field[0] == 'V') have_v = parse_u32(field.substr(1), list.validity);
        if (field[0] == 'N') have_n = parse_u32(field.substr(1), list.next);
        // Other fields (M<modseq> in a later version) are skipped.
    }
    if (!have_v || !have_n || list.validity == 0 || list.next == 0) {
        error = "header without V<uidvalidity> N<uidnext>";
        return std::nullopt;
    }
    std::set<std::string_view> seen;
    size_t start = eol + 1;
    uint32_t last = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) {
            error = "last line not terminated";
            return std::nullopt;
        }
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        size_t sp = line.find(' ');
        size_t colon = line.find(" :");
        uint32_t uid = 0;
        if (sp == std::string_view::npos || colon == std::string_view::npos ||
            !parse_u32(line.substr(0, sp), uid)) {
            error = "bad line";
            return std::nullopt;
        }
        std::string_view base = line.substr(colon + 2);
        if (uid == 0 || uid <= last || uid >= list.next) {
            error = "uid " + std::to_string(uid) + " out of order or not below UIDNEXT";
            return std::nullopt;
        }
        if (base.empty() || base.find('/') != std::string_view::npos ||
            base.find('\0') != std::string_view::npos || !seen.insert(base).second) {
            error = "bad or repeated name";
            return std::nullopt;
        }
        last = uid;
        list.entries.push_back(UidList::Entry{uid, std::string(base)});
    }
    return list;
}

std::string format_uidlist(const UidList& list) {
    std::string out;
    out.reserve(40 + list.entries.size() * 64);
    out += kUidListMagic;
    out += " V" + std::to_string(list.validity) + " N" + std::to_string(list.next) + "\n";
    for (const auto& e : list.entries) {
        out += std::to_string(e.uid);
        out += " :";
        out += e.base;
        out += '\n';
    }
    return out;
}

NameInfo parse_maildir_name(std::string_view name) {
    NameInfo info;
    size_t colon = name.find(":2,");
    if (colon == std::string_view::npos) {
        // ":1," and other infos: keep everything before ':' as the base.
        info.base = std::string(name.substr(0, name.find(':')));
        return info;
    }
    info.base = std::string(name.substr(0, colon));
    for (char c : name.substr(colon + 3)) {
        if (c >= 'a' && c <= 'z')
            info.keywords |= 1u << (c - 'a');
        else
            info.flags |= flag_of_letter(c);
    }
    return info;
}

std::string maildir_name(std::string_view base, uint8_t flags, uint32_t keywords) {
    std::string out(base);
    out += ":2,";
    for (char c : kFlagLetters)
        if (flags & flag_of_letter(c)) out += c;
    for (size_t i = 0; i < kMaxKeywords; ++i)
        if (keywords & (1u << i)) out += static_cast<char>('a' + i);
    return out;
}

bool valid_mutf7(std::string_view name) {
    for (size_t i = 0; i < name.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(name[i]);
        if (c < 0x20 || c > 0x7e) return false;
        if (c != '&') continue;
        size_t j = i + 1;
        if (j < name.size() && name[j] == '-') {
            i = j;
            continue;
        }
        uint32_t bits = 0;
        int nbits = 0;
        std::vector<uint16_t> units;
        while (j < name.size() && name[j] != '-') {
            int v = b64_value(name[j]);
            if (v < 0) return false;
            bits = (bits << 6) | static_cast<uint32_t>(v);
            nbits += 6;
            if (nbits >= 16) {
                nbits -= 16;
                units.push_back(static_cast<uint16_t>(bits >> nbits));
                bits &= (1u << nbits) - 1;
            }
            ++j;
        }
        if (j >= name.size() || units.empty()) return false;  // no '-' or "&" + nothing
        if (nbits >= 6 || bits != 0) return false;            // leftover bits
        for (size_t k = 0; k < units.size(); ++k) {
            uint16_t u = units[k];
            if (u >= 0x20 && u <= 0x7e) return false;  // printable ASCII must not be encoded
            if (u >= 0xd800 && u <= 0xdbff) {
                if (k + 1 >= units.size() || units[k + 1] < 0xdc00 || units[k + 1] > 0xdfff)
                    return false;
                ++k;
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                return false;
            }
        }
        i = j;
    }
    return true;
}

bool is_inbox(std::string_view name) {
    if (name.size() != 5) return false;
    for (size_t i = 0; i < 5; ++i)
        if (std::toupper(static_cast<unsigned char>(name[i])) != "INBOX"[i]) return false;
    return true;
}

std::optional<std::string> folder_relpath(std::string_view name, std::string& error) {
    if (is_inbox(name)) return std::string();
    if (name.empty()) {
        error = "Empty mailbox name";
        return std::nullopt;
    }
    if (name.size() > kMaxNameBytes) {
        error = "Mailbox name too long";
        return std::nullopt;
    }
    if (name.find('/') != std::string_view::npos || name[0] == '~') {
        error = "Mailbox names must not contain '/' or start with '~'";
        return std::nullopt;
    }
    if (name.find('%') != std::string_view::npos || name.find('*') != std::string_view::npos) {
        error = "Mailbox names must not contain '%' or '*'";
        return std::nullopt;
    }
    if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos) {
        error = "Empty hierarchy level in mailbox name";
        return std::nullopt;
    }
    if (!valid_mutf7(name)) {
        error = "Mailbox name is not valid modified UTF-7";
        return std::nullopt;
    }
    return "." + std::string(name);
}

bool list_match(std::string_view pattern, std::string_view name) {
    // DP over pattern positions: reach[j] = pattern[0..j) matches name[0..i).
    std::vector<char> reach(pattern.size() + 1, 0), next(pattern.size() + 1, 0);
    reach[0] = 1;
    for (size_t j = 0; j < pattern.size() && (pattern[j] == '*' || pattern[j] == '%'); ++j)
        reach[j + 1] = 1;
    for (char c : name) {
        std::fill(next.begin(), next.end(), 0);
        for (size_t j = 0; j < pattern.size(); ++j) {
            if (!reach[j]) continue;
            char p = pattern[j];
            if (p == '*' || (p == '%' && c != '.')) {
                next[j] = 1;  // the wildcard eats c
            } else if (p == c) {
                next[j + 1] = 1;
            }
        }
        // Wildcards may also match nothing.
        for (size_t j = 0; j < pattern.size(); ++j)
            if (next[j] && (pattern[j] == '*' || pattern[j] == '%')) next[j + 1] = 1;
        reach.swap(next);
    }
    return reach[pattern.size()];
}

std::vector<std::string> parse_keywords(std::string_view text) {
    std::vector<std::string> names;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        size_t sp = line.find(' ');
        uint32_t idx = 0;
        if (sp == std::string_view::npos || !parse_u32(line.substr(0, sp), idx) ||
            idx >= kMaxKeywords)
            continue;
        std::string_view name = line.substr(sp + 1);
        if (name.empty()) continue;
        if (names.size() <= idx) names.resize(idx + 1);
        names[idx] = std::string(name);
    }
    return names;
}

std::string format_keywords(const std::vector<std::string>& names) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i)
        if (!names[i].empty()) out += std::to_string(i) + " " + names[i] + "\n";
    return out;
}

namespace {

bool take_number(std::string_view& s, uint64_t& out, char end) {
    size_t e = s.find(end);
    if (e == std::string_view::npos || e == 0 || e > 20) return false;
    out = 0;
    for (char c : s.substr(0, e)) {
        if (c < '0' || c > '9') return false;
        out = out * 10 + static_cast<uint64_t>(c - '0');
    }
    s.remove_prefix(e + 1);
    return true;
}

}  // namespace

uint64_t cache_checksum(std::string_view s) {
    // Eight bytes a step (FNV-1a's byte a step cost a millisecond per
    // session on a cache of 1,000 messages). Each step is a bijection of
    // the state, so no single changed word goes unseen.
    uint64_t h = 0xcbf29ce484222325ull ^ s.size();
    auto step = [&h](uint64_t w) { h = (std::rotl(h, 29) ^ w) * 0x9e3779b97f4a7c15ull; };
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        step(w);
    }
    uint64_t tail = 0;
    if (i < s.size()) std::memcpy(&tail, s.data() + i, s.size() - i);
    step(tail);
    return h ^ (h >> 32);
}

// Format: "pillarbox-cache 2 <cache_checksum of the rest, hex>\n", then records
//   "<base len> <vsize> <date> <env len> <body len> <bs len> <search len>\n"
//   base envelope body bodystructure search-fields (raw bytes, lengths as given)
std::string format_cache(const CacheMap& entries) {
    std::string body;
    for (const auto& [base, e] : entries) {
        body += std::to_string(base.size()) + " " + std::to_string(e.vsize) + " " +
                std::to_string(e.date) + " " + std::to_string(e.envelope.size()) + " " +
                std::to_string(e.body.size()) + " " + std::to_string(e.bodystructure.size()) + " " +
                std::to_string(e.search_fields.size()) + "\n";
        body += base;
        body += e.envelope;
        body += e.body;
        body += e.bodystructure;
        body += e.search_fields;
    }
    char sum[32];
    std::snprintf(sum, sizeof sum, "%016llx",
                  static_cast<unsigned long long>(cache_checksum(body)));
    return std::string(kCacheMagic) + sum + "\n" + body;
}

std::optional<CacheMap> parse_cache(std::string_view text) {
    if (text.substr(0, kCacheMagic.size()) != kCacheMagic) return std::nullopt;
    text.remove_prefix(kCacheMagic.size());
    size_t eol = text.find('\n');
    if (eol != 16) return std::nullopt;
    std::string_view sum = text.substr(0, 16);
    text.remove_prefix(17);
    char want[32];
    std::snprintf(want, sizeof want, "%016llx",
                  static_cast<unsigned long long>(cache_checksum(text)));
    if (sum != want) return std::nullopt;
    CacheMap out;
    // About one entry per 700 bytes: one allocation of the buckets, not a rehash per doubling.
    out.reserve(text.size() / 700 + 16);
    while (!text.empty()) {
        uint64_t base_len, vsize, date, env_len, body_len, bs_len, sf_len;
        if (!take_number(text, base_len, ' ') || !take_number(text, vsize, ' ') ||
            !take_number(text, date, ' ') || !take_number(text, env_len, ' ') ||
            !take_number(text, body_len, ' ') || !take_number(text, bs_len, ' ') ||
            !take_number(text, sf_len, '\n'))
            return std::nullopt;
        // Each length is at most the rest of the text, so the sum cannot wrap.
        if (base_len > text.size() || env_len > text.size() || body_len > text.size() ||
            bs_len > text.size() || sf_len > text.size())
            return std::nullopt;
        uint64_t total = base_len + env_len + body_len + bs_len + sf_len;
        if (total > text.size() || base_len == 0) return std::nullopt;
        CacheEntry e;
        std::string base(text.substr(0, base_len));
        size_t p = base_len;
        e.vsize = vsize;
        e.date = static_cast<int64_t>(date);
        e.envelope = std::string(text.substr(p, env_len));
        p += env_len;
        e.body = std::string(text.substr(p, body_len));
        p += body_len;
        e.bodystructure = std::string(text.substr(p, bs_len));
        p += bs_len;
        e.search_fields = std::string(text.substr(p, sf_len));
        text.remove_prefix(total);
        out.emplace(std::move(base), std::move(e));
    }
    return out;
}

// ---- FolderLock / Folder -------------------------------------------------

Result<FolderLock> FolderLock::take(const std::string& dir) {
    std::string path = dir + "/" + std::string(kUidListName) + ".lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return fail_errno("open " + path);
    while (::flock(fd.get(), LOCK_EX) != 0) {
        if (errno != EINTR) return fail_errno("flock " + path);
    }
    return FolderLock(std::move(fd));
}

Result<SyncResult> Folder::sync(bool take_new) {
    auto lock = FolderLock::take(dir_);
    if (!lock) return Err{lock.error()};
    return sync_locked(take_new);
}

Result<SyncResult> Folder::sync_locked(bool take_new) {
    SyncResult res;
    std::string list_path = dir_ + "/" + std::string(kUidListName);
    bool missing = false;
    auto text = read_file(list_path, missing);
    if (!text) return Err{text.error()};
    UidList list;
    bool changed = false;
    bool new_uids = false;  // UIDNEXT or UIDVALIDITY moved: must survive a crash
    if (!missing) {
        std::string error;
        auto parsed = parse_uidlist(*text, error);
        if (parsed) {
            list = std::move(*parsed);
        } else {
            log::warn(list_path, ": corrupt (", error, "); rebuilt with a new UIDVALIDITY");
            res.rebuilt = true;
            missing = true;
        }
    }
    if (missing) {
        list = UidList{};
        list.validity = static_cast<uint32_t>(::time(nullptr));
        list.next = 1;
        changed = true;
        new_uids = true;
    }

    std::vector<DirEntry> entries;
    scan_dir(dir_, "new", true, entries);
    scan_dir(dir_, "cur", false, entries);
    // base → entry; cur/ wins over new/ (moved in between the two scans).
    std::unordered_map<std::string, size_t> by_base;
    by_base.reserve(entries.size());
    std::vector<NameInfo> infos(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
        infos[i] = parse_maildir_name(entries[i].name);
        auto [it, inserted] = by_base.emplace(infos[i].base, i);
        if (!inserted && entries[it->second].in_new) it->second = i;
    }

    std::vector<UidList::Entry> kept;
    kept.reserve(list.entries.size());
    std::set<std::string_view> known;
    for (auto& e : list.entries) {
        if (by_base.count(e.base)) {
            kept.push_back(std::move(e));
        } else {
            changed = true;
        }
    }
    for (const auto& e : kept) known.insert(e.base);
    std::vector<std::string> fresh;
    for (const auto& [base, idx] : by_base)
        if (!known.count(base)) fresh.push_back(base);
    std::sort(fresh.begin(), fresh.end());
    for (auto& base : fresh) {
        if (list.next == 0xffffffffu) return fail(dir_ + ": UIDNEXT exhausted");
        kept.push_back(UidList::Entry{list.next++, std::move(base)});
        changed = true;
        new_uids = true;
    }
    list.entries = std::move(kept);

    res.messages.reserve(list.entries.size());
    for (const auto& e : list.entries) {
        size_t idx = by_base.at(e.base);
        const DirEntry& de = entries[idx];
        StoredMessage m;
        m.uid = e.uid;
        m.base = e.base;
        m.flags = infos[idx].flags;
        m.keywords = infos[idx].keywords;
        m.file = (de.in_new ? "new/" : "cur/") + de.name;
        if (de.in_new && take_new) {
            std::string to = "cur/" + maildir_name(e.base, m.flags, m.keywords);
            if (::rename((dir_ + "/" + m.file).c_str(), (dir_ + "/" + to).c_str()) == 0) {
                res.moved.push_back(m.file);
                res.moved.push_back(to);
                m.file = to;
                res.recent.push_back(e.uid);
            }
        }
        res.messages.push_back(std::move(m));
    }
    if (changed) {
        // New UIDs are flushed to disk before anyone sees them (a UID must
        // never be given twice); a list that only lost entries need not be:
        // after a crash the older list's extra entries are dropped again.
        auto st = new_uids ? spool::atomic_write(list_path, format_uidlist(list))
                           : write_unsynced(list_path, format_uidlist(list));
        if (!st) return Err{st.error()};
    }
    res.validity = list.validity;
    res.next = list.next;
    return res;
}

Result<std::optional<std::string>> Folder::set_flags(const std::string& base, uint8_t flags,
                                                     uint32_t keywords, const std::string& known) {
    auto lock = FolderLock::take(dir_);
    if (!lock) return Err{lock.error()};
    std::string to = "cur/" + maildir_name(base, flags, keywords);
    // The file where the caller last saw it: renamed without a scan. Gone
    // (renamed or expunged elsewhere): looked for below.
    if (!known.empty() && parse_maildir_name(known.substr(known.find('/') + 1)).base == base) {
        if (known == to) {
            struct stat st {};
            if (::stat((dir_ + "/" + to).c_str(), &st) == 0) return std::optional<std::string>(to);
        } else if (::rename((dir_ + "/" + known).c_str(), (dir_ + "/" + to).c_str()) == 0) {
            return std::optional<std::string>(to);
        } else if (errno != ENOENT) {
            return fail_errno("rename " + dir_ + "/" + known);
        }
    }
    std::vector<DirEntry> entries;
    scan_dir(dir_, "new", true, entries);
    scan_dir(dir_, "cur", false, entries);
    for (const auto& e : entries) {
        if (parse_maildir_name(e.name).base != base) continue;
        std::string from = (e.in_new ? "new/" : "cur/") + e.name;
        if (from == to) return std::optional<std::string>(to);
        if (::rename((dir_ + "/" + from).c_str(), (dir_ + "/" + to).c_str()) != 0)
            return fail_errno("rename " + dir_ + "/" + from);
        return std::optional<std::string>(to);
    }
    return std::optional<std::string>();
}

Result<std::optional<SyncResult>> Folder::expunge(const std::vector<std::string>& bases,
                                                  const std::vector<std::string>& known) {
    auto lock = FolderLock::take(dir_);
    if (!lock) return Err{lock.error()};
    std::set<std::string_view> want(bases.begin(), bases.end());
    // Files where the caller last saw them go without a scan; only the rest
    // (renamed elsewhere in between) are looked for.
    for (const auto& k : known) {
        NameInfo info = parse_maildir_name(std::string_view(k).substr(k.find('/') + 1));
        auto it = want.find(info.base);
        if (it == want.end()) continue;
        if (::unlink((dir_ + "/" + k).c_str()) == 0) want.erase(it);
    }
    // All where they were known: the uid list need not change now (a list
    // with entries of files that are gone is valid; the next sync drops
    // them, as after a crash).
    if (want.empty()) return std::optional<SyncResult>();
    std::vector<DirEntry> entries;
    scan_dir(dir_, "new", true, entries);
    scan_dir(dir_, "cur", false, entries);
    for (const auto& e : entries) {
        if (!want.count(parse_maildir_name(e.name).base)) continue;
        std::string path = dir_ + (e.in_new ? "/new/" : "/cur/") + e.name;
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail_errno("unlink " + path);
    }
    auto r = sync_locked(false);
    if (!r) return Err{r.error()};
    return std::optional<SyncResult>(std::move(*r));
}

Result<std::string> Folder::new_unique_name(uint64_t size) {
    struct timeval tv;
    ::gettimeofday(&tv, nullptr);
    mailbox::UniqueParts p;
    p.secs = tv.tv_sec;
    p.usecs = tv.tv_usec;
    p.pid = ::getpid();
    p.counter = counter_next();
    p.host = host_name();
    p.size = size;
    return mailbox::maildir_unique_name(p);
}

Result<std::pair<uint32_t, uint32_t>> Folder::append(std::string_view content, uint8_t flags,
                                                     uint32_t keywords, time_t internal_date,
                                                     std::string* file) {
    auto base = new_unique_name(content.size());
    if (!base) return Err{base.error()};
    std::string rel = "cur/" + maildir_name(*base, flags, keywords);
    if (file) *file = rel;
    std::string target = dir_ + "/" + rel;
    spool::AtomicWriteOptions opt;
    opt.temp_dir = dir_ + "/tmp";
    opt.replace = false;
    if (auto st = spool::atomic_write(target, content, opt); !st) return Err{st.error()};
    if (internal_date > 0) {
        struct timespec ts[2] = {{internal_date, 0}, {internal_date, 0}};
        (void)::utimensat(AT_FDCWD, target.c_str(), ts, 0);
    }
    // Its uid: one entry more in the uid list, flushed before the uid is
    // given out (as a sync would), without scanning the folder.
    auto lock = FolderLock::take(dir_);
    if (!lock) return Err{lock.error()};
    std::string list_path = dir_ + "/" + std::string(kUidListName);
    bool missing = false;
    auto text = read_file(list_path, missing);
    if (!text) return Err{text.error()};
    std::string error;
    std::optional<UidList> list;
    if (!missing) list = parse_uidlist(*text, error);
    if (list) {
        for (const auto& e : list->entries)  // a sync in between gave it one
            if (e.base == *base) return std::make_pair(e.uid, list->validity);
        if (list->next != 0xffffffffu) {
            uint32_t uid = list->next++;
            list->entries.push_back(UidList::Entry{uid, *base});
            if (auto st = spool::atomic_write(list_path, format_uidlist(*list)); !st)
                return Err{st.error()};
            return std::make_pair(uid, list->validity);
        }
    }
    // No valid list (or UIDNEXT exhausted): a full sync rebuilds or says so.
    auto r = sync_locked(false);
    if (!r) return Err{r.error()};
    for (const auto& m : r->messages)
        if (m.base == *base) return std::make_pair(m.uid, r->validity);
    return fail("appended message vanished from " + dir_);
}

Result<uint32_t> Folder::copy_in(const std::string& source_path, uint8_t flags, uint32_t keywords) {
    struct stat st {};
    if (::stat(source_path.c_str(), &st) != 0) return fail_errno("stat " + source_path);
    auto base = new_unique_name(static_cast<uint64_t>(st.st_size));
    if (!base) return Err{base.error()};
    std::string target = dir_ + "/cur/" + maildir_name(*base, flags, keywords);
    if (::link(source_path.c_str(), target.c_str()) != 0) {
        // Another file system (or no hard links): copy the bytes.
        bool missing = false;
        auto text = read_file(source_path, missing);
        if (!text) return Err{text.error()};
        spool::AtomicWriteOptions opt;
        opt.temp_dir = dir_ + "/tmp";
        opt.replace = false;
        if (auto w = spool::atomic_write(target, *text, opt); !w) return Err{w.error()};
        struct timespec ts[2] = {st.st_mtim, st.st_mtim};
        (void)::utimensat(AT_FDCWD, target.c_str(), ts, 0);
    }
    auto r = sync(false);
    if (!r) return Err{r.error()};
    for (const auto& m : r->messages)
        if (m.base == *base) return m.uid;
    return fail("copied message vanished from " + dir_);
}

std::vector<std::string> Folder::keywords() {
    bool missing = false;
    auto text = read_file(dir_ + "/" + std::string(kKeywordsName), missing);
    if (!text) return {};
    return parse_keywords(*text);
}

int Folder::keyword_index(std::string_view name, bool create) {
    auto find = [&](const std::vector<std::string>& names) -> int {
        for (size_t i = 0; i < names.size(); ++i)
            if (!names[i].empty() && names[i].size() == name.size() &&
                std::equal(names[i].begin(), names[i].end(), name.begin(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) ==
                           std::tolower(static_cast<unsigned char>(b));
                }))
                return static_cast<int>(i);
        return -1;
    };
    int idx = find(keywords());
    if (idx >= 0 || !create) return idx;
    auto lock = FolderLock::take(dir_);
    if (!lock) return -1;
    auto names = keywords();
    idx = find(names);
    if (idx >= 0) return idx;
    size_t slot = names.size();
    for (size_t i = 0; i < names.size(); ++i)
        if (names[i].empty()) {
            slot = i;
            break;
        }
    if (slot >= kMaxKeywords) return -1;
    if (slot == names.size()) names.emplace_back();
    names[slot] = std::string(name);
    if (!spool::atomic_write(dir_ + "/" + std::string(kKeywordsName), format_keywords(names)))
        return -1;
    return static_cast<int>(slot);
}

CacheMap Folder::load_cache() {
    bool missing = false;
    auto text = read_file(dir_ + "/" + std::string(kCacheName), missing);
    if (!text || missing) return {};
    if (text->starts_with(kCacheMagicV1)) return {};  // rewritten in format 2
    auto parsed = parse_cache(*text);
    if (!parsed) {
        log::warn(dir_, "/", kCacheName, ": invalid; ignored and rebuilt");
        return {};
    }
    return std::move(*parsed);
}

Status Folder::save_cache(const CacheMap& entries) {
    // Without fsync: the cache is rebuilt from the messages when a crash
    // leaves it short (its checksum fails), so it is not worth a disk flush
    // at every change.
    return write_unsynced(dir_ + "/" + std::string(kCacheName), format_cache(entries));
}

// ---- MailStore -------------------------------------------------------------

std::optional<std::string> MailStore::dir_of(std::string_view name, std::string& error) const {
    auto rel = folder_relpath(name, error);
    if (!rel) return std::nullopt;
    return rel->empty() ? root_ : root_ + "/" + *rel;
}

bool MailStore::exists(std::string_view name) const {
    std::string error;
    auto dir = dir_of(name, error);
    if (!dir) return false;
    struct stat st {};
    return ::lstat((*dir + "/cur").c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> MailStore::list() const {
    std::vector<std::string> out{"INBOX"};
    DIR* d = ::opendir(root_.c_str());
    if (!d) return out;
    while (struct dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n.size() < 2 || n[0] != '.' || n == "..") continue;
        if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
        std::string name(n.substr(1));
        std::string error;
        if (!folder_relpath(name, error) || is_inbox(name)) continue;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st {};
            if (::lstat((root_ + "/" + std::string(n)).c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
                continue;
        }
        out.push_back(std::move(name));
    }
    ::closedir(d);
    std::sort(out.begin() + 1, out.end());
    return out;
}

Status MailStore::create(std::string_view name_in) {
    std::string_view name = name_in;
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);  // "a." = "a"
    std::string error;
    auto dir = dir_of(name, error);
    if (!dir) return fail(error);
    if (is_inbox(name)) return fail("INBOX exists already");
    if (::mkdir(dir->c_str(), 0700) != 0) {
        if (errno == EEXIST) return fail("Mailbox exists already");
        return fail_errno("mkdir");
    }
    for (const char* sub : {"/cur", "/new", "/tmp"})
        if (::mkdir((*dir + sub).c_str(), 0700) != 0 && errno != EEXIST) return fail_errno("mkdir");
    UniqueFd fd(::open((*dir + "/maildirfolder").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    return {};
}

Status MailStore::remove(std::string_view name) {
    if (is_inbox(name)) return fail("INBOX cannot be deleted");
    std::string error;
    auto dir = dir_of(name, error);
    if (!dir) return fail(error);
    if (!exists(name)) return fail("Mailbox does not exist");
    std::error_code ec;
    std::filesystem::remove_all(*dir, ec);
    if (ec) return fail("cannot delete: " + ec.message());
    return {};
}

Status MailStore::rename(std::string_view from, std::string_view to) {
    std::string error;
    auto to_dir = dir_of(to, error);
    if (!to_dir) return fail(error);
    auto from_dir = dir_of(from, error);
    if (!from_dir) return fail(error);
    if (is_inbox(to)) return fail("Cannot rename to INBOX");
    if (!exists(from)) return fail("Mailbox does not exist");
    if (exists(to)) return fail("Target mailbox exists already");
    if (is_inbox(from)) {
        // RFC 3501 §6.3.5: INBOX's messages move to the new folder; INBOX stays, empty.
        if (auto st = create(to); !st) return st;
        auto lock = FolderLock::take(root_);
        if (!lock) return Err{lock.error()};
        for (const char* sub : {"cur", "new"}) {
            std::vector<DirEntry> entries;
            scan_dir(root_, sub, false, entries);
            for (const auto& e : entries) {
                std::string f = std::string(sub) + "/" + e.name;
                if (::rename((root_ + "/" + f).c_str(), (*to_dir + "/" + f).c_str()) != 0)
                    return fail_errno("rename " + f);
            }
        }
        return {};
    }
    std::string prefix = std::string(from) + ".";
    std::vector<std::string> children;
    for (const auto& n : list())
        if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0)
            children.push_back(n);
    if (std::string(to).compare(0, prefix.size(), prefix) == 0)
        return fail("Cannot rename a mailbox into its own hierarchy");
    if (::rename(from_dir->c_str(), to_dir->c_str()) != 0) return fail_errno("rename");
    for (const auto& c : children) {
        std::string new_name = std::string(to) + c.substr(from.size());
        auto a = dir_of(c, error);
        auto b = dir_of(new_name, error);
        if (!a || !b) continue;
        if (::rename(a->c_str(), b->c_str()) != 0) return fail_errno("rename " + c);
    }
    return {};
}

std::vector<std::string> MailStore::subscriptions() const {
    bool missing = false;
    auto text = read_file(root_ + "/" + std::string(kSubscriptionsName), missing);
    std::vector<std::string> out;
    if (!text) return out;
    size_t start = 0;
    while (start < text->size()) {
        size_t end = text->find('\n', start);
        if (end == std::string::npos) end = text->size();
        if (end > start) out.push_back(text->substr(start, end - start));
        start = end + 1;
    }
    return out;
}

Status MailStore::set_subscribed(std::string_view name, bool on) {
    auto lock = FolderLock::take(root_);
    if (!lock) return Err{lock.error()};
    auto subs = subscriptions();
    auto it = std::find(subs.begin(), subs.end(), name);
    if (on && it == subs.end()) subs.emplace_back(name);
    if (!on && it != subs.end()) subs.erase(it);
    std::string text;
    for (const auto& s : subs) text += s + "\n";
    return spool::atomic_write(root_ + "/" + std::string(kSubscriptionsName), text);
}

std::string_view MailStore::special_use(std::string_view name) {
    if (name == "Sent") return "\\Sent";
    if (name == "Drafts") return "\\Drafts";
    if (name == "Trash") return "\\Trash";
    if (name == "Junk") return "\\Junk";
    if (name == "Archive") return "\\Archive";
    return {};
}

Status MailStore::ensure_defaults() {
    if (auto st = mailbox::ensure_maildir(root_); !st) return st;
    std::string marker = root_ + "/" + std::string(kDefaultsMarker);
    struct stat st {};
    if (::lstat(marker.c_str(), &st) == 0) return {};
    for (std::string_view n : {"Drafts", "Sent", "Trash", "Junk", "Archive"}) {
        if (!exists(n)) {
            if (auto s = create(n); !s) return s;
        }
        if (auto s = set_subscribed(n, true); !s) return s;
    }
    return spool::atomic_write(marker, "special-use folders created\n");
}

}  // namespace pbx::imap
