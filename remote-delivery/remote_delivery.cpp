#include "remote-delivery/remote_delivery.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <map>

#include "common/ipc/delivery_msgs.hpp"
#include "common/log.hpp"

namespace pbx::remote {

namespace dm = ipc::delivery;
namespace sc = smtp::client;

namespace {

constexpr size_t kLogValue = 200;

std::string esc(std::string_view v) {
    return ipc::escape_value(v, kLogValue);
}

// Replies are printable already (the client state machine makes them so);
// this only keeps the log line one line whatever happens.
std::string text(std::string_view v) {
    std::string out;
    for (char c : v.substr(0, 600)) {
        auto u = static_cast<unsigned char>(c);
        out += (u >= 32 && u < 127) ? c : '?';
    }
    return out;
}

std::chrono::milliseconds ms(const config::Config& cfg, std::string_view key) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(cfg.duration(key));
}

// The message file, mapped read-only: the engine sends it from memory the
// kernel already holds, without a copy per connection.
struct Mapping {
    void* addr = nullptr;
    size_t length = 0;
    ~Mapping() {
        if (addr) munmap(addr, length);
    }
};

Result<std::shared_ptr<Mapping>> map_message(int fd) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return fail_errno("fstat of the message");
    auto m = std::make_shared<Mapping>();
    if (st.st_size == 0) return m;
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return fail_errno("mmap of the message");
    m->addr = p;
    m->length = static_cast<size_t>(st.st_size);
    return m;
}

}  // namespace

Result<EngineConfig> engine_config(const config::Config& cfg) {
    EngineConfig c;
    c.helo_name = cfg.str("myhostname");
    if (c.helo_name.empty()) {
        char buf[256] = {};
        if (gethostname(buf, sizeof buf - 1) == 0) c.helo_name = buf;
        if (c.helo_name.empty()) c.helo_name = "localhost";
    }
    int64_t port = cfg.integer("remote_smtp_port");
    if (port < 1 || port > 65535) return fail("remote_smtp_port: not a TCP port");
    c.smtp_port = static_cast<uint16_t>(port);
    if (std::string rh = cfg.str("relayhost"); !rh.empty()) {
        auto hop = parse_nexthop(rh, c.smtp_port);
        if (!hop) return fail("relayhost: " + hop.error());
        c.relayhost = *hop;
    }
    if (std::string path = cfg.str("relayhost_map"); !path.empty()) {
        auto text = read_table_file(path, false);
        if (!text) return Err{text.error()};
        auto m = RelayMap::parse(*text, c.smtp_port);
        if (!m) return fail(path + ": " + m.error());
        c.relay_map = std::move(m).value();
    }
    if (std::string path = cfg.str("sender_relayhost_map"); !path.empty()) {
        auto text = read_table_file(path, false);
        if (!text) return Err{text.error()};
        auto m = SenderRelayMap::parse(*text, c.smtp_port);
        if (!m) return fail(path + ": " + m.error());
        c.sender_relay_map = std::move(m).value();
    }
    auto level = sc::parse_tls_level(cfg.str("remote_tls_level"));
    if (!level) return fail("remote_tls_level: expected none, may, encrypt or verify");
    c.default_tls = *level;
    if (std::string path = cfg.str("remote_tls_policy_file"); !path.empty()) {
        auto text = read_table_file(path, false);
        if (!text) return Err{text.error()};
        auto p = TlsPolicy::parse(*text);
        if (!p) return fail(path + ": " + p.error());
        c.tls_policy = std::move(p).value();
    }
    if (std::string path = cfg.str("relayhost_credentials"); !path.empty()) {
        auto text = read_table_file(path, true);
        if (!text) return Err{text.error()};
        auto p = Credentials::parse(*text);
        if (!p) return fail(path + ": " + p.error());
        c.credentials = std::move(p).value();
    }
    int64_t dest = cfg.integer("remote_destination_concurrency");
    int64_t total = cfg.integer("remote_delivery_concurrency");
    c.destination_concurrency = dest < 1 ? 1 : static_cast<size_t>(dest);
    c.total_concurrency = total < 1 ? 1 : static_cast<size_t>(total);
    c.connect_timeout = ms(cfg, "remote_connect_timeout");
    c.helo_timeout = ms(cfg, "remote_helo_timeout");
    c.command_timeout = ms(cfg, "remote_command_timeout");
    c.data_init_timeout = ms(cfg, "remote_data_init_timeout");
    c.data_block_timeout = ms(cfg, "remote_data_block_timeout");
    c.data_done_timeout = ms(cfg, "remote_data_done_timeout");
    c.reuse_time = ms(cfg, "remote_connection_cache_time");
    return c;
}

