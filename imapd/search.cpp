#include "imapd/search.hpp"

#include <algorithm>
#include <cctype>

#include "imapd/mime.hpp"
#include "imapd/store.hpp"

namespace pbx::imap {

namespace {

constexpr const char* kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};

int month_of(std::string_view s) {
    for (int i = 0; i < 12; ++i)
        if (iequals(s, kMonths[i])) return i + 1;
    return 0;
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int to_int(std::string_view s) {
    int v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    return v;
}

struct Parser {
    const std::vector<Value>& args;
    size_t pos;
    std::string error;
    size_t depth = 0;

    const Value* next() { return pos < args.size() ? &args[pos++] : nullptr; }

    bool astring(std::string& out) {
        const Value* v = next();
        if (!v || !v->is_astring()) {
            error = "Missing string argument";
            return false;
        }
        out = v->text;
        return true;
    }
    bool number(uint64_t& out) {
        const Value* v = next();
        if (!v || !v->is_atom() || !all_digits(v->text) || v->text.size() > 19) {
            error = "Missing number argument";
            return false;
        }
        out = 0;
        for (char c : v->text) out = out * 10 + static_cast<uint64_t>(c - '0');
        return true;
    }
    bool date(int64_t& out) {
        const Value* v = next();
        if (!v || !v->is_astring()) {
            error = "Missing date argument";
            return false;
        }
        auto d = parse_imap_date(v->text);
        if (!d) {
            error = "Invalid date (expected e.g. 1-Feb-2024)";
            return false;
        }
        out = *d;
        return true;
    }

    bool key(SearchKey& k) {
        const Value* v = next();
        if (!v) {
            error = "Missing search key";
            return false;
        }
        if (++depth > 64) {
            error = "Search program too deeply nested";
            return false;
        }
        using Op = SearchKey::Op;
        if (v->is_list()) {
            Parser sub{v->list, 0, {}, depth};
            k.op = Op::And;
            if (v->list.empty()) {
                error = "Empty search key list";
                return false;
            }
            while (sub.pos < v->list.size()) {
                SearchKey c;
                if (!sub.key(c)) {
                    error = sub.error;
                    return false;
                }
                k.children.push_back(std::move(c));
            }
            --depth;
            return true;
        }
        if (!v->is_atom()) {
            error = "Search key expected, got a string";
            return false;
        }
        std::string name = upper(v->text);
        struct FlagKey {
            const char* name;
            uint8_t flag;
            bool set;
        };
        static const FlagKey flags[] = {
            {"ANSWERED", kFlagAnswered, true},  {"DELETED", kFlagDeleted, true},
            {"DRAFT", kFlagDraft, true},        {"FLAGGED", kFlagFlagged, true},
            {"SEEN", kFlagSeen, true},          {"UNANSWERED", kFlagAnswered, false},
            {"UNDELETED", kFlagDeleted, false}, {"UNDRAFT", kFlagDraft, false},
            {"UNFLAGGED", kFlagFlagged, false}, {"UNSEEN", kFlagSeen, false},
        };
        bool ok = true;
        for (const auto& f : flags)
            if (name == f.name) {
                k.op = f.set ? Op::Flag : Op::NoFlag;
                k.flag = f.flag;
                --depth;
                return true;
            }
        if (name == "ALL") {
            k.op = Op::All;
        } else if (name == "NEW") {
            k.op = Op::New;
        } else if (name == "OLD") {
            k.op = Op::Old;
        } else if (name == "RECENT") {
            k.op = Op::Recent;
        } else if (name == "KEYWORD" || name == "UNKEYWORD") {
            k.op = name == "KEYWORD" ? Op::Keyword : Op::Unkeyword;
            ok = astring(k.text);
        } else if (name == "BCC" || name == "CC" || name == "FROM" || name == "SUBJECT" ||
                   name == "TO") {
            k.op = Op::Header;
            k.field = name;
            ok = astring(k.text);
        } else if (name == "HEADER") {
            k.op = Op::Header;
            ok = astring(k.field) && astring(k.text);
        } else if (name == "BODY") {
            k.op = Op::Body;
            ok = astring(k.text);
        } else if (name == "TEXT") {
            k.op = Op::Text;
            ok = astring(k.text);
        } else if (name == "LARGER" || name == "SMALLER") {
            k.op = name == "LARGER" ? Op::Larger : Op::Smaller;
            ok = number(k.number);
        } else if (name == "BEFORE" || name == "ON" || name == "SINCE" || name == "SENTBEFORE" ||
                   name == "SENTON" || name == "SENTSINCE") {
            k.op = name == "BEFORE"       ? Op::Before
                   : name == "ON"         ? Op::On
                   : name == "SINCE"      ? Op::Since
                   : name == "SENTBEFORE" ? Op::SentBefore
                   : name == "SENTON"     ? Op::SentOn
                                          : Op::SentSince;
            ok = date(k.days);
        } else if (name == "NOT") {
            k.op = Op::Not;
            k.children.emplace_back();
            ok = key(k.children.back());
        } else if (name == "OR") {
            k.op = Op::Or;
            k.children.resize(2);
            ok = key(k.children[0]) && key(k.children[1]);
        } else if (name == "UID") {
            k.op = Op::Uid;
            const Value* s = next();
            auto set = s && s->is_atom() ? parse_sequence_set(s->text) : std::nullopt;
            if (!set) {
                error = "Invalid UID set";
                return false;
            }
            k.set = std::move(*set);
        } else if (auto set = parse_sequence_set(v->text)) {
            k.op = Op::Sequence;
            k.set = std::move(*set);
        } else {
            error = "Unknown search key " + v->text;
            return false;
        }
        --depth;
        return ok;
    }
};

const SearchableText& folded_text(const SearchMessage& m) {
    if (!m.folded) {
        std::string_view msg = m.text();
        SearchableText t = searchable_text(msg, parse_mime(msg));
        m.folded = SearchableText{fold_case(t.header), fold_case(t.body)};
    }
    return *m.folded;
}

// HEADER field string: some field `field` (any field when empty) whose
// decoded value contains the string, case-insensitively.
bool header_contains(const SearchMessage& m, std::string_view field, std::string_view text) {
    const std::string needle = fold_case(text);
    std::string_view header = m.fields && is_cached_search_field(field)
                                  ? std::string_view(*m.fields)
                                  : std::string_view(folded_text(m).header);
    if (field.empty()) return header.find(needle) != std::string_view::npos;
    const std::string name = fold_case(field);
    // folded_text's header: one "name: value" line per field.
    for (size_t pos = 0; pos < header.size();) {
        size_t eol = header.find('\n', pos);
        if (eol == std::string_view::npos) eol = header.size();
        std::string_view line = header.substr(pos, eol - pos);
        pos = eol + 1;
        if (line.size() >= name.size() + 2 && line.starts_with(name) &&
            line.substr(name.size(), 2) == ": " &&
            line.substr(name.size() + 2).find(needle) != std::string_view::npos)
            return true;
    }
    return false;
}

}  // namespace

bool is_cached_search_field(std::string_view field) {
    for (std::string_view f : {"subject", "from", "to", "cc", "bcc"})
        if (iequals(field, f)) return true;
    return false;
}

std::string cached_search_fields(std::string_view msg, const MimePart& root) {
    MimePart head;  // the header alone: no body, no parts
    head.start = root.start;
    head.body = head.end = root.body;
    const std::string header = fold_case(searchable_text(msg, head).header);
    std::string out;
    for (size_t pos = 0; pos < header.size();) {
        size_t eol = header.find('\n', pos);
        if (eol == std::string::npos) eol = header.size();
        std::string_view line = std::string_view(header).substr(pos, eol - pos);
        pos = eol + 1;
        size_t colon = line.find(": ");
        if (colon != std::string_view::npos && is_cached_search_field(line.substr(0, colon))) {
            out.append(line);
            out += '\n';
        }
    }
    return out;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    // Howard Hinnant's algorithm.
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

std::optional<int64_t> parse_imap_date(std::string_view s) {
    size_t a = s.find('-');
    if (a == std::string_view::npos) return std::nullopt;
    size_t b = s.find('-', a + 1);
    if (b == std::string_view::npos) return std::nullopt;
    std::string_view d = s.substr(0, a), m = s.substr(a + 1, b - a - 1), y = s.substr(b + 1);
    if (!d.empty() && d[0] == ' ') d.remove_prefix(1);
    if (!all_digits(d) || d.size() > 2 || !all_digits(y) || y.size() != 4) return std::nullopt;
    int month = month_of(m);
    int day = to_int(d);
    if (!month || day < 1 || day > 31) return std::nullopt;
    return days_from_civil(to_int(y), static_cast<unsigned>(month), static_cast<unsigned>(day));
}

std::optional<int64_t> parse_rfc5322_date_days(std::string_view s) {
    // [day-of-week ","] day month year ...
    std::vector<std::string_view> words;
    size_t i = 0;
    while (i < s.size() && words.size() < 4) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) ++i;
        size_t start = i;
        while (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != ',') ++i;
        if (i > start) words.push_back(s.substr(start, i - start));
    }
    size_t k = 0;
    if (!words.empty() && !all_digits(words[0])) k = 1;  // day of week
    if (words.size() < k + 3) return std::nullopt;
    std::string_view d = words[k], m = words[k + 1], y = words[k + 2];
    int month = month_of(m);
    if (!all_digits(d) || d.size() > 2 || !all_digits(y) || !month) return std::nullopt;
    int year = to_int(y);
    if (y.size() == 2) year += year < 50 ? 2000 : 1900;
    return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(to_int(d)));
}

