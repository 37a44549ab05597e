#include "smtpd/server.hpp"

#include <unistd.h>

#include "common/ipc/peers.hpp"
#include "common/log.hpp"
#include "smtpd/session.hpp"

namespace pbx::smtpd {

namespace {

// After SIGTERM, sessions get this long to read their 421; the master kills
// at master_interface::kStopGraceSeconds.
constexpr timeval kStopGrace{3, 0};

std::chrono::milliseconds ms(std::chrono::seconds s) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(s);
}

}  // namespace

Result<Settings> Settings::from_config(const config::Config& cfg) {
    Settings s;
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
    s.pop_before_smtp = std::chrono::minutes(cfg.integer("pop_before_smtp"));
    return s;
}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::prepare(const ServiceContext& ctx) {
    std::unique_ptr<Server> srv(new Server());
    auto settings = Settings::from_config(ctx.config);
    if (!settings) return Err{settings.error()};
    srv->settings_ = std::move(settings).value();
    // As root, before the drop: afterwards the key file is out of reach.
    auto tls = event::TlsContext::load_server(ctx.config.str("tls_cert_file"),
                                              ctx.config.str("tls_key_file"));
    if (tls) {
        srv->tls_.emplace(std::move(tls).value());
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
    stop_timer_.reset(evtimer_new(base_, stop_timer_cb, this));
    event::Acceptor::Options opt;
    opt.refusal = "421 4.7.0 " + settings_.hostname + " Error: too many connections\r\n";
    for (auto& l : ctx.listeners) {
        if (l.name != "smtp") {
            log::warn("ignoring inherited listener '", l.name, "': smtpd serves only smtp");
            continue;
        }
        auto acc = event::Acceptor::create(
            base_, l.fd.get(), limiter_, opt,
            [this](UniqueFd fd, const event::PeerAddress& peer, event::ConnectionSlot slot) {
                accept(std::move(fd), peer, std::move(slot));
            },
            [](const event::PeerAddress& peer, event::LimitHit why) {
                log::warn("too many connections ",
                          why == event::LimitHit::PerIp
                              ? "from unknown[" + peer.ip + "]"
                              : "in total; refused unknown[" + peer.ip + "]");
            });
        if (!acc) return fail("smtp listener: " + acc.error().message);
        acceptors_.push_back(std::move(acc).value());
    }
    if (acceptors_.empty()) return fail("no smtp listener was inherited from the master");
    log::info("ready: ", acceptors_.size(), " listener(s), STARTTLS ",
              tls_ ? "offered" : "not offered", ", ", settings_.trusted_networks.networks().size(),
              " trusted network(s)");
    return {};
}

void Server::accept(UniqueFd fd, const event::PeerAddress& peer, event::ConnectionSlot slot) {
    if (stopping_) return;
    const uint64_t id = next_id_++;
    auto [it, inserted] =
        sessions_.emplace(id, std::make_unique<Session>(*this, id, peer, std::move(slot)));
    if (!it->second->start(std::move(fd))) sessions_.erase(it);
}

void Server::remove(uint64_t id) {
    sessions_.erase(id);
    if (stopping_ && sessions_.empty()) event_base_loopexit(base_, nullptr);
}

void Server::stop() {
    if (stopping_) return;
    stopping_ = true;
    acceptors_.clear();
    if (sessions_.empty()) {
        event_base_loopexit(base_, nullptr);
        return;
    }
    // shutdown() never destroys a session synchronously (on_closed comes
    // from the loop), so iterating is safe.
    for (auto& [id, s] : sessions_) s->shutdown();
    event_add(stop_timer_.get(), &kStopGrace);
}

void Server::stop_timer_cb(evutil_socket_t, short, void* self) noexcept {
    auto* s = static_cast<Server*>(self);
    log::info("stopping with ", s->sessions_.size(), " session(s) still open");
    event_base_loopexit(s->base_, nullptr);
}

}  // namespace pbx::smtpd
