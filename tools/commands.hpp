// Sub-commands of pillarbox(8) that live in their own files (queue, user, ...)
// register here, so pillarbox.cpp stays a short dispatcher.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pbx::tools {

// Runs `pillarbox CMD ARGS...` for the commands not handled in pillarbox.cpp;
// returns the exit code (2 and the usage text for an unknown command).
int dispatch(const std::string& config_path, std::string_view cmd,
             const std::vector<std::string_view>& args);

}  // namespace pbx::tools
