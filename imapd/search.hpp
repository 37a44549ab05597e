// SEARCH (RFC 3501 §6.4.4): the search program parsed from command
// arguments, evaluated against one message at a time. Pure: the message's
// text is only asked for when a key needs it.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imapd/decode.hpp"
#include "imapd/parser.hpp"

namespace pbx::imap {

struct SearchKey {
    enum class Op {
        All,
        And,
        Or,
        Not,
        Flag,    // flag bit set (flags & bit)
        NoFlag,  // flag bit clear
        Recent,
        NotRecent,
        New,
        Old,
        Keyword,
        Unkeyword,
        Header,  // header field `field` contains `text` ("" field: any)
        Body,
        Text,
        Larger,
        Smaller,
        Before,
        On,
        Since,  // internal date, in days
        SentBefore,
        SentOn,
        SentSince,  // Date: header, in days
        Sequence,
        Uid,
    };
    Op op = Op::All;
    uint8_t flag = 0;
    std::string field, text;
    uint64_t number = 0;
    int64_t days = 0;
    SequenceSet set;
    std::vector<SearchKey> children;  // And: all; Or: two; Not: one
};

// Parses args[start..] (after an optional "CHARSET x"): a search program.
// `bad_charset` is set when the charset is not UTF-8/US-ASCII (NO [BADCHARSET]).
std::optional<SearchKey> parse_search(const std::vector<Value>& args, size_t start,
                                      std::string& error, bool& bad_charset);

struct SearchMessage {
    uint32_t seq = 0, uid = 0;
    uint8_t flags = 0;
    bool recent = false;
    std::vector<std::string> keywords;       // names
    int64_t internal_days = 0;               // days since 1970-01-01 of the internal date
    uint64_t size = 0;                       // RFC822.SIZE
    std::function<std::string_view()> text;  // the whole message, CRLF
    // When set: cached_search_fields() of the message (from the folder's
    // cache), which the SUBJECT, FROM, TO, CC and BCC keys use instead of
    // text(), so that searching them reads no message file.
    const std::string* fields = nullptr;
    // Its decoded, case-folded header and body text (decode.hpp), made by
    // the first BODY/TEXT/HEADER key that needs them.
    mutable std::optional<SearchableText> folded;
};

bool search_match(const SearchKey& key, const SearchMessage& m, uint32_t max_seq, uint32_t max_uid);

// The lines of a message's decoded, case-folded header ("name: value\n",
// as SearchableText's header after fold_case) of the fields Subject, From,
// To, Cc and Bcc: what SearchMessage::fields holds. `msg` is the message
// (or its header section), CRLF.
std::string cached_search_fields(std::string_view msg, const MimePart& root);
// True when a Header key on `field` can be answered from those lines.
bool is_cached_search_field(std::string_view field);

// "1-Feb-1994" → days since the epoch.
std::optional<int64_t> parse_imap_date(std::string_view s);
// An RFC 5322 date ("Tue, 1 Feb 1994 10:00:00 +0100") → days since the
// epoch of its date part, as written (the zone is disregarded, RFC 3501).
std::optional<int64_t> parse_rfc5322_date_days(std::string_view s);
// "01-Feb-1994 10:00:00 +0100" (APPEND date-time) → time_t.
std::optional<time_t> parse_imap_datetime(std::string_view s);
// Days since the epoch of a civil date.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);

}  // namespace pbx::imap