std::optional<time_t> parse_imap_datetime(std::string_view s) {
    // "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d")
    if (s.size() != 26) return std::nullopt;
    auto days = parse_imap_date(s.substr(0, 11));
    if (!days || s[11] != ' ' || s[14] != ':' || s[17] != ':' || s[20] != ' ') return std::nullopt;
    std::string_view hh = s.substr(12, 2), mm = s.substr(15, 2), ss = s.substr(18, 2),
                     zone = s.substr(21, 5);
    if (!all_digits(hh) || !all_digits(mm) || !all_digits(ss) ||
        (zone[0] != '+' && zone[0] != '-') || !all_digits(zone.substr(1)))
        return std::nullopt;
    int h = to_int(hh), mi = to_int(mm), se = to_int(ss);
    if (h > 23 || mi > 59 || se > 60) return std::nullopt;
    int zh = to_int(zone.substr(1, 2)), zm = to_int(zone.substr(3, 2));
    int64_t offset = (zh * 60 + zm) * 60 * (zone[0] == '-' ? -1 : 1);
    int64_t t = *days * 86400 + h * 3600 + mi * 60 + se - offset;
    return static_cast<time_t>(t);
}

std::optional<SearchKey> parse_search(const std::vector<Value>& args, size_t start,
                                      std::string& error, bool& bad_charset) {
    bad_charset = false;
    if (start + 1 < args.size() && args[start].is_atom() && iequals(args[start].text, "CHARSET")) {
        const Value& cs = args[start + 1];
        if (!cs.is_astring()) {
            error = "Invalid charset";
            return std::nullopt;
        }
        if (!iequals(cs.text, "UTF-8") && !iequals(cs.text, "US-ASCII")) {
            bad_charset = true;
            error = "Unsupported charset";
            return std::nullopt;
        }
        start += 2;
    }
    if (start >= args.size()) {
        error = "Missing search program";
        return std::nullopt;
    }
    Parser p{args, start};
    SearchKey all;
    all.op = SearchKey::Op::And;
    while (p.pos < args.size()) {
        SearchKey k;
        if (!p.key(k)) {
            error = p.error;
            return std::nullopt;
        }
        all.children.push_back(std::move(k));
    }
    return all;
}

