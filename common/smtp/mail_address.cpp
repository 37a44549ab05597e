// RFC 5322 address lists (mail_headers.hpp parse_address_list): a tokenizer
// that drops white space and comments, then a parser over the tokens that
// splits the list at top-level commas, opens and closes groups, and takes
// each address's addr-spec from its angle brackets or from the whole element.
#include <cctype>
#include <span>
#include <vector>

#include "common/smtp/mail_headers.hpp"

namespace pbx::mail {
namespace {

enum class Tok {
    Word,     // an atom (atext run) or a quoted string, as written
    Literal,  // a domain literal "[...]", as written
    Special,  // one of < > : ; @ , .
};

struct Token {
    Tok kind;
    std::string_view text;
    size_t offset;
    bool is(char c) const { return kind == Tok::Special && text[0] == c; }
};

// RFC 5322 atext, plus octets >= 0x80 (RFC 6532 UTF-8 in headers).
bool is_atext(unsigned char c) {
    if (c >= 0x80) return true;
    if (std::isalnum(c)) return true;
    return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
           std::string_view::npos;
}

Err<AddressError> error(AddressErrc code, size_t offset) {
    return Err<AddressError>{AddressError{code, offset}};
}

// Scans a quoted string or domain literal starting at text[pos] (the opening
// character); returns the offset just past the closing one, or npos.
size_t scan_delimited(std::string_view text, size_t pos, char close) {
    for (size_t i = pos + 1; i < text.size(); ++i) {
        if (text[i] == '\\') {
            ++i;  // the escaped character, whatever it is
        } else if (text[i] == close) {
            return i + 1;
        }
    }
    return std::string_view::npos;
}

Result<std::vector<Token>, AddressError> tokenize(std::string_view text,
                                                  const AddressLimits& limits) {
    std::vector<Token> out;
    size_t i = 0;
    while (i < text.size()) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            // Folding left over (the caller unfolds, but argument lists may
            // hold line breaks from a script): white space between tokens.
            ++i;
        } else if (c == '(') {
            size_t depth = 0;
            size_t start = i;
            for (; i < text.size(); ++i) {
                if (text[i] == '\\') {
                    ++i;
                } else if (text[i] == '(') {
                    if (++depth > limits.max_comment_depth)
                        return error(AddressErrc::CommentTooDeep, i);
                } else if (text[i] == ')') {
                    if (--depth == 0) break;
                }
            }
            if (i >= text.size()) return error(AddressErrc::UnterminatedComment, start);
            ++i;
        } else if (c == '"' || c == '[') {
            size_t end = scan_delimited(text, i, c == '"' ? '"' : ']');
            if (end == std::string_view::npos)
                return error(
                    c == '"' ? AddressErrc::UnterminatedQuote : AddressErrc::UnterminatedLiteral,
                    i);
            out.push_back({c == '"' ? Tok::Word : Tok::Literal, text.substr(i, end - i), i});
            i = end;
        } else if (std::string_view("<>:;@,.").find(static_cast<char>(c)) !=
                   std::string_view::npos) {
            out.push_back({Tok::Special, text.substr(i, 1), i});
            ++i;
        } else if (is_atext(c)) {
            size_t start = i;
            while (i < text.size() && is_atext(static_cast<unsigned char>(text[i]))) ++i;
            out.push_back({Tok::Word, text.substr(start, i - start), start});
        } else {
            return error(AddressErrc::BadCharacter, i);
        }
    }
    return out;
}

// An addr-spec from its tokens: local-part ["@" domain], where the local part
// is words and dots (consecutive or trailing dots included: they occur in the
// wild, and the receiving system decides) and the domain is dot-separated
// atoms or one literal. Returns the address as text, or BadSyntax.
Result<std::string, AddressError> addr_spec(std::span<const Token> toks, size_t where,
                                            const AddressLimits& limits) {
    if (toks.empty()) return error(AddressErrc::BadSyntax, where);
    size_t at = toks.size();
    for (size_t i = 0; i < toks.size(); ++i) {
        if (toks[i].is('@')) {
            at = i;
            break;
        }
    }
    std::string out;
    bool has_word = false;
    for (size_t i = 0; i < at; ++i) {
        if (toks[i].kind == Tok::Word) {
            // Two words without a dot between them are a phrase ("John
            // Doe"), not a local part.
            if (i > 0 && toks[i - 1].kind == Tok::Word)
                return error(AddressErrc::BadSyntax, toks[i].offset);
            has_word = true;
        } else if (!toks[i].is('.')) {
            return error(AddressErrc::BadSyntax, toks[i].offset);
        }
        out += toks[i].text;
    }
    if (!has_word) return error(AddressErrc::BadSyntax, toks[0].offset);
    if (at < toks.size()) {
        std::span<const Token> dom = toks.subspan(at + 1);
        if (dom.empty()) return error(AddressErrc::BadSyntax, toks[at].offset);
        out += '@';
        if (dom.size() == 1 && dom[0].kind == Tok::Literal) {
            out += dom[0].text;
        } else {
            // atom *("." atom); an atom may not be a quoted string here.
            for (size_t i = 0; i < dom.size(); ++i) {
                bool want_atom = i % 2 == 0;
                bool ok =
                    want_atom ? dom[i].kind == Tok::Word && dom[i].text[0] != '"' : dom[i].is('.');
                if (!ok) return error(AddressErrc::BadSyntax, dom[i].offset);
                out += dom[i].text;
            }
            if (dom.size() % 2 == 0) return error(AddressErrc::BadSyntax, dom.back().offset);
        }
    }
    if (out.size() > limits.max_address_length)
        return error(AddressErrc::AddressTooLong, toks[0].offset);
    return out;
}

