// The master's filesystem duties: the runtime directory with one directory per
// IPC channel (DESIGN §3), the reachability check for dropped programs, and
// sd_notify for systemd's Type=notify.
#pragma once

#include <string>
#include <string_view>

#include "common/config/config.hpp"
#include "common/result.hpp"

namespace pbx::master {

// Every ancestor of `path` (not `path` itself) must let others traverse it
// (o+x): the programs
// run as their own users and reach files only by paths they may traverse.
Status check_traversable(const std::string& path);

// Creates runtime_dir (root, 0755) and its channel directories, each owned by
// the user of the program that serves it.
Status prepare_runtime_dir(const config::Config& cfg);

// Sends a state string to $NOTIFY_SOCKET when running under systemd.
void sd_notify(std::string_view state);

}  // namespace pbx::master
