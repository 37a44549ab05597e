#include "remote-delivery/engine.hpp"

#include <arpa/inet.h>

#include <algorithm>

#include "common/event/connector.hpp"
#include "common/event/stream.hpp"
#include "common/log.hpp"

namespace pbx::remote {

namespace sc = smtp::client;

namespace {

constexpr size_t kBodyChunk = 64 * 1024;
constexpr size_t kOutputHighWater = 256 * 1024;

bool is_ip(const std::string& s) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A reason from the state machine ("4.4.2 lost ...") as a reply that starts
// with a code, like every reply the queue-manager stores.
std::string as_reply(const std::string& reason) {
    if (reason.size() >= 4 && reason[0] >= '2' && reason[0] <= '5' && reason[3] == ' ')
        return reason;
    if (!reason.empty() && reason[0] == '5') return "554 " + reason;
    return "451 " + reason;
}

std::string dsn_of(const std::string& reply) {
    // "451 4.4.2 ..." → "4.4.2"; "421 busy" → "4.0.0"
    if (reply.size() >= 9 && reply[4] == reply[0] && reply[5] == '.') {
        size_t end = reply.find(' ', 4);
        return reply.substr(4, end == std::string::npos ? std::string::npos : end - 4);
    }
    return std::string(1, reply.empty() ? '4' : reply[0]) + ".0.0";
}

}  // namespace

// ---- one connection (and the chain of hosts behind it) --------------------

class Engine::Conn final : public event::StreamHandler {
  public:
    Conn(Engine& e, Dest& d, Job job) : e_(e), dest_(d) { set_job(std::move(job)); }
    ~Conn() override { *alive_ = false; }

    Dest& dest() { return dest_; }
    void start();
    void give(Job job);
    void quit();
    bool idle() const { return idle_; }

    // StreamHandler
    void on_input(event::StreamConnection& c) noexcept override;
    void on_timeout(event::StreamConnection& c) noexcept override;
    void on_tls_ready(event::StreamConnection& c) noexcept override;
    void on_drained(event::StreamConnection& c) noexcept override;
    void on_closed(event::StreamConnection& c, const event::CloseInfo& info) noexcept override;

  private:
    struct Target {
        std::string host;
        std::string ip;
        uint16_t port = 25;
        std::string desc() const { return host + "[" + ip + "]:" + std::to_string(port); }
    };

    void set_job(Job job);
    bool open_recipients() const;
    void resolve_hosts(std::vector<std::string> hosts, bool implicit_mx);
    void dns_result(sc::Verdict v, const std::string& reply, const std::string& dsn);
    void connect_next();
    void connect(const Target& t);
    void connected(Result<UniqueFd> fd);
    void handle();
    void on_ready();
    void start_transaction();
    void pump_body();
    void update_timer();
    void report(size_t job_index, sc::Verdict v, const std::string& reply, const std::string& dsn);
    void finish();
    static void idle_cb(evutil_socket_t, short, void* self) noexcept;