// One element of the list (between top-level commas): empty, a bare
// addr-spec, or a display name and an angle address.
Result<Unit, AddressError> element(std::span<const Token> toks, size_t where,
                                   const AddressLimits& limits, std::vector<std::string>& out) {
    if (toks.empty()) return Unit{};
    size_t open = toks.size();
    for (size_t i = 0; i < toks.size(); ++i) {
        if (toks[i].is('<')) {
            open = i;
            break;
        }
        if (toks[i].is('>')) return error(AddressErrc::BadSyntax, toks[i].offset);
    }
    std::span<const Token> spec = toks;
    if (open < toks.size()) {
        // The display name before '<' is words and (obs-phrase) dots only.
        for (size_t i = 0; i < open; ++i)
            if (toks[i].kind != Tok::Word && !toks[i].is('.'))
                return error(AddressErrc::BadSyntax, toks[i].offset);
        size_t close = open + 1;
        while (close < toks.size() && !toks[close].is('>')) {
            if (toks[close].is('<')) return error(AddressErrc::BadSyntax, toks[close].offset);
            ++close;
        }
        if (close >= toks.size()) return error(AddressErrc::UnterminatedAngle, toks[open].offset);
        if (close + 1 != toks.size()) return error(AddressErrc::BadSyntax, toks[close + 1].offset);
        spec = toks.subspan(open + 1, close - open - 1);
        // obs-route: "@a,@b:" before the address, thrown away.
        if (!spec.empty() && spec[0].is('@')) {
            size_t colon = 0;
            while (colon < spec.size() && !spec[colon].is(':')) ++colon;
            if (colon >= spec.size()) return error(AddressErrc::BadSyntax, spec[0].offset);
            spec = spec.subspan(colon + 1);
        }
        if (spec.empty()) return error(AddressErrc::BadSyntax, toks[open].offset);
    }
    if (out.size() >= limits.max_addresses)
        return error(AddressErrc::TooManyAddresses, toks[0].offset);
    auto a = addr_spec(spec, where, limits);
    if (!a) return Err{a.error()};
    out.push_back(std::move(*a));
    return Unit{};
}

}  // namespace

std::string AddressError::to_string() const {
    std::string what;
    switch (code) {
        case AddressErrc::BadCharacter:
            what = "a character that has no place in an address";
            break;
        case AddressErrc::UnterminatedQuote:
            what = "unterminated quoted string";
            break;
        case AddressErrc::UnterminatedComment:
            what = "unterminated comment";
            break;
        case AddressErrc::UnterminatedLiteral:
            what = "unterminated domain literal";
            break;
        case AddressErrc::UnterminatedAngle:
            what = "'<' without '>'";
            break;
        case AddressErrc::CommentTooDeep:
            what = "comments nested too deeply";
            break;
        case AddressErrc::NestedGroup:
            what = "a group inside a group";
            break;
        case AddressErrc::BadSyntax:
            what = "not an address";
            break;
        case AddressErrc::AddressTooLong:
            what = "address too long";
            break;
        case AddressErrc::TooManyAddresses:
            what = "too many addresses";
            break;
    }
    return what + " at offset " + std::to_string(offset);
}

Result<std::vector<std::string>, AddressError> parse_address_list(std::string_view text,
                                                                  const AddressLimits& limits) {
    auto toks = tokenize(text, limits);
    if (!toks) return Err{toks.error()};
    std::span<const Token> all = *toks;
    std::vector<std::string> out;
    bool in_group = false;
    bool angle = false;  // inside <...>: ',' and ':' belong to an obs-route
    size_t start = 0;
    for (size_t i = 0; i <= all.size(); ++i) {
        bool at_end = i == all.size();
        if (!at_end) {
            const Token& t = all[i];
            if (t.is('<')) angle = true;
            if (t.is('>')) angle = false;
            if (angle) continue;
            if (t.is(':')) {
                if (in_group) return error(AddressErrc::NestedGroup, t.offset);
                // The tokens before the colon are the group's display name.
                for (size_t k = start; k < i; ++k)
                    if (all[k].kind != Tok::Word && !all[k].is('.'))
                        return error(AddressErrc::BadSyntax, all[k].offset);
                if (start == i) return error(AddressErrc::BadSyntax, t.offset);
                in_group = true;
                start = i + 1;
                continue;
            }
            if (t.is(';')) {
                if (!in_group) return error(AddressErrc::BadSyntax, t.offset);
                if (auto r = element(all.subspan(start, i - start), t.offset, limits, out); !r)
                    return Err{r.error()};
                in_group = false;
                // Only a comma (or the end) may follow a group.
                if (i + 1 < all.size() && !all[i + 1].is(','))
                    return error(AddressErrc::BadSyntax, all[i + 1].offset);
                start = i + 1;
                continue;
            }
            if (!t.is(',')) continue;
        }
        if (angle) return error(AddressErrc::UnterminatedAngle, text.size());
        size_t where = at_end ? text.size() : all[i].offset;
        if (auto r = element(all.subspan(start, i - start), where, limits, out); !r)
            return Err{r.error()};
        start = i + 1;
    }
    return out;
}

}  // namespace pbx::mail
