// Edits of the virtual users file (pillarbox-users(5)) for `pillarbox user`:
// pure functions from the old text to the new one. Comments, blank lines and
// every other user's line are kept byte for byte; the result is parsed again
// before it is returned, so an edit can never produce a file authd refuses.
#pragma once

#include <string>
#include <string_view>

#include "common/auth/users.hpp"
#include "common/result.hpp"

namespace pbx::auth {

// The line of a new user: "name:hash:uid:gid:home:mailbox".
std::string user_line(const VirtualUser& u, std::string_view mailbox_field);

// Appends a user (error: the name exists, or the line is not valid).
Result<std::string> users_add(std::string_view text, const VirtualUser& u,
                              std::string_view mailbox_field);
// Replaces the hash of `name` (error: no such user).
Result<std::string> users_set_hash(std::string_view text, std::string_view name,
                                   std::string_view hash);
// Removes the line of `name` (error: no such user).
Result<std::string> users_remove(std::string_view text, std::string_view name);

// `pillarbox user list --json`: one JSON array, without the hashes.
std::string users_json(const UserTable& table);

}  // namespace pbx::auth