bool search_match(const SearchKey& k, const SearchMessage& m, uint32_t max_seq, uint32_t max_uid) {
    using Op = SearchKey::Op;
    switch (k.op) {
        case Op::All:
            return true;
        case Op::And:
            for (const auto& c : k.children)
                if (!search_match(c, m, max_seq, max_uid)) return false;
            return true;
        case Op::Or:
            return search_match(k.children[0], m, max_seq, max_uid) ||
                   search_match(k.children[1], m, max_seq, max_uid);
        case Op::Not:
            return !search_match(k.children[0], m, max_seq, max_uid);
        case Op::Flag:
            return (m.flags & k.flag) != 0;
        case Op::NoFlag:
            return (m.flags & k.flag) == 0;
        case Op::Recent:
            return m.recent;
        case Op::NotRecent:
            return !m.recent;
        case Op::New:
            return m.recent && !(m.flags & kFlagSeen);
        case Op::Old:
            return !m.recent;
        case Op::Keyword:
        case Op::Unkeyword: {
            bool has = std::any_of(m.keywords.begin(), m.keywords.end(),
                                   [&](const std::string& kw) { return iequals(kw, k.text); });
            return k.op == Op::Keyword ? has : !has;
        }
        case Op::Header:
            return header_contains(m, k.field, k.text);
        case Op::Body:
            return folded_text(m).body.find(fold_case(k.text)) != std::string::npos;
        case Op::Text: {
            const std::string needle = fold_case(k.text);
            const SearchableText& t = folded_text(m);
            return t.header.find(needle) != std::string::npos ||
                   t.body.find(needle) != std::string::npos;
        }
        case Op::Larger:
            return m.size > k.number;
        case Op::Smaller:
            return m.size < k.number;
        case Op::Before:
            return m.internal_days < k.days;
        case Op::On:
            return m.internal_days == k.days;
        case Op::Since:
            return m.internal_days >= k.days;
        case Op::SentBefore:
        case Op::SentOn:
        case Op::SentSince: {
            std::string_view t = m.text();
            size_t body = t.find("\r\n\r\n");
            auto date = header_field(
                t.substr(0, body == std::string_view::npos ? t.size() : body + 2), "Date");
            std::optional<int64_t> d = date ? parse_rfc5322_date_days(*date) : std::nullopt;
            // No usable Date: the internal date stands in (as Dovecot does).
            int64_t days = d ? *d : m.internal_days;
            if (k.op == Op::SentBefore) return days < k.days;
            if (k.op == Op::SentOn) return days == k.days;
            return days >= k.days;
        }
        case Op::Sequence:
            return k.set.contains(m.seq, max_seq);
        case Op::Uid:
            return k.set.contains(m.uid, max_uid);
    }
    return false;
}

}  // namespace pbx::imap
