// Recipient resolution: is this address ours, and if so, who is it? A pure
// function of the configuration (ResolverSettings), the users file, the
// aliases file and the system account database (an interface, faked in
// tests). authd answers `rcpt` and `domain` with it; local-delivery can use
// the same function before expanding aliases.
//
// Rules (pillarbox-users(5) and authd(8) describe them for administrators):
//  - The address is split at its last '@'; the domain is compared without
//    regard to case and must be listed in `domains`, otherwise the address
//    is Remote. A domain with a trailing dot, an empty domain or local part,
//    white space or control characters make the address Invalid. An address
//    without '@' is a bare local part of ours (sendmail, `postmaster`).
//  - The local part is case-insensitive (a quoted local part is unquoted
//    first). It is looked up whole, then, if it holds one of the characters
//    of `recipient_delimiter` (default "+", empty disables subaddressing),
//    as the part before the first such character; the rest is the detail.
//  - Lookup order: aliases, then the users file, then (system_users = yes
//    only) system accounts with uid >= 1000 other than nobody. System
//    accounts like daemon or mail receive mail only through an alias.
//  - postmaster (any case, with or without one of our domains) always
//    exists, even when no alias or user has that name (RFC 5321 §4.5.1).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/auth/aliases.hpp"
#include "common/auth/system_users.hpp"
#include "common/auth/users.hpp"

namespace pbx::config {
class Config;
}

namespace pbx::auth {

struct ResolverSettings {
    std::vector<std::string> domains;  // lower case
    // Also local: the queue-manager qualifies local senders and postmaster
    // with it and routes it to local delivery (config myhostname, else the
    // host name).
    std::string myhostname;
    std::string recipient_delimiter = "+";
    bool system_users = false;
    std::string default_privs = "nobody";  // runs commands and files of aliases
    // System users' mailbox relative to their home ("Maildir/": a Maildir,
    // "Mailbox": an mbox); empty: /var/mail/NAME (mbox).
    std::string home_mailbox;
    // submission_sender_map as written (senders.hpp parses it).
    std::vector<std::string> sender_map;

    // From the keys default_privs, domains, home_mailbox, recipient_delimiter,
    // system_users and submission_sender_map.
    static ResolverSettings from_config(const config::Config& cfg);
    // Case-insensitive; a trailing dot never matches.
    bool is_local_domain(std::string_view domain) const;
};

struct ResolveLimits {
    size_t max_address = 320;  // RFC 5321: 64 + 1 + 255
    size_t max_local_part = 64;
};

enum class RcptStatus {
    Local,    // ours and deliverable
    Unknown,  // ours, but no such user or alias
    Remote,   // not one of our domains
    Invalid,  // not an address we accept at all (reason says why)
};
enum class LocalKind { Alias, User, SystemUser, Postmaster };

std::string_view to_string(RcptStatus s);
std::string_view to_string(LocalKind k);

struct Resolution {
    RcptStatus status = RcptStatus::Invalid;
    LocalKind kind = LocalKind::User;  // Local only
    // Local: the user or alias name found (lower case, no detail).
    // Unknown: the lower-cased local part.
    std::string name;
    std::string detail;  // after the delimiter, as written; empty when none
    char delimiter = 0;  // the delimiter character that was used, 0 = none
    std::string domain;  // lower case; empty for a bare local part
    std::string reason;  // Invalid: why

    // "name+detail@domain" (the delimiter as written), for logs and replies.
    std::string canonical() const;
};

Resolution resolve_recipient(std::string_view address, const ResolverSettings& settings,
                             const UserTable& users, const AliasMap& aliases,
                             const SystemUsers& system, const ResolveLimits& limits = {});

}  // namespace pbx::auth
