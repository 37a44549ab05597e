// The master's control socket (control/control.sock, ipc::control protocol):
// status for any local user, stop and reload for root (SO_PEERCRED).
#pragma once

#include <memory>

#include "common/result.hpp"
#include "master/supervisor.hpp"

namespace pbx::master {

class ControlServer;

// Starts serving; the returned object stops serving when destroyed.
Result<std::shared_ptr<ControlServer>> start_control(event_base* base, Supervisor& sup,
                                                     const std::string& runtime_dir);

}  // namespace pbx::master
