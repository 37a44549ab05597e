#include "common/smtpserver/server.hpp"

#include <unistd.h>

#include "common/ipc/peers.hpp"
#include "common/log.hpp"
#include "common/smtpserver/session.hpp"

namespace pbx::smtpserver {

namespace {

std::chrono::milliseconds ms(std::chrono::seconds s) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(s);
}

}  // namespace

Result<Settings> Settings::from_config(const config::Config& cfg, Role role) {
    Settings s;
    s.role = role;
    s.hostname = cfg.str("myhostname");
    if (s.hostname.empty()) {
        char buf[256] = {};
        if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
            return fail("myhostname is empty and gethostname() failed");
        s.hostname = buf;
    }
    s.limits = smtp::limits_from_config(cfg);
    s.local_domains = cfg.list("domains");
    auto trusted = event::CidrList::parse(cfg.list("trusted_networks"));
    if (!trusted) return fail("trusted_networks: " + trusted.error());
    s.trusted_networks = std::move(trusted).value();
    s.greet_pause = ms(cfg.duration("smtpd_greet_pause"));
    s.command_timeout = ms(cfg.duration("smtpd_command_timeout"));
    s.data_timeout = ms(cfg.duration("smtpd_data_timeout"));
    s.connection_limits.max_total = static_cast<size_t>(cfg.integer("smtpd_max_connections"));
    s.connection_limits.max_per_ip =
        static_cast<size_t>(cfg.integer("smtpd_max_connections_per_ip"));
    if (role == Role::Mta) s.pop_before_smtp = std::chrono::minutes(cfg.integer("pop_before_smtp"));
    if (role == Role::Submission) {
        // Mail clients do not race ahead of the greeting: no pause.
        s.greet_pause = std::chrono::milliseconds(0);
        // Trusted networks relay on port 25 only; here everybody logs in.
        s.trusted_networks = event::CidrList{};
        const auto per_message = cfg.integer("submission_max_recipients");
        if (per_message > 0)
            s.limits.max_recipients =
                std::min(s.limits.max_recipients, static_cast<size_t>(per_message));
        s.auth_without_tls = cfg.boolean("submission_auth_without_tls");
        s.received_auth = cfg.boolean("submission_received_auth");
        s.rate_limits.messages_per_hour = static_cast<uint64_t>(
            std::max<int64_t>(0, cfg.integer("submission_max_messages_per_hour")));
        s.rate_limits.recipients_per_hour = static_cast<uint64_t>(
            std::max<int64_t>(0, cfg.integer("submission_max_recipients_per_hour")));
    }
    return s;
}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::prepare(const ServiceContext& ctx, Role role) {
    std::unique_ptr<Server> srv(new Server());
    auto settings = Settings::from_config(ctx.config, role);
    if (!settings) return Err{settings.error()};
    srv->settings_ = std::move(settings).value();
    srv->rates_ = RateLimiter(srv->settings_.rate_limits);
    // As root, before the drop: afterwards the key file is out of reach.
    auto tls = event::TlsContext::load_server(ctx.config.str("tls_cert_file"),
                                              ctx.config.str("tls_key_file"));
    if (tls) {
        srv->tls_.emplace(std::move(tls).value());
    } else if (role == Role::Submission) {
        // Passwords never cross the network in plaintext: without TLS
        // submitd cannot offer AUTH, so it cannot take mail at all.
        log::error("no TLS: submission needs TLS for AUTH: ", tls.error().message);
    } else if (tls.error().sys_errno == ENOENT) {
        log::info("STARTTLS not offered: ", tls.error().message);
    } else {
        // Mail still flows in plaintext; the administrator must see this.
        log::error("STARTTLS not offered: ", tls.error().message);
    }
    return srv;
}

