// The master's half of the login/session split (common/session_interface.hpp,
// common/ipc/session_msgs.hpp): serves session/session.sock to the login
// processes, redeems each ticket with authd, forks, drops to the user and
// execs the session program (pop3d, imapd) with the socketpair end the login
// process sent. Sessions are never restarted; they are reaped and logged.
#pragma once

#include <event2/event.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::master {

class Supervisor;

class SessionLauncher {
  public:
    // How long authd may take to redeem a ticket before the start fails.
    static constexpr std::chrono::seconds kRedeemTimeout{10};
    // Start requests one login process may have in flight.
    static constexpr size_t kMaxPendingPerClient = 256;

    SessionLauncher(event_base* base, Supervisor& sup);
    ~SessionLauncher();
    SessionLauncher(const SessionLauncher&) = delete;
    SessionLauncher& operator=(const SessionLauncher&) = delete;

    Status listen(const std::string& runtime_dir, ipc::PeerTable peers);

    // A child the supervisor does not know: true when it was a session
    // (then it is logged and forgotten).
    bool reaped(pid_t pid, int status);
    size_t running() const { return sessions_.size(); }
    // SIGTERM (stop) or SIGKILL (stop timed out) to every session.
    void signal_all(int sig);

  private:
    struct Client {
        std::unique_ptr<ipc::Connection> conn;
        ipc::PeerInfo peer;
        size_t pending = 0;
    };
    struct Pending {
        SessionLauncher* owner = nullptr;
        uint64_t key = 0;         // our id, also the redeem id towards authd
        uint64_t client_id = 0;   // which login connection asked
        uint64_t request_id = 0;  // the id of its start request
        std::string service, client_address, tls, login_tag, session_id, proxy;
        UniqueFd client_fd;
        EventPtr timer;
        bool sent = false;
    };
    struct Running {
        std::string user, service, session_id, client_address;
        std::chrono::steady_clock::time_point started;
    };

    void accept(UniqueFd fd, const ipc::PeerInfo& peer);
    void on_start(uint64_t client_id, ipc::Message&& m);
    void on_auth_message(ipc::Message&& m);
    void on_auth_close(const ipc::IpcError& e);
    bool ensure_auth();
    void finish(uint64_t key, std::string_view status, std::string_view reason,
                const ipc::Message* redeemed);
    void answer(uint64_t client_id, uint64_t request_id, std::string_view status,
                std::string_view reason, std::string_view user, pid_t pid);
    Result<pid_t> spawn(Pending& p, const ipc::Message& redeemed);
    static void timer_cb(evutil_socket_t, short, void* arg) noexcept;

    event_base* base_;
    Supervisor& sup_;
    std::unique_ptr<ipc::Server> server_;
    std::map<uint64_t, Client> clients_;
    uint64_t next_client_ = 1;
    std::unique_ptr<ipc::Connection> auth_;
    std::string auth_path_;
    std::map<uint64_t, std::unique_ptr<Pending>> pending_;
    uint64_t next_key_ = 1;
    std::map<pid_t, Running> sessions_;
};

// Creates the launcher and listens on session/session.sock.
Result<std::unique_ptr<SessionLauncher>> start_sessions(event_base* base, Supervisor& sup,
                                                        const std::string& runtime_dir);

}  // namespace pbx::master
