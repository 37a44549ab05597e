// The login-process framework (DESIGN §2, Dovecot's login processes): one
// event loop serving many client connections of one protocol. Each
// connection goes through
//
//   accept (limits) → [implicit TLS] → pre-login: the protocol's Engine
//   (engine.hpp) with STARTTLS → authd `login` (password check, failure
//   delays, ticket) → master `start` (ticket + socketpair end; the master
//   forks the session as the user) → proxy: client ⇄ socketpair, both ways,
//   with backpressure → either side closes: the other is flushed and closed.
//
// Limits: <prefix>_max_connections connections in this process (pre-login
// and proxied alike), <prefix>_max_connections_per_ip per client address,
// <prefix>_autologout idle time before login (after login the session keeps
// its own autologout timer). One login process per protocol: the master runs
// one process per program (supervisor.hpp), so <prefix>_max_connections is
// also the total; a crashed login process loses only its own connections,
// and the master restarts it.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/config/config.hpp"
#include "common/event/acceptor.hpp"
#include "common/event/graceful_stop.hpp"
#include "common/event/tls.hpp"
#include "common/login/engine.hpp"
#include "common/login/request_client.hpp"
#include "common/privsep/service.hpp"

namespace pbx::login {

// How long the login process waits for its internal peers. authd's failure
// delays reach 15 s, so its timeout is well above that.
inline constexpr std::chrono::seconds kAuthdTimeout{40};
inline constexpr std::chrono::seconds kMasterTimeout{30};
// Bytes queued towards one side before the other side is no longer read.
inline constexpr size_t kProxyHighWater = 256 * 1024;

using EngineFactory =
    std::function<std::unique_ptr<Engine>(const config::Config&, const ClientFacts&)>;

struct LoginSettings {
    std::string service;  // "pop3": authd's and the master's name for it
    std::string hostname;
    event::ConnectionLimits limits;
    std::chrono::milliseconds autologout{600000};
    bool allow_plaintext = false;  // login_allow_plaintext
    bool reply_ahead = false;      // LoginSpec::reply_ahead and <prefix>_reply_ahead

    // From <prefix>_max_connections, <prefix>_max_connections_per_ip,
    // <prefix>_autologout, login_allow_plaintext and myhostname.
    static Result<LoginSettings> from_config(const config::Config& cfg, std::string_view service,
                                             std::string_view prefix);
};

class Connection;

class LoginServer {
  public:
    // pre_drop (root): settings and the TLS context (the key is read here).
    static Result<std::unique_ptr<LoginServer>> prepare(const ServiceContext& ctx,
                                                        LoginSettings settings,
                                                        EngineFactory factory,
                                                        std::vector<std::string> listener_names,
                                                        std::string refusal);
    ~LoginServer();
    LoginServer(const LoginServer&) = delete;
    LoginServer& operator=(const LoginServer&) = delete;

    // post_drop: accept on the inherited listeners named in listener_names.
    Status start(ServiceContext& ctx);
    // SIGTERM: stop accepting; pre-login clients are told, proxied ones
    // closed; the loop ends when all are gone (or after a grace period).
    void stop();

    // For the connections.
    event_base* base() const { return base_; }
    const LoginSettings& settings() const { return settings_; }
    const event::TlsContext* tls() const { return tls_ ? &*tls_ : nullptr; }
    const config::Config& config() const { return *config_; }
    RequestClient& authd() { return *authd_; }
    RequestClient& master() { return *master_; }
    std::unique_ptr<Engine> make_engine(const ClientFacts& facts) const {
        return factory_(*config_, facts);
    }
    void remove(uint64_t id);

  private:
    LoginServer() = default;
    void accept(UniqueFd fd, const event::PeerAddress& peer, bool implicit_tls,
                event::ConnectionSlot slot);

    LoginSettings settings_;
    EngineFactory factory_;
    std::vector<std::string> listener_names_;
    std::string refusal_;
    std::optional<event::TlsContext> tls_;
    const config::Config* config_ = nullptr;
    event_base* base_ = nullptr;
    std::unique_ptr<RequestClient> authd_;
    std::unique_ptr<RequestClient> master_;
    std::shared_ptr<event::ConnectionLimiter> limiter_;
    std::vector<std::unique_ptr<event::Acceptor>> acceptors_;
    std::map<uint64_t, std::unique_ptr<Connection>> connections_;
    uint64_t next_id_ = 1;
    event::GracefulStop stop_{"connection(s)", [this] { return connections_.size(); }};
};

}  // namespace pbx::login
