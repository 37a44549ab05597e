// `pillarbox queue ...`: the queue-manager's administration (queue-manager(8)).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pbx::tools {

// pillarbox queue list [--json] | show ID... [--json] | hold ID... |
// release ID... | delete ID... | flush [ID...]
// Sends admin requests on the enqueue socket (SO_PEERCRED decides: list for
// everyone, the rest for root) and prints the replies. Returns the exit code:
// 0 all ok, 1 an operation failed or the queue-manager is unreachable, 2 usage.
int queue_command(const std::string& config_path, const std::vector<std::string_view>& args);

}  // namespace pbx::tools
