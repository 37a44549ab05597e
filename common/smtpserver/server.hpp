// An SMTP server process: settings read once from the configuration, the TLS
// context, the acceptors on the inherited listeners, the shared authd
// client, and the live sessions. One code, two roles (one engine, two
// policies): smtpd (Role::Mta, listener "smtp") and submitd
// (Role::Submission, listeners "submission" with STARTTLS and "submissions"
// with implicit TLS; AUTH required, senders vetted, per-user rate limits).
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/event/acceptor.hpp"
#include "common/event/cidr.hpp"
#include "common/event/graceful_stop.hpp"
#include "common/event/tls.hpp"
#include "common/privsep/service.hpp"
#include "common/smtp/engine.hpp"
#include "common/smtpserver/auth_client.hpp"
#include "common/smtpserver/enqueue.hpp"
#include "common/smtpserver/rate_limit.hpp"

namespace pbx::smtpserver {

class Session;

// How long smtpd waits for its internal peers. Named, not configurable:
// both are local daemons, and a client waits this long at most per step.
inline constexpr std::chrono::seconds kAuthdTimeout{30};
inline constexpr std::chrono::seconds kQueueCommitTimeout{300};

enum class Role { Mta, Submission };

struct Settings {
    Role role = Role::Mta;
    std::string hostname;
    smtp::Limits limits;
    std::vector<std::string> local_domains;
    event::CidrList trusted_networks;
    std::chrono::milliseconds greet_pause{0};
    std::chrono::milliseconds command_timeout{300000};
    std::chrono::milliseconds data_timeout{600000};
    event::ConnectionLimits connection_limits;
    // smtpd only: POP-before-SMTP (pop_before_smtp minutes; 0: off): ask
    // authd about each untrusted client before the greeting.
    std::chrono::minutes pop_before_smtp{0};

    // Submission only.
    bool auth_without_tls = false;    // submission_auth_without_tls (tests)
    bool received_auth = false;       // submission_received_auth
    RateLimiter::Limits rate_limits;  // submission_max_*_per_hour

    // From pillarbox.conf; the error names the bad key.
    static Result<Settings> from_config(const config::Config& cfg, Role role = Role::Mta);
};

class Server {
  public:
    // pre_drop: settings and the TLS context (the key is read here, as root).
    static Result<std::unique_ptr<Server>> prepare(const ServiceContext& ctx,
                                                   Role role = Role::Mta);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;
    // post_drop: accept on every inherited listener of the role.
    Status start(ServiceContext& ctx);
    // SIGTERM: stop accepting, say 421 to every session, exit when they are gone.
    void stop();

    const Settings& settings() const { return settings_; }
    const event::TlsContext* tls() const { return tls_ ? &*tls_ : nullptr; }
    event_base* base() const { return base_; }
    AuthClient& auth() { return *auth_; }
    RateLimiter& rates() { return rates_; }
    std::string enqueue_path() const { return enqueue_path_; }
    // A queue-manager client for a session: an idle one a finished session
    // left (its connection still open), or a new one.
    std::unique_ptr<EnqueueClient> take_enqueue_client(std::chrono::milliseconds timeout);
    // Keeps a finished session's client for the next session if it is idle
    // and connected (at most kIdleEnqueueClients); drops it otherwise.
    void keep_enqueue_client(std::unique_ptr<EnqueueClient> client);
    // Called by a session from its on_closed(): destroys it.
    void remove(uint64_t id);

  private:
    Server() = default;
    void accept(UniqueFd fd, const event::PeerAddress& peer, event::ConnectionSlot slot,
                bool implicit_tls);

    Settings settings_;
    std::optional<event::TlsContext> tls_;
    event_base* base_ = nullptr;
    std::unique_ptr<AuthClient> auth_;
    RateLimiter rates_{RateLimiter::Limits{}};
    std::string enqueue_path_;
    std::shared_ptr<event::ConnectionLimiter> limiter_;
    std::vector<std::unique_ptr<event::Acceptor>> acceptors_;
    std::map<uint64_t, std::unique_ptr<Session>> sessions_;
    std::vector<std::unique_ptr<EnqueueClient>> idle_enqueue_;
    uint64_t next_id_ = 1;
    event::GracefulStop stop_{"session(s)", [this] { return sessions_.size(); }};
};

}  // namespace pbx::smtpserver
