// The service skeleton every daemon starts through (STYLE item 1; Postfix
// single_server_main, Dovecot login_binary_run). A program's main.cpp only
// fills in a ServiceSpec; run_service() performs, in this fixed order:
//
//   flags and environment (master_interface.hpp) → configuration → logging →
//   inherited listeners → resolve the run-as user → pre_drop (as root: keys,
//   CA bundle, directories) → privsep::drop → event base → post_drop →
//   event loop → on_stop / exit
//
// so no program can skip or reorder the drop. Session programs (spec.session)
// are the one exception: the master drops them before exec, and the
// skeleton checks the result instead of dropping.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/config/config.hpp"
#include "common/privsep/privsep.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx {

struct InheritedListener {
    std::string name;  // LISTEN_FDNAMES entry: "smtp", "submissions", ...
    UniqueFd fd;
    bool implicit_tls = false;
};

enum class Chroot {
    None,
    RuntimeDir,  // the socket chroot of DESIGN §2
};

struct ServiceContext {
    std::string name;
    config::Config config;
    std::vector<InheritedListener> listeners;
    EventBasePtr base;  // created after the drop
    bool foreground = false;
    // Set by the SIGTERM handler before on_stop runs.
    bool stopping = false;
    // The resolved drop; its uid/gid are useful for files created in pre_drop.
    privsep::DropSpec drop;

    // Path of an IPC socket, relative to the runtime directory (for example
    // "queue/enqueue.sock"): absolute before a chroot into the runtime
    // directory, relative to "/" after it.
    std::string runtime_path(std::string_view relative) const;
    bool chrooted_to_runtime = false;
};

struct ServiceSpec {
    const char* name;  // also the syslog ident; a string literal
    // Run-as user. Empty with allow_root: stays uid 0 (local-delivery's parent).
    std::string_view user;
    Chroot chroot = Chroot::None;
    privsep::KeepCaps keep_caps = privsep::KeepCaps::None;
    bool login_process = false;  // cannot fork, not dumpable
    // A mail session (pop3d, imapd; common/session_interface.hpp): started by
    // the master already dropped to the mail user, so there is no drop here:
    // the skeleton refuses uid/gid 0 and any capability instead, sets
    // NO_NEW_PRIVS, and inherits no listeners. `user` must be empty.
    bool session = false;
    bool allow_root = false;
    // Extra groups kept after the drop (authd: "shadow" to read /etc/shadow).
    // A group that does not exist is skipped with a warning.
    std::vector<std::string_view> supplementary_groups;
    std::function<Status(ServiceContext&)> pre_drop;
    std::function<Status(ServiceContext&)> post_drop;
    // Called on SIGTERM/SIGINT; the default ends the event loop at once.
    std::function<void(ServiceContext&)> on_stop;
};

// Runs the program; returns the process exit code (0 after a clean stop).
int run_service(const ServiceSpec& spec, int argc, char** argv);

}  // namespace pbx
