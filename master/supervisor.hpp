// The supervisor: owns the listeners and the children. It starts every
// enabled program with its sockets (master_interface.hpp), restarts a child
// that dies (at once the first time, with backoff capped at 10 s only after
// repeated fast crashes), reloads on SIGHUP and stops everything on SIGTERM.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/config/config.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "master/listeners.hpp"
#include "master/programs.hpp"

namespace pbx::master {

class SessionLauncher;

// "exit status 1", "signal 9 (SIGKILL)": a wait status for the log.
std::string describe_exit(int status);

struct Options {
    std::string config_path;
    bool foreground = false;
    bool debug = false;
};

class Supervisor {
  public:
    using Clock = std::chrono::steady_clock;

    Supervisor(event_base* base, Options opts);
    ~Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    // Loads the config, binds the listeners, prepares the runtime directory
    // and starts the children. A failure here means the master cannot run.
    Status start();
    // Re-reads and checks the config; a bad config is logged with file:line
    // and the running one stays. Returns the error text, empty on success.
    std::string reload();
    // Asks every child to stop; the event loop ends when all are gone.
    void stop();
    bool stopping() const { return stopping_; }
    std::string runtime_dir() const { return config_.str("runtime_dir"); }

    std::string status_text() const;
    std::string status_json() const;

    // Called from the SIGCHLD handler.
    void reap();

    // The login/session split: children that are sessions are the
    // launcher's (reaped, signalled and waited for on stop through it).
    void attach_sessions(SessionLauncher* sessions) { sessions_ = sessions; }
    const config::Config& config() const { return config_; }
    int config_fd() const { return config_memfd_.get(); }
    const Options& options() const { return opts_; }

  private:
    struct Child {
        const ProgramDef* def = nullptr;
        std::string name;       // "pop3-login", or "pop3-login#2" for a second instance
        unsigned instance = 0;  // 0-based
        pid_t pid = 0;
        Clock::time_point started{};
        std::chrono::system_clock::time_point started_wall{};
        int restarts = 0;
        int fast_crashes = 0;
        bool stop_requested = false;  // we sent SIGTERM (reload): not a crash
        EventPtr restart_timer;
        Supervisor* owner = nullptr;
    };

    Status apply_config(config::Config cfg, std::string text, bool initial);
    Status spawn(Child& child);
    void wait_for_servers();
    void schedule_restart(Child& child);
    void stop_child(Child& child);
    std::vector<const BoundListener*> listeners_of(const ProgramDef& def) const;
    bool wanted(const ProgramDef& def) const;
    bool wanted(const Child& child) const;
    // How many instances of the program the configuration asks for.
    unsigned instances(const ProgramDef& def) const;
    Child& child_of(const ProgramDef& def, unsigned instance);
    // The program's children in instance order (also those beyond the
    // configured number that are still stopping).
    std::vector<const Child*> children_of(const ProgramDef& def) const;
    std::string program_path(const ProgramDef& def) const;
    void maybe_finish_stop();

    static void on_restart_timer(evutil_socket_t, short, void* arg) noexcept;
    static void on_kill_timer(evutil_socket_t, short, void* arg) noexcept;

    event_base* base_;
    Options opts_;
    config::Config config_;
    std::string config_text_;
    UniqueFd config_memfd_;
    unsigned generation_ = 0;
    std::vector<BoundListener> listeners_;
    std::map<std::string, Child> children_;  // by Child::name
    bool stopping_ = false;
    EventPtr kill_timer_;
    SessionLauncher* sessions_ = nullptr;
};

}  // namespace pbx::master