struct RemoteDelivery::Request {
    std::weak_ptr<Client> client;
    uint64_t id = 0;
    std::string queue_id;
    uint64_t arrival = 0;
    std::vector<std::string> rcpts;
    std::vector<bool> answered;
    size_t open = 0;
};

RemoteDelivery::RemoteDelivery() = default;
RemoteDelivery::~RemoteDelivery() = default;

Status RemoteDelivery::pre_drop(ServiceContext& ctx) {
    auto peers = ipc::PeerTable::from_system();
    if (!peers) return Err{peers.error()};
    peers_.emplace(std::move(peers).value());
    // Everything read from disk is read now, as root, before the chroot.
    auto cfg = engine_config(ctx.config);
    if (!cfg) return Err{cfg.error()};
    config_.emplace(std::move(cfg).value());
    std::string ca = ctx.config.str("remote_tls_ca_file");
    auto tls =
        ca.empty() ? event::TlsContext::client_without_cas() : event::TlsContext::load_client(ca);
    if (!tls && tls.error().sys_errno == ENOENT) {
        log::warn(tls.error().message, "; no server certificate will verify");
        tls = event::TlsContext::client_without_cas();
    }
    if (!tls) return Err{tls.error()};
    tls_.emplace(std::move(tls).value());
    auto res = UnboundResolver::create(ctx.config.str("remote_resolver"),
                                       ctx.config.duration("remote_dns_timeout"));
    if (!res) return Err{res.error()};
    resolver_ = std::move(res).value();
    auto fd = ipc::listen_unix(ctx.runtime_path(ipc::kRemoteSocket), 0666);
    if (!fd) return Err{fd.error()};
    listen_fd_ = std::move(fd).value();
    return {};
}

Status RemoteDelivery::post_drop(ServiceContext& ctx) {
    base_ = ctx.base.get();
    if (auto s = resolver_->attach(base_); !s) return s;
    engine_ = std::make_unique<Engine>(base_, *config_, *resolver_, &*tls_);
    clients_.emplace(base_, dm::kProtocol, 16,
                     [this](const std::shared_ptr<Client>& c, ipc::Message&& m) {
                         on_deliver(c, std::move(m));
                     });
    server_ = std::make_unique<ipc::Server>(base_, std::move(listen_fd_), ipc::Channel::Remote,
                                            std::move(*peers_),
                                            [this](UniqueFd client, const ipc::PeerInfo& who) {
                                                clients_->accept(std::move(client), who);
                                            });
    const EngineConfig& c = *config_;
    log::info("listening on ", ctx.runtime_path(ipc::kRemoteSocket), "; ",
              c.relayhost ? "relay host " + c.relayhost->key() : std::string("delivery by MX"),
              ", port ", c.smtp_port, ", TLS ", sc::to_string(c.default_tls), " (",
              c.tls_policy.size(), " policy entries), ", c.destination_concurrency,
              " connections per destination, ", c.total_concurrency, " in all");
    return {};
}

void RemoteDelivery::on_stop(ServiceContext&) {
    server_.reset();
    if (clients_) clients_->clear();
    // Connections in the middle of a transaction may finish for a moment;
    // then we go regardless (unanswered recipients stay queued).
    grace_.reset(evtimer_new(base_, on_grace, this));
    timeval tv{5, 0};
    if (grace_) evtimer_add(grace_.get(), &tv);
    engine_->stop([this] { shutdown_soon(); });
}

void RemoteDelivery::on_grace(evutil_socket_t, short, void* self) noexcept {
    static_cast<RemoteDelivery*>(self)->shutdown_soon();
}

// Everything that holds an event must go while the event base still exists
// (run_service frees it when the loop ends), and not from inside the
// engine's own callbacks: so from a fresh callback of the loop.
void RemoteDelivery::shutdown_soon() {
    if (shutting_down_) return;
    shutting_down_ = true;
    timeval now{0, 0};
    event_base_once(
        base_, -1, EV_TIMEOUT,
        [](evutil_socket_t, short, void* self) {
            auto* rd = static_cast<RemoteDelivery*>(self);
            rd->engine_.reset();
            rd->resolver_.reset();
            rd->grace_.reset();
            event_base_loopexit(rd->base_, nullptr);
        },
        this, &now);
}

