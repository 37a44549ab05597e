#include "tools/commands.hpp"

#include <cstdio>

#include "tools/queue_cmd.hpp"
#include "tools/user_cmd.hpp"

namespace pbx::tools {

int dispatch(const std::string& config_path, std::string_view cmd,
             const std::vector<std::string_view>& args) {
    if (cmd == "queue") return queue_command(config_path, args);
    if (cmd == "user") return user_command(config_path, args);
    std::fprintf(stderr, "pillarbox: unknown command '%.*s' (pillarbox --help lists them)\n",
                 static_cast<int>(cmd.size()), cmd.data());
    return 2;
}

}  // namespace pbx::tools
