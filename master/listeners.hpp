// Binding the network listeners: only the master does this (DESIGN §2).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::master {

struct BoundListener {
    std::string kind;      // "smtp", "submissions", ...
    std::string endpoint;  // "127.0.0.1:10025", "[::1]:10025"
    UniqueFd fd;
};

// Key that identifies a listener across reloads.
std::string listener_key(const std::string& kind, const std::string& endpoint);

// Binds every listener the config asks for. Sockets in `keep` whose key is
// still configured are reused (moved out of it) instead of being re-bound, so
// a reload never drops a listening socket that did not change.
Result<std::vector<BoundListener>> bind_listeners(const config::Config& cfg,
                                                  std::map<std::string, UniqueFd>& keep);

}  // namespace pbx::master
