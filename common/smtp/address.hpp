// RFC 5321 addresses as they appear in MAIL FROM and RCPT TO: the Path
// grammar (with the obsolete source route, parsed and thrown away), quoted
// local parts, address literals and, with SMTPUTF8 (RFC 6531), UTF-8 in the
// local part and the domain. Also the small grammars that travel with
// addresses: xtext (RFC 3461), EHLO/HELO arguments and UTF-8 validation.
//
// Everything here is a pure function over std::string_view: it never reads
// past its input and never modifies it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::smtp {

// RFC 5321 4.5.3.1: limits every implementation must accept and that we
// refuse to exceed; they are protocol constants, not tunables.
inline constexpr size_t kMaxLocalPart = 64;
inline constexpr size_t kMaxDomain = 255;
inline constexpr size_t kMaxPath = 256;  // "<" ... ">" included

struct Address {
    // The local part exactly as written (a quoted local part keeps its quotes
    // and backslashes), so that it can be passed on unchanged.
    std::string local;
    // The domain as written: a name, or an address literal with its
    // brackets ("[192.0.2.1]", "[IPv6:2001:db8::1]"). Empty for the null
    // path "<>" and for the domain-less "<postmaster>".
    std::string domain;

    bool is_null() const { return local.empty() && domain.empty(); }
    bool is_literal() const { return !domain.empty() && domain.front() == '['; }
    // "local@domain", "postmaster" or "" (null path).
    std::string str() const;
};

enum class AddressError {
    Syntax,            // not a Path per RFC 5321 4.1.2
    LocalPartTooLong,  // > kMaxLocalPart
    DomainTooLong,     // > kMaxDomain
    PathTooLong,       // > kMaxPath
};
std::string_view to_string(AddressError e);

struct PathOptions {
    bool allow_null = false;        // "<>" (MAIL FROM only)
    bool allow_postmaster = false;  // "<postmaster>" without domain (RCPT TO only)
};

struct ParsedPath {
    Address address;
    size_t consumed = 0;  // bytes of the input up to and including ">"
    bool utf8 = false;    // the path holds non-ASCII (only legal with SMTPUTF8)
};

// Parses a Path that starts at text[0] ("<"); the rest of `text` (ESMTP
// parameters) is left alone. Non-ASCII must be valid UTF-8 and is reported
// through ParsedPath::utf8: whether it is allowed is the caller's decision.
Result<ParsedPath, AddressError> parse_path(std::string_view text, const PathOptions& options);

// A Domain (RFC 5321 4.1.2), ASCII or with UTF-8 labels when allow_utf8.
bool valid_domain(std::string_view domain, bool allow_utf8);
// "[...]" address literal: IPv4, "IPv6:" + IPv6, or a General-address-literal.
bool valid_address_literal(std::string_view literal);
// The argument of EHLO/HELO: a domain or an address literal. Real clients
// send underscores and single labels, so those are accepted; spaces,
// controls, non-ASCII and empty labels are not.
bool valid_helo(std::string_view name);

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view text);

// xtext (RFC 3461 4): printable ASCII except "+" and "=", with "+HH"
// (upper-case hex) for anything else.
Result<std::string, Unit> xtext_decode(std::string_view text);
std::string xtext_encode(std::string_view text);

// ASCII case-insensitive comparison (domains, verbs, keywords).
bool iequals(std::string_view a, std::string_view b);
bool istarts_with(std::string_view text, std::string_view prefix);

}  // namespace pbx::smtp