Status Server::start(ServiceContext& ctx) {
    base_ = ctx.base.get();
    auth_ =
        std::make_unique<AuthClient>(base_, ctx.runtime_path(ipc::kAuthSocket), ms(kAuthdTimeout));
    enqueue_path_ = ctx.runtime_path(ipc::kEnqueueSocket);
    limiter_ = event::ConnectionLimiter::make(settings_.connection_limits);
    event::Acceptor::Options opt;
    opt.refusal = "421 4.7.0 " + settings_.hostname + " Error: too many connections\r\n";
    const bool submission = settings_.role == Role::Submission;
    for (auto& l : ctx.listeners) {
        const bool ours =
            submission ? (l.name == "submission" || l.name == "submissions") : l.name == "smtp";
        if (!ours) {
            log::warn("ignoring inherited listener '", l.name, "': ", ctx.name, " serves only ",
                      submission ? "submission and submissions" : "smtp");
            continue;
        }
        const bool implicit_tls = l.implicit_tls || l.name == "submissions";
        if (implicit_tls && !tls_) {
            log::error("listener '", l.name, "' needs TLS, which is not available; not serving it");
            continue;
        }
        auto acc = event::Acceptor::create(
            base_, l.fd.get(), limiter_, opt,
            [this, implicit_tls](UniqueFd fd, const event::PeerAddress& peer,
                                 event::ConnectionSlot slot) {
                accept(std::move(fd), peer, std::move(slot), implicit_tls);
            },
            [](const event::PeerAddress& peer, event::LimitHit why) {
                log::warn("too many connections ",
                          why == event::LimitHit::PerIp
                              ? "from unknown[" + peer.ip + "]"
                              : "in total; refused unknown[" + peer.ip + "]");
            });
        if (!acc) return fail(l.name + " listener: " + acc.error().message);
        acceptors_.push_back(std::move(acc).value());
    }
    if (acceptors_.empty())
        return fail(submission ? "no usable submission listener was inherited from the master"
                               : "no smtp listener was inherited from the master");
    log::info("ready: ", acceptors_.size(), " listener(s), STARTTLS ",
              tls_ ? "offered" : "not offered", ", ", settings_.trusted_networks.networks().size(),
              " trusted network(s)");
    return {};
}

void Server::accept(UniqueFd fd, const event::PeerAddress& peer, event::ConnectionSlot slot,
                    bool implicit_tls) {
    if (stop_.stopping()) return;
    const uint64_t id = next_id_++;
    auto [it, inserted] =
        sessions_.emplace(id, std::make_unique<Session>(*this, id, peer, std::move(slot)));
    if (!it->second->start(std::move(fd), implicit_tls)) sessions_.erase(it);
}

void Server::remove(uint64_t id) {
    sessions_.erase(id);
    stop_.removed();
}

namespace {

// Idle queue-manager connections kept for the next sessions (each counts
// against the queue-manager's max_sessions while it waits).
constexpr size_t kIdleEnqueueClients = 16;

}  // namespace

std::unique_ptr<EnqueueClient> Server::take_enqueue_client(std::chrono::milliseconds timeout) {
    while (!idle_enqueue_.empty()) {
        std::unique_ptr<EnqueueClient> c = std::move(idle_enqueue_.back());
        idle_enqueue_.pop_back();
        if (c->connected()) return c;  // the queue-manager may have gone meanwhile
    }
    return std::make_unique<EnqueueClient>(base_, enqueue_path_, timeout);
}

void Server::keep_enqueue_client(std::unique_ptr<EnqueueClient> client) {
    if (!client || stop_.stopping() || client->in_transaction() || !client->connected()) return;
    if (idle_enqueue_.size() >= kIdleEnqueueClients) return;
    idle_enqueue_.push_back(std::move(client));
}

void Server::stop() {
    if (stop_.stopping()) return;
    idle_enqueue_.clear();
    acceptors_.clear();
    // shutdown() never destroys a session synchronously (on_closed comes
    // from the loop), so iterating is safe.
    stop_.begin(base_, [&] {
        for (auto& [id, s] : sessions_) s->shutdown();
    });
}

}  // namespace pbx::smtpserver
