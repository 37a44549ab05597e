// Sender ownership for submission (submitd's sender policy, authd's `owns`):
// may the authenticated user send as this address, in the envelope or in
// From:? A pure function of the configuration, the users and aliases files
// and the system account database, like resolve_recipient().
//
// A user owns:
//  - their own address in each of our domains, with or without a +detail
//    (the address resolves to that very user);
//  - every alias of our domains whose expansion reaches the user (nested
//    aliases followed, depth and size bounded): staff: alice, bob lets both
//    send as staff@;
//  - what submission_sender_map gives them: "user:addr@domain" (that
//    address), "user:@domain" (any address of the domain), "user:*" (any
//    address: the per-user override of the whole check).
// The null sender "" is owned by everybody (bounces, read receipts).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/auth/aliases.hpp"
#include "common/auth/resolve.hpp"
#include "common/auth/system_users.hpp"
#include "common/auth/users.hpp"
#include "common/result.hpp"

namespace pbx::auth {

struct SenderMapEntry {
    std::string user;     // lower case
    std::string pattern;  // lower case: "addr@domain", "@domain" or "*"
};

// Parses submission_sender_map's entries; the error quotes the bad entry.
Result<std::vector<SenderMapEntry>, std::string> parse_sender_map(
    const std::vector<std::string>& entries);

struct OwnershipLimits {
    int max_depth = 10;         // nested aliases
    size_t max_visited = 1000;  // aliases and addresses looked at for one question
};

bool owns_sender(std::string_view user, std::string_view address,
                 const std::vector<SenderMapEntry>& map, const ResolverSettings& settings,
                 const UserTable& users, const AliasMap& aliases, const SystemUsers& system,
                 const OwnershipLimits& limits = {});

}  // namespace pbx::auth