    Engine& e_;
    Dest& dest_;
    std::optional<Job> job_;
    std::vector<bool> reported_;
    std::vector<size_t> tx_map_;  // transaction index → job index
    std::vector<Target> targets_;
    size_t next_ = 0;
    Target cur_;
    bool reached_ = false;  // cur_ is meaningful
    bool plain_ = false;    // cur_ again, without TLS
    bool retry_plain_ = false;
    bool message_only_ = false;  // the last host refused only this message (4xx to MAIL)
    std::string last_error_;
    std::string tls_desc_;
    std::unique_ptr<event::Connector> connector_;
    std::unique_ptr<event::StreamConnection> stream_;
    std::unique_ptr<sc::Session> session_;
    bool streaming_ = false;
    bool idle_ = false;
    bool finished_ = false;
    EventPtr idle_timer_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

void Engine::Conn::set_job(Job job) {
    reported_.assign(job.recipients.size(), false);
    job_ = std::move(job);
}

bool Engine::Conn::open_recipients() const {
    return job_ && std::find(reported_.begin(), reported_.end(), false) != reported_.end();
}

void Engine::Conn::report(size_t i, sc::Verdict v, const std::string& reply,
                          const std::string& dsn) {
    if (!job_ || i >= reported_.size() || reported_[i]) return;
    reported_[i] = true;
    Outcome o;
    o.verdict = v;
    o.reply = reply;
    o.dsn = dsn;
    o.relay = reached_ ? cur_.desc() : "";
    o.tls = reached_ ? tls_desc_ : "";
    if (job_->report) job_->report(i, o);
}

void Engine::Conn::finish() {
    if (finished_) return;
    finished_ = true;
    // Anything still open (never, in principle) is deferred, never lost.
    if (job_)
        for (size_t i = 0; i < reported_.size(); ++i)
            report(i, sc::Verdict::Deferred,
                   last_error_.empty() ? "451 4.3.0 delivery was not attempted" : last_error_,
                   last_error_.empty() ? "4.3.0" : dsn_of(last_error_));
    job_.reset();
    e_.conn_done(this);
}

void Engine::Conn::start() {
    const NextHop& hop = dest_.hop;
    if (!hop.mx_lookup) {
        if (is_ip(hop.host)) {
            targets_.push_back({hop.host, hop.host, hop.port});
            return connect_next();
        }
        return resolve_hosts({hop.host}, false);
    }
    std::weak_ptr<bool> alive = alive_;
    e_.resolver_.lookup_mx(hop.host, [this, alive](MxAnswer a) {
        if (alive.expired()) return;
        HostPlan p = plan_hosts(dest_.hop.host, a, e_.rng_);
        if (p.kind == HostPlan::Kind::Fail) return dns_result(sc::Verdict::Failed, p.reply, p.dsn);
        if (p.kind == HostPlan::Kind::Defer)
            return dns_result(sc::Verdict::Deferred, p.reply, p.dsn);
        resolve_hosts(std::move(p.hosts), a.status == DnsStatus::NoData);
    });
}

// A DNS answer that decides for the whole destination: this job and every
// job waiting for the same destination get it.
void Engine::Conn::dns_result(sc::Verdict v, const std::string& reply, const std::string& dsn) {
    if (job_)
        for (size_t i = 0; i < reported_.size(); ++i) report(i, v, reply, dsn);
    e_.fail_queue(dest_, v, reply, dsn);
    finish();
}

void Engine::Conn::resolve_hosts(std::vector<std::string> hosts, bool implicit_mx) {
    if (hosts.size() > e_.config_.max_addresses) hosts.resize(e_.config_.max_addresses);
    struct Gather {
        std::vector<AddressAnswer> answers;
        size_t pending = 0;
        std::vector<std::string> hosts;
    };
    auto g = std::make_shared<Gather>();
    g->answers.resize(hosts.size());
    g->pending = hosts.size();
    g->hosts = hosts;
    std::weak_ptr<bool> alive = alive_;
    for (size_t i = 0; i < hosts.size(); ++i) {
        e_.resolver_.lookup_addresses(hosts[i], [this, alive, g, i, implicit_mx](AddressAnswer a) {
            if (alive.expired()) return;
            g->answers[i] = std::move(a);
            if (--g->pending > 0) return;
            std::string temp_error;
            for (size_t h = 0; h < g->hosts.size(); ++h) {
                const AddressAnswer& ans = g->answers[h];
                if (ans.status == DnsStatus::TempFail && temp_error.empty())
                    temp_error = g->hosts[h] + ": " + ans.error;
                for (const auto& ip : ans.addresses)
                    if (targets_.size() < e_.config_.max_addresses)
                        targets_.push_back({g->hosts[h], ip, dest_.hop.port});
            }
            if (!targets_.empty()) return connect_next();
            if (!temp_error.empty())
                return dns_result(sc::Verdict::Deferred,
                                  "451 4.4.3 cannot look up the address of " + temp_error, "4.4.3");
            if (implicit_mx)
                return dns_result(
                    sc::Verdict::Failed,
                    "550 5.4.4 " + dest_.hop.host + " has neither MX nor address records", "5.4.4");
            dns_result(sc::Verdict::Deferred,
                       "451 4.4.4 no address records for the mail hosts of " + dest_.hop.host,
                       "4.4.4");
        });
    }
}

void Engine::Conn::connect_next() {
    if (retry_plain_) {
        retry_plain_ = false;
        plain_ = true;
        return connect(cur_);
    }
    plain_ = false;
    if (next_ >= targets_.size()) {
        // Every host failed: this job and those waiting for the destination
        // are deferred with the last reason.
        std::string reply = last_error_.empty() ? "451 4.4.1 no host to try" : last_error_;
        if (job_)
            for (size_t i = 0; i < reported_.size(); ++i)
                report(i, sc::Verdict::Deferred, reply, dsn_of(reply));
        // A host that refused only this message (4xx to MAIL FROM) says
        // nothing about the others waiting: they get their own attempt.
        std::string why = reply.size() > 4 && reply[3] == ' ' ? reply.substr(4) : reply;
        if (!message_only_)
            e_.fail_queue(dest_, sc::Verdict::Deferred,
                          "451 4.4.1 delivery temporarily suspended: " + why, dsn_of(reply));
        return finish();
    }
    connect(targets_[next_++]);
}

void Engine::Conn::connect(const Target& t) {
    cur_ = t;
    reached_ = true;
    tls_desc_ = "none";
    std::weak_ptr<bool> alive = alive_;
    connector_ = std::make_unique<event::Connector>(e_.base_, [this, alive](Result<UniqueFd> r) {
        if (alive.expired()) return;
        connected(std::move(r));
    });
    connector_->connect(t.ip, t.port, e_.config_.connect_timeout);
}

void Engine::Conn::connected(Result<UniqueFd> fd) {
    connector_.reset();  // the callback runs from a moved copy: allowed
    if (!fd) {
        message_only_ = false;
        last_error_ = "451 4.4.1 cannot connect to " + cur_.desc() + ": " + fd.error().message;
        log::info("connect to ", cur_.desc(), ": ", fd.error().message);
        return connect_next();
    }
    auto s = event::StreamConnection::create(e_.base_, std::move(fd).value(), *this);
    if (!s) {
        last_error_ = "451 4.3.0 " + s.error().message;
        return connect_next();
    }
    stream_ = std::move(s).value();
    if (auto st = stream_->start(); !st) {
        last_error_ = "451 4.3.0 " + st.error().message;
        stream_.reset();
        return connect_next();
    }
    sc::Settings settings;
    settings.helo_name = e_.config_.helo_name;
    settings.tls = plain_ ? sc::TlsLevel::None : e_.tls_level(dest_);
    settings.tls_possible = e_.tls_ != nullptr;
    settings.limits = e_.config_.reply_limits;
    if (dest_.hop.relay)
        if (const auto* cred = e_.config_.credentials.lookup(dest_.hop))
            settings.credentials = *cred;
    session_ = std::make_unique<sc::Session>(std::move(settings));
    update_timer();
}

void Engine::Conn::on_input(event::StreamConnection& c) noexcept {
    if (!session_) return;
    std::string_view in = c.peek(c.input_size());
    size_t n = in.size();
    session_->feed(in);
    c.drain(n);
    if (c.at_eof()) session_->lost("the server closed the connection");
    handle();
}

void Engine::Conn::on_timeout(event::StreamConnection&) noexcept {
    if (!session_) return;
    session_->timed_out();
    handle();
}

void Engine::Conn::on_tls_ready(event::StreamConnection& c) noexcept {
    if (!session_) return;
    event::TlsSessionInfo info = c.tls_info();
    event::TlsPeerInfo peer = c.tls_peer();
    tls_desc_ =
        info.version + ":" + info.cipher + ":" + (peer.verified ? "verified" : "unverified");
    log::info(peer.verified ? "verified" : "unverified", " TLS connection to ", cur_.desc(), ": ",
              info.version, " with cipher ", info.cipher, " (", info.bits,
              " bits), certificate CN=", peer.subject_cn.empty() ? "(none)" : peer.subject_cn,
              ", issuer CN=", peer.issuer_cn.empty() ? "(none)" : peer.issuer_cn,
              peer.verified ? std::string() : ": " + peer.error);
    std::string detail = peer.error;
    if (!peer.subject_cn.empty()) detail += " (certificate CN=" + peer.subject_cn + ")";
    session_->tls_done(sc::TlsOutcome{true, peer.verified, detail});
    handle();
}

void Engine::Conn::on_drained(event::StreamConnection&) noexcept {
    if (streaming_) pump_body();
}

void Engine::Conn::on_closed(event::StreamConnection&, const event::CloseInfo& info) noexcept {
    if (session_) {
        std::string why =
            info.detail.empty() ? std::string(event::to_string(info.reason)) : info.detail;
        if (info.reason == event::CloseReason::TlsFailed) {
            session_->tls_done(sc::TlsOutcome{false, false, why});
        } else {
            session_->lost(why);
        }
        // Results and failures only: nothing can be written any more.
        for (auto& a : session_->take_actions()) {
            if (auto* d = std::get_if<sc::RcptDone>(&a)) {
                if (d->index < tx_map_.size())
                    report(tx_map_[d->index], d->verdict, d->reply, d->dsn);
            } else if (auto* h = std::get_if<sc::HostFailed>(&a)) {
                last_error_ = as_reply(h->reason);
                retry_plain_ = h->retry_without_tls;
                message_only_ = h->message_only;
            }
        }
    }
    if (idle_) {
        idle_ = false;
        dest_.idle.remove(this);
    }
    idle_timer_.reset();
    streaming_ = false;
    session_.reset();
    stream_.reset();  // allowed from on_closed
    if (open_recipients() && !e_.stopping_) return connect_next();
    finish();
}

void Engine::Conn::handle() {
    if (!session_) return;
    for (;;) {
        auto actions = session_->take_actions();
        if (actions.empty()) break;
        for (auto& a : actions) {
            if (auto* s = std::get_if<sc::Send>(&a)) {
                if (stream_) stream_->write(s->bytes);
            } else if (std::holds_alternative<sc::StartTls>(a)) {
                SslPtr ssl = e_.tls_ ? e_.tls_->new_client_ssl(cur_.host, cur_.host) : SslPtr();
                auto r = ssl && stream_ ? stream_->start_tls_client(std::move(ssl))
                                        : Result<size_t>(fail("no TLS client context"));
                if (!r) session_->tls_done(sc::TlsOutcome{false, false, r.error().message});
            } else if (std::holds_alternative<sc::SendBody>(a)) {
                streaming_ = true;
                pump_body();
            } else if (std::holds_alternative<sc::Ready>(a)) {
                on_ready();
            } else if (auto* d = std::get_if<sc::RcptDone>(&a)) {
                if (d->index < tx_map_.size())
                    report(tx_map_[d->index], d->verdict, d->reply, d->dsn);
            } else if (std::holds_alternative<sc::TransactionDone>(a)) {
                if (!open_recipients()) job_.reset();
            } else if (auto* h = std::get_if<sc::HostFailed>(&a)) {
                last_error_ = as_reply(h->reason);
                retry_plain_ = h->retry_without_tls;
                message_only_ = h->message_only;
                log::info("host ", cur_.desc(), " failed: ", h->reason);
            } else if (std::holds_alternative<sc::Close>(a)) {
                if (stream_) stream_->close_after_flush();
            }
        }
    }
    update_timer();
}

void Engine::Conn::on_ready() {
    if (!job_) {
        Job next;
        if (!e_.stopping_ && e_.take_job(dest_, next)) {
            set_job(std::move(next));
        } else {
            idle_ = true;
            if (!idle_timer_) idle_timer_.reset(evtimer_new(e_.base_, idle_cb, this));
            timeval tv{};
            tv.tv_sec = static_cast<time_t>(e_.config_.reuse_time.count() / 1000);
            tv.tv_usec = static_cast<suseconds_t>((e_.config_.reuse_time.count() % 1000) * 1000);
            if (idle_timer_) evtimer_add(idle_timer_.get(), &tv);
            e_.go_idle(this);
            return;
        }
    }
    start_transaction();
}

void Engine::Conn::start_transaction() {
    const MessageData& m = *job_->message;
    sc::Transaction t;
    t.sender = m.sender;
    t.size = m.size;
    t.body = m.body;
    t.smtputf8 = m.smtputf8;
    t.ret = m.ret;
    t.envid = m.envid;
    t.text = m.text;
    tx_map_.clear();
    for (size_t i = 0; i < reported_.size(); ++i) {
        if (reported_[i]) continue;
        tx_map_.push_back(i);
        t.recipients.push_back(job_->recipients[i]);
    }
    session_->start(t);
}

void Engine::Conn::give(Job job) {
    idle_ = false;
    if (idle_timer_) evtimer_del(idle_timer_.get());
    set_job(std::move(job));
    start_transaction();
    handle();
}

void Engine::Conn::quit() {
    idle_ = false;
    if (idle_timer_) evtimer_del(idle_timer_.get());
    if (!session_) return;
    if (session_->ready()) {
        session_->quit();
        handle();
    } else if (stream_) {
        stream_->close_after_flush();
    }
}

void Engine::Conn::idle_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<Conn*>(self);
    if (!c->idle_) return;
    c->dest_.idle.remove(c);
    c->quit();
}

void Engine::Conn::pump_body() {
    while (streaming_ && stream_ && !stream_->closing() &&
           stream_->output_size() < kOutputHighWater) {
        std::string piece = session_->next_body(kBodyChunk);
        if (piece.empty()) {
            streaming_ = false;
            break;
        }
        stream_->write(piece);
    }
    update_timer();
}

void Engine::Conn::update_timer() {
    if (!stream_ || !session_) return;
    std::chrono::milliseconds t{0};
    switch (session_->phase()) {
        case sc::Phase::Greeting:
            t = e_.config_.helo_timeout;
            break;
        case sc::Phase::Command:
            t = e_.config_.command_timeout;
            break;
        case sc::Phase::DataInit:
            t = e_.config_.data_init_timeout;
            break;
        case sc::Phase::DataBlock:
            t = e_.config_.data_block_timeout;
            break;
        case sc::Phase::DataDone:
            t = e_.config_.data_done_timeout;
            break;
        case sc::Phase::Idle:
        case sc::Phase::Closed:
            t = std::chrono::milliseconds{0};
            break;
    }
    stream_->set_idle_timeout(t);
}

// ---- the engine -----------------------------------------------------------

Engine::Engine(event_base* base, EngineConfig config, Resolver& resolver,
               const event::TlsContext* tls)
    : base_(base),
      config_(std::move(config)),
      resolver_(resolver),
      tls_(tls),
      rng_(std::random_device{}()) {
    reap_.reset(event_new(base, -1, 0, reap_cb, this));
}

Engine::~Engine() {
    // Connections first (they refer to their destinations).
    conns_.clear();
    dead_.clear();
}

size_t Engine::waiting_jobs() const {
    size_t n = 0;
    for (const auto& [k, d] : dests_) n += d.queue.size();
    return n;
}

NextHop Engine::hop_for(const std::string& domain, const std::string& sender) const {
    if (auto hop = config_.relay_map.lookup(domain)) return *hop;
    if (auto hop = config_.sender_relay_map.lookup(sender)) return *hop;
    if (config_.relayhost) {
        NextHop hop = *config_.relayhost;
        hop.relay = true;
        return hop;
    }
    NextHop hop;
    hop.port = config_.smtp_port;
    if (!domain.empty() && domain.front() == '[' && domain.back() == ']') {
        std::string lit = domain.substr(1, domain.size() - 2);
        if (lit.rfind("ipv6:", 0) == 0) lit = lit.substr(5);
        hop.host = lit;
        hop.mx_lookup = false;
        return hop;
    }
    hop.host = domain;
    return hop;
}

sc::TlsLevel Engine::tls_level(const Dest& d) const {
    if (auto l = config_.tls_policy.lookup(d.hop.mx_lookup ? d.hop.host : d.key)) return *l;
    return config_.default_tls;
}

void Engine::submit(Job job) {
    if (stopping_) {
        Outcome o{sc::Verdict::Deferred, "451 4.3.0 remote-delivery is stopping", "4.3.0", "", ""};
        for (size_t i = 0; i < job.recipients.size(); ++i)
            if (job.report) job.report(i, o);
        return;
    }
    NextHop hop = hop_for(job.domain, job.message ? job.message->sender : std::string());
    std::string key = hop.key();
    auto [it, inserted] = dests_.try_emplace(key);
    Dest& d = it->second;
    if (inserted) {
        d.key = key;
        d.hop = hop;
    }
    d.queue.push_back(std::move(job));
    schedule();
}

bool Engine::take_job(Dest& d, Job& out) {
    if (d.queue.empty()) return false;
    out = std::move(d.queue.front());
    d.queue.pop_front();
    return true;
}

void Engine::fail_queue(Dest& d, sc::Verdict v, const std::string& reply, const std::string& dsn) {
    std::list<Job> jobs;
    jobs.swap(d.queue);
    Outcome o{v, reply, dsn, "", ""};
    for (Job& j : jobs)
        for (size_t i = 0; i < j.recipients.size(); ++i)
            if (j.report) j.report(i, o);
}

void Engine::schedule() {
    if (stopping_ || scheduling_) return;
    scheduling_ = true;
    for (int guard = 0; guard < 100000; ++guard) {
        bool acted = false;
        bool starved = false;
        for (auto& [key, d] : dests_) {
            if (d.queue.empty()) continue;
            if (!d.idle.empty()) {
                Conn* c = d.idle.front();
                d.idle.pop_front();
                Job j = std::move(d.queue.front());
                d.queue.pop_front();
                c->give(std::move(j));
                acted = true;
                break;
            }
            if (d.active >= config_.destination_concurrency) continue;
            if (total_ >= config_.total_concurrency) {
                starved = true;
                continue;
            }
            Job j = std::move(d.queue.front());
            d.queue.pop_front();
            start_conn(d, std::move(j));
            acted = true;
            break;
        }
        if (!acted && starved) {
            // Make room: an idle connection of another destination goes.
            for (auto& [key, d] : dests_) {
                if (d.idle.empty()) continue;
                Conn* c = d.idle.front();
                d.idle.pop_front();
                c->quit();
                break;
            }
        }
        if (!acted) break;
    }
    scheduling_ = false;
    // Forget destinations with nothing left.
    for (auto it = dests_.begin(); it != dests_.end();) {
        if (it->second.queue.empty() && it->second.active == 0)
            it = dests_.erase(it);
        else
            ++it;
    }
}

void Engine::start_conn(Dest& d, Job job) {
    auto c = std::make_unique<Conn>(*this, d, std::move(job));
    Conn* raw = c.get();
    conns_[raw] = std::move(c);
    ++d.active;
    ++total_;
    raw->start();
}

void Engine::go_idle(Conn* c) {
    if (stopping_) {
        c->quit();
        return;
    }
    c->dest().idle.push_back(c);
    schedule();
}

void Engine::conn_done(Conn* c) {
    auto it = conns_.find(c);
    if (it == conns_.end()) return;
    Dest& d = c->dest();
    d.idle.remove(c);
    if (d.active > 0) --d.active;
    if (total_ > 0) --total_;
    dead_.push_back(std::move(it->second));
    conns_.erase(it);
    if (reap_) event_active(reap_.get(), 0, 0);
    schedule();
    maybe_stopped();
}

void Engine::reap_cb(evutil_socket_t, short, void* self) noexcept {
    auto* e = static_cast<Engine*>(self);
    e->dead_.clear();
}

void Engine::stop(std::function<void()> done) {
    stopping_ = true;
    on_stopped_ = std::move(done);
    for (auto& [key, d] : dests_) {
        std::list<Conn*> idle;
        idle.swap(d.idle);
        for (Conn* c : idle) c->quit();
        d.queue.clear();  // never answered: the queue-manager defers them
    }
    maybe_stopped();
}

void Engine::maybe_stopped() {
    if (stopping_ && total_ == 0 && on_stopped_) {
        auto fn = std::move(on_stopped_);
        on_stopped_ = nullptr;
        fn();
    }
}

}  // namespace pbx::remote