void RemoteDelivery::on_deliver(const std::shared_ptr<Client>& c, ipc::Message&& m) {
    if (m.name() != "deliver") {
        log::warn("client ", ipc::to_string(c->peer.program), " sent a '", m.name(),
                  "', which is not a request; closing");
        clients_->drop(c);
        return;
    }
    auto r = std::make_shared<Request>();
    r->client = c;
    r->id = *m.get_u64("id");
    r->queue_id = std::string(*m.get_str("queue_id"));
    r->arrival = *m.get_u64("arrival");
    for (auto a : m.get_all("rcpt")) r->rcpts.emplace_back(a);
    auto orcpts = m.get_all("rcpt_orcpt");
    auto notifies = m.get_all_u64("rcpt_notify");
    size_t n = r->rcpts.size();
    r->answered.assign(n, false);
    r->open = n;
    UniqueFd fd = m.take_fd("message");

    auto refuse_all = [&](const std::string& reply) {
        log::warn(esc(r->queue_id), ": ", reply);
        Outcome o{sc::Verdict::Deferred, reply, "4.3.0", "", ""};
        for (size_t i = 0; i < n; ++i) answer(r, i, o);
    };
    if (n == 0) {
        auto done = ipc::Message::named(dm::kProtocol, "done");
        done.set_u64("id", r->id);
        (void)c->conn->send(std::move(done));
        return;
    }
    if (orcpts.size() != n || notifies.size() != n)
        return refuse_all("451 4.3.0 recipient lists differ in length");
    if (n > max_recipients_) return refuse_all("451 4.3.0 too many recipients in one request");
    auto mapping = map_message(fd.get());
    if (!mapping)
        return refuse_all("451 4.3.0 cannot read the message: " + mapping.error().message);

    auto msg = std::make_shared<MessageData>();
    msg->queue_id = r->queue_id;
    msg->sender = std::string(*m.get_str("sender"));
    msg->size = (*mapping)->length;
    msg->body = m.get_str("body").value_or("7BIT") == "8BITMIME" ? smtp::BodyType::EightBitMime
                                                                 : smtp::BodyType::SevenBit;
    msg->smtputf8 = m.get_u64("smtputf8").value_or(0) != 0;
    msg->envid = std::string(m.get_str("envid").value_or(""));
    std::string_view ret = m.get_str("ret").value_or("");
    msg->ret = ret == "FULL"   ? smtp::DsnRet::Full
               : ret == "HDRS" ? smtp::DsnRet::Hdrs
                               : smtp::DsnRet::Unspecified;
    msg->text = std::string_view(static_cast<const char*>((*mapping)->addr), (*mapping)->length);
    msg->mapping = std::move(mapping).value();

    // One job per domain, recipients in their order.
    std::map<std::string, std::vector<size_t>> by_domain;
    for (size_t i = 0; i < n; ++i) {
        std::string d = domain_of(r->rcpts[i]);
        if (d.empty()) {
            answer(r, i,
                   Outcome{sc::Verdict::Failed, "550 5.1.3 no domain in the recipient address",
                           "5.1.3", "", ""});
            continue;
        }
        by_domain[d].push_back(i);
    }
    for (auto& [domain, indexes] : by_domain) {
        Job job;
        job.message = msg;
        job.domain = domain;
        for (size_t i : indexes)
            job.recipients.push_back(sc::Recipient{r->rcpts[i], static_cast<uint8_t>(notifies[i]),
                                                   std::string(orcpts[i])});
        job.report = [this, r, indexes](size_t k, const Outcome& o) {
            if (k < indexes.size()) answer(r, indexes[k], o);
        };
        engine_->submit(std::move(job));
    }
}

void RemoteDelivery::answer(const std::shared_ptr<Request>& r, size_t index, const Outcome& o) {
    if (index >= r->answered.size() || r->answered[index]) return;
    r->answered[index] = true;
    time_t now = std::time(nullptr);
    long delay = r->arrival && now >= static_cast<time_t>(r->arrival)
                     ? static_cast<long>(now - static_cast<time_t>(r->arrival))
                     : 0;
    log::info(esc(r->queue_id), ": to=<", esc(r->rcpts[index]),
              ">, relay=", o.relay.empty() ? "none" : text(o.relay), ", delay=", delay,
              ", tls=", o.tls.empty() ? "none" : o.tls, ", dsn=", o.dsn,
              ", status=", sc::to_string(o.verdict), " (", text(o.reply), ")");
    auto c = r->client.lock();
    if (c && c->conn && c->conn->is_open()) {
        auto m = ipc::Message::named(dm::kProtocol, "rcpt_result");
        m.set_u64("id", r->id)
            .set_u64("index", index)
            .set_str("status", sc::to_string(o.verdict))
            .set_str("reply", o.reply)
            .set_str("dsn_status", o.dsn);
        if (!o.relay.empty()) m.set_str("remote", o.relay);
        m.set_str("tls", o.tls.empty() ? "none" : o.tls);
        (void)c->conn->send(std::move(m));
    }
    if (--r->open == 0 && c && c->conn && c->conn->is_open()) {
        auto done = ipc::Message::named(dm::kProtocol, "done");
        done.set_u64("id", r->id);
        (void)c->conn->send(std::move(done));
    }
}

}  // namespace pbx::remote
