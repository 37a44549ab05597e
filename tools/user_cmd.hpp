// `pillarbox user ...`: the virtual users file (pillarbox-users(5)).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pbx::tools {

// pillarbox user add NAME [--uid N] [--gid N] [--home DIR] [--mailbox PATH]
//                         [--scheme yescrypt|sha512|bcrypt] [--stdin] [--no-create]
//                | passwd NAME [--scheme ...] [--stdin] | del NAME | list [--json]
// Returns the exit code: 0 done, 1 failed, 2 usage.
int user_command(const std::string& config_path, const std::vector<std::string_view>& args);

}  // namespace pbx::tools
