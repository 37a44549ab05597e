#include "common/login/server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "common/event/stream.hpp"
#include "common/event/write_through.hpp"
#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/peers.hpp"
#include "common/ipc/session_msgs.hpp"
#include "common/log.hpp"
#include "common/login/reply_ahead.hpp"
#include "common/session_interface.hpp"

namespace pbx::login {

namespace {

constexpr size_t kForwardChunk = 64 * 1024;

std::string esc(std::string_view v) {
    return ipc::escape_value(v, 64);
}

bool is_loopback(std::string_view ip) {
    return ip.starts_with("127.") || ip == "::1";
}

std::string new_session_id() {
    unsigned char raw[6];
    if (RAND_bytes(raw, sizeof raw) != 1) return "unknown";
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (unsigned char c : raw) {
        s.push_back(kHex[c >> 4]);
        s.push_back(kHex[c & 15]);
    }
    return s;
}

}  // namespace

// ---- one client connection ---------------------------------------------------

class Connection : public event::StreamHandler {
  public:
    Connection(LoginServer& server, uint64_t id, const event::PeerAddress& peer, bool implicit_tls,
               event::ConnectionSlot slot)
        : server_(server),
          id_(id),
          peer_(peer),
          implicit_tls_(implicit_tls),
          slot_(std::move(slot)),
          session_side_(*this),
          session_id_(new_session_id()) {}

    ~Connection() override {
        if (auth_req_) server_.authd().cancel(auth_req_);
        if (start_req_) server_.master().cancel(start_req_);
    }

    bool start(UniqueFd fd) {
        // Replies are small writes that must go out at once (a RETR answer
        // is a status line, then the message): no Nagle delay.
        int one = 1;
        (void)setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto c = event::StreamConnection::create(server_.base(), std::move(fd), *this);
        if (!c) {
            log::warn("cannot set up a connection from ", peer_.ip, ": ", c.error().message);
            return false;
        }
        conn_ = std::move(c).value();
        // In plaintext (before STARTTLS, and proxying after a plaintext
        // login) a read takes what the socket holds: see forward().
        conn_->set_whole_reads(true);
        // The replies before login (CAPA, USER, AUTH ...): one send() each,
        // without an EPOLLOUT round first (3 system calls fewer).
        conn_->set_direct_writes(true);
        const LoginSettings& st = server_.settings();
        ClientFacts facts;
        facts.client_ip = peer_.ip;
        facts.tls = implicit_tls_;
        facts.starttls_offered = !implicit_tls_ && server_.tls() != nullptr;
        facts.plaintext_allowed = st.allow_plaintext || is_loopback(peer_.ip);
        facts.hostname = st.hostname;
        engine_ = server_.make_engine(facts);
        conn_->set_idle_timeout(st.autologout);
        if (implicit_tls_) {
            if (!server_.tls()) {
                log::warn("TLS is not configured; closing the connection from ", peer_.ip);
                return false;
            }
            if (auto s = conn_->start_implicit_tls(*server_.tls()); !s) {
                log::warn("cannot start TLS with ", peer_.ip, ": ", s.error().message);
                return false;
            }
            return true;
        }
        if (auto s = conn_->start(); !s) {
            log::warn("cannot start a connection from ", peer_.ip, ": ", s.error().message);
            return false;
        }
        engine_->start();
        handle_actions();
        return true;
    }

    void shutdown() {
        switch (state_) {
            case State::PreLogin:
                engine_->shutting_down();
                handle_actions();
                break;
            case State::Authenticating:
            case State::Starting:
                conn_->close();
                break;
            case State::Proxy:
                if (session_ && !session_closed_) session_->close_after_flush();
                conn_->close_after_flush();
                break;
        }
    }

    // ---- the client side ----
    void on_input(event::StreamConnection& c) noexcept override {
        if (state_ == State::Proxy) {
            if (ahead_) return relay();
            forward(c, *session_);
            if (c.at_eof() && c.input_size() == 0) {
                if (!session_closed_) session_->close_after_flush();
                c.close_after_flush();
            }
            return;
        }
        if (state_ == State::PreLogin) pump();
        if (c.at_eof() && !c.closing()) {
            // Gone before a session started: nothing to hand over.
            log::info("disconnected before login: rip=", peer_.ip, " (", session_id_, ")");
            c.close();
        }
    }

    void on_timeout(event::StreamConnection& c) noexcept override {
        if (state_ == State::PreLogin) {
            log::info("disconnected: inactivity before login: rip=", peer_.ip, " (", session_id_,
                      ")");
            engine_->timed_out();
            handle_actions();
        } else if (state_ != State::Proxy) {
            c.close();
        }
    }

    void on_tls_ready(event::StreamConnection& c) noexcept override {
        tls_text_ = c.tls_info().version + " " + c.tls_info().cipher;
        if (discarded_ > 0) {
            log::warn("STARTTLS from ", peer_.ip, ": ", discarded_,
                      " bytes pipelined after the command were discarded");
            discarded_ = 0;
        }
        if (implicit_tls_ && !greeted_) {
            greeted_ = true;
            engine_->start();
        } else {
            engine_->tls_started();
        }
        handle_actions();
        pump();
    }

    void on_drained(event::StreamConnection& c) noexcept override {
        if (state_ == State::Proxy && ahead_) return relay();
        if (state_ == State::Proxy && session_ && !session_closed_) forward(*session_, c);
        if (state_ == State::PreLogin) pump();
    }

    void on_closed(event::StreamConnection&, const event::CloseInfo& info) noexcept override {
        client_closed_ = true;
        if (info.reason == event::CloseReason::TlsFailed)
            log::info("TLS handshake with ", peer_.ip, " failed: ", info.detail);
        if (auth_req_) {
            server_.authd().cancel(auth_req_);
            auth_req_ = 0;
        }
        if (start_req_) {
            server_.master().cancel(start_req_);
            start_req_ = 0;
        }
        local_end_.reset();
        if (state_ == State::Proxy) {
            log::info("disconnected: user=<", esc(user_), ">, rip=", peer_.ip, " (", session_id_,
                      ")", info.detail.empty() ? "" : ": ", info.detail,
                      ahead_ ? log::concat(", answered ahead: ", ahead_->answered()) : "");
            if (session_ && !session_closed_) {
                session_->close_after_flush();
                return;  // removed when the session side is closed too
            }
        }
        server_.remove(id_);  // destroys this: nothing may follow
    }

  private:
    enum class State { PreLogin, Authenticating, Starting, Proxy };

    // The session's end of the proxy.
    struct SessionSide : event::StreamHandler {
        explicit SessionSide(Connection& c) : c(c) {}
        Connection& c;
        void on_input(event::StreamConnection& s) noexcept override {
            if (c.ahead_) return c.relay();  // EOF included
            if (!c.client_closed_) c.forward(s, *c.conn_);
            if (s.at_eof() && s.input_size() == 0) {
                if (!c.client_closed_) c.conn_->close_after_flush();
                s.close();
            }
        }
        void on_timeout(event::StreamConnection&) noexcept override {}
        void on_tls_ready(event::StreamConnection&) noexcept override {}
        void on_drained(event::StreamConnection& s) noexcept override {
            if (c.ahead_) return c.relay();
            if (!c.client_closed_) c.forward(*c.conn_, s);
        }
        void on_closed(event::StreamConnection&, const event::CloseInfo&) noexcept override {
            c.session_closed_ = true;
            if (!c.client_closed_) {
                c.conn_->close_after_flush();
                return;
            }
            c.server_.remove(c.id_);
        }
    };

    // Moves what `from` has read to `to`, as far as `to` has room.
    void forward(event::StreamConnection& from, event::StreamConnection& to) {
        if (to.closing()) {
            from.drain(from.input_size());
            return;
        }
        // Both sides are plaintext here or past their TLS handshake:
        // what one side sent goes to the other in the same call.
        for (;;) {
            const size_t avail = from.input_size();
            const size_t queued = to.output_size();
            if (avail == 0 || queued >= kProxyHighWater) break;
            std::string_view v =
                from.peek(std::min({avail, kProxyHighWater - queued, kForwardChunk}));
            if (v.empty()) break;
            // Both plaintext sides read whole (set_whole_reads): an answer
            // of up to 64 KiB that the session sent with one send() is here
            // in one piece and leaves with one send(), as one segment, so
            // the client wakes once per answer. Over TLS libevent decrypts
            // and hands over what it has; it goes on as it comes.
            event::write_through(to, v);
            from.drain(v.size());
        }
    }

    // Reply-ahead (reply_ahead.hpp; pop3d(8), the proxy protocol): the
    // session's frames to the client, as far as the client's queue has
    // room; the client's bytes to the session as the offer rule lets them
    // on. A bad frame closes the connection.
    void relay() {
        ReplyAhead& a = *ahead_;
        if (client_closed_) {
            if (!session_closed_) session_->drain(session_->input_size());
            return;
        }
        while (!session_closed_ && !session_->closing() && session_->input_size() > 0 &&
               (conn_->closing() || conn_->output_size() < kProxyHighWater)) {
            std::string_view v = session_->peek(std::min(session_->input_size(), kForwardChunk));
            const bool ok = a.from_session(v);
            session_->drain(v.size());
            if (!ok) return ahead_failed();
            flush_ahead();
        }
        if (!session_closed_ && !session_->closing() && session_->at_eof() &&
            session_->input_size() == 0) {
            // The session ended (QUIT, autologout): the client gets the rest.
            conn_->close_after_flush();
            session_->close();
            return;
        }
        while (conn_->input_size() > 0 && !conn_->closing()) {
            if (session_closed_ || session_->closing()) {
                conn_->drain(conn_->input_size());
                break;
            }
            if (session_->output_size() >= kProxyHighWater) break;
            std::string_view v = conn_->peek(std::min(conn_->input_size(), kForwardChunk));
            const size_t n = a.from_client(v);
            conn_->drain(n);
            if (a.failed()) return ahead_failed();
            flush_ahead();
            if (n == 0) break;
        }
        if (conn_->at_eof() && conn_->input_size() == 0 && !conn_->closing()) {
            a.client_eof();  // what is held goes on, as without reply-ahead
            flush_ahead();
            if (!session_closed_) session_->close_after_flush();
            conn_->close_after_flush();
        }
    }

    // The session broke the proxy protocol (a bad frame): this connection
    // ends, the others of this process go on.
    void ahead_failed() {
        log::warn("session of ", esc(user_), " (", session_id_, "): ", ahead_->error(),
                  "; closing the connection");
        session_->close();
        conn_->close();
    }

    void flush_ahead() {
        auto done = [](std::string& s) {
            if (s.capacity() > 16 * 1024)
                std::string().swap(s);  // an idle connection keeps no large buffer
            else
                s.clear();
        };
        std::string& tc = ahead_->to_client();
        if (!tc.empty()) {
            if (!client_closed_) event::write_through(*conn_, tc);
            done(tc);
        }
        std::string& ts = ahead_->to_session();
        if (!ts.empty()) {
            if (!session_closed_) event::write_through(*session_, ts);
            done(ts);
        }
        // Taken lines the login holds back reach the session within a
        // second, so that its autologout sees a slow client's activity.
        if (ahead_->taken_held() > 0 && !session_closed_) {
            if (!taken_timer_) taken_timer_.reset(evtimer_new(server_.base(), taken_cb, this));
            if (taken_timer_ && !evtimer_pending(taken_timer_.get(), nullptr))
                evtimer_add(taken_timer_.get(), &kTakenDelay);
        }
    }

    static constexpr timeval kTakenDelay{1, 0};
    static void taken_cb(evutil_socket_t, short, void* self) noexcept {
        auto* c = static_cast<Connection*>(self);
        if (!c->ahead_ || c->client_closed_ || c->session_closed_) return;
        c->ahead_->release_taken();
        c->flush_ahead();
    }

    void pump() {
        while (state_ == State::PreLogin && !engine_->waiting() && !engine_->closed() &&
               !conn_->closing()) {
            const size_t avail = conn_->input_size();
            if (avail == 0) break;
            std::string_view view = conn_->peek(std::min(avail, kForwardChunk));
            const size_t taken = engine_->feed(view);
            conn_->drain(taken);
            handle_actions();
            if (taken == 0) break;
        }
    }

    void handle_actions() {
        for (auto& a : engine_->take_actions()) {
            if (auto* r = std::get_if<Reply>(&a)) {
                conn_->write(r->text);
            } else if (std::holds_alternative<StartTls>(a)) {
                const event::TlsContext* tls = server_.tls();
                auto r =
                    tls ? conn_->start_tls(*tls) : Result<size_t>(fail("TLS is not available"));
                if (!r) {
                    log::warn("STARTTLS from ", peer_.ip, " failed: ", r.error().message);
                    conn_->close();
                    return;
                }
                discarded_ += *r;
            } else if (auto* au = std::get_if<Authenticate>(&a)) {
                authenticate(*au);
            } else if (std::holds_alternative<Close>(a)) {
                conn_->close_after_flush();
            }
        }
    }

    void authenticate(const Authenticate& a) {
        state_ = State::Authenticating;
        user_ = a.user;
        login_tag_ = a.login_tag;
        auto m = ipc::Message::named(ipc::auth::kProtocol, "login");
        m.set_u64("id", 0)
            .set_str("user", a.user.find('\0') == std::string::npos ? a.user : "")
            .set_bytes("password", a.password)
            .set_str("client_address", peer_.ip)
            .set_str("service", server_.settings().service);
        auth_req_ = server_.authd().request(std::move(m), [this](std::optional<ipc::Message> r) {
            auth_req_ = 0;
            on_login_result(std::move(r));
        });
    }

    void refuse(AuthOutcome outcome, std::string_view why) {
        log::info("aborted login (", why, "): user=<", esc(user_), ">, rip=", peer_.ip, " (",
                  session_id_, ")");
        state_ = State::PreLogin;
        engine_->auth_result(outcome);
        handle_actions();
        pump();
    }

    void on_login_result(std::optional<ipc::Message> r) {
        if (!r) return refuse(AuthOutcome::TempFail, "authd did not answer");
        const std::string_view status = r->get_str("status").value_or("");
        if (status == "fail") return refuse(AuthOutcome::Fail, "auth failed");
        if (status != "ok" || !r->has("ticket"))
            return refuse(AuthOutcome::TempFail, "temporary authentication failure");
        user_ = std::string(r->get_str("user").value_or(user_));
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return refuse(AuthOutcome::TempFail, "socketpair failed");
        local_end_ = UniqueFd(sv[0]);
        UniqueFd remote(sv[1]);
        auto m = ipc::Message::named(ipc::session::kProtocol, "start");
        m.set_u64("id", 0)
            .set_str("ticket", *r->get_str("ticket"))
            .set_str("service", server_.settings().service)
            .set_str("client_address", peer_.ip)
            .set_str("tls", conn_->tls_active() ? tls_text_ : "")
            .set_str("session_id", session_id_)
            .add_fd("client", std::move(remote));
        if (!login_tag_.empty()) m.set_str("login_tag", login_tag_);
        if (server_.settings().reply_ahead) m.set_str("proxy", session_interface::kProxyFrames);
        state_ = State::Starting;
        start_req_ = server_.master().request(std::move(m), [this](std::optional<ipc::Message> r) {
            start_req_ = 0;
            on_start_result(std::move(r));
        });
    }

    void on_start_result(std::optional<ipc::Message> r) {
        if (!r) {
            local_end_.reset();
            return refuse(AuthOutcome::TempFail, "the master did not answer");
        }
        const std::string_view status = r->get_str("status").value_or("");
        if (status != "ok") {
            local_end_.reset();
            std::string why =
                "session not started: " + std::string(r->get_str("reason").value_or(status));
            return refuse(status == "fail" ? AuthOutcome::Fail : AuthOutcome::TempFail, why);
        }
        auto s =
            event::StreamConnection::create(server_.base(), std::move(local_end_), session_side_);
        if (s) (*s)->set_whole_reads(true);
        if (!s || !(*s)->start()) {
            log::error("cannot proxy to the session of ", esc(user_));
            conn_->close();
            return;
        }
        session_ = std::move(s).value();
        state_ = State::Proxy;
        if (server_.settings().reply_ahead) ahead_ = std::make_unique<ReplyAhead>();
        conn_->set_idle_timeout(std::chrono::milliseconds(0));
        log::info("login: user=<", esc(user_), ">, rip=", peer_.ip,
                  conn_->tls_active() ? ", TLS" : "", ", session=<", session_id_, ">, pid ",
                  r->get_u64("pid").value_or(0));
        if (ahead_) return relay();  // what the client pipelined after its login
        forward(*conn_, *session_);  // what the client pipelined after its login
        if (conn_->at_eof() && conn_->input_size() == 0) {
            session_->close_after_flush();
            conn_->close_after_flush();
        }
    }

    LoginServer& server_;
    uint64_t id_;
    event::PeerAddress peer_;
    bool implicit_tls_;
    event::ConnectionSlot slot_;
    SessionSide session_side_;
    std::string session_id_;
    std::unique_ptr<event::StreamConnection> conn_;
    std::unique_ptr<event::StreamConnection> session_;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<ReplyAhead> ahead_;  // LoginSettings::reply_ahead, in Proxy state
    EventPtr taken_timer_;               // passes taken lines on (release_taken)
    State state_ = State::PreLogin;
    uint64_t auth_req_ = 0, start_req_ = 0;
    UniqueFd local_end_;
    std::string user_, login_tag_, tls_text_;
    bool greeted_ = false;
    bool client_closed_ = false;
    bool session_closed_ = false;
    size_t discarded_ = 0;
};

// ---- settings and the server -------------------------------------------------

Result<LoginSettings> LoginSettings::from_config(const config::Config& cfg,
                                                 std::string_view service,
                                                 std::string_view prefix) {
    LoginSettings s;
    s.service = std::string(service);
    const std::string p(prefix);
    s.limits.max_total = static_cast<size_t>(cfg.integer(p + "_max_connections"));
    s.limits.max_per_ip = static_cast<size_t>(cfg.integer(p + "_max_connections_per_ip"));
    s.autologout =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg.duration(p + "_autologout"));
    s.allow_plaintext = cfg.boolean("login_allow_plaintext");
    s.hostname = cfg.str("myhostname");
    if (s.hostname.empty()) {
        char buf[256] = {};
        if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
            return fail("myhostname is empty and gethostname() failed");
        s.hostname = buf;
    }
    return s;
}

LoginServer::~LoginServer() {
    connections_.clear();  // before the clients they use
}

Result<std::unique_ptr<LoginServer>> LoginServer::prepare(const ServiceContext& ctx,
                                                          LoginSettings settings,
                                                          EngineFactory factory,
                                                          std::vector<std::string> listener_names,
                                                          std::string refusal) {
    std::unique_ptr<LoginServer> srv(new LoginServer());
    srv->settings_ = std::move(settings);
    srv->factory_ = std::move(factory);
    srv->listener_names_ = std::move(listener_names);
    srv->refusal_ = std::move(refusal);
    auto tls = event::TlsContext::load_server(ctx.config.str("tls_cert_file"),
                                              ctx.config.str("tls_key_file"));
    if (tls)
        srv->tls_.emplace(std::move(tls).value());
    else
        log::error("TLS not available (no STARTTLS, implicit-TLS listeners refuse): ",
                   tls.error().message);
    return srv;
}

Status LoginServer::start(ServiceContext& ctx) {
    base_ = ctx.base.get();
    config_ = &ctx.config;
    authd_ = std::make_unique<RequestClient>(
        base_, ctx.runtime_path(ipc::kAuthSocket), ipc::auth::kProtocol, "login_result",
        std::chrono::duration_cast<std::chrono::milliseconds>(kAuthdTimeout));
    master_ = std::make_unique<RequestClient>(
        base_, ctx.runtime_path(ipc::kSessionSocket), ipc::session::kProtocol, "start_result",
        std::chrono::duration_cast<std::chrono::milliseconds>(kMasterTimeout));
    limiter_ = event::ConnectionLimiter::make(settings_.limits);
    for (auto& l : ctx.listeners) {
        if (std::find(listener_names_.begin(), listener_names_.end(), l.name) ==
            listener_names_.end()) {
            log::warn("ignoring inherited listener '", l.name, "'");
            continue;
        }
        event::Acceptor::Options opt;
        if (!l.implicit_tls) opt.refusal = refusal_;
        const bool implicit = l.implicit_tls;
        auto acc = event::Acceptor::create(
            base_, l.fd.get(), limiter_, opt,
            [this, implicit](UniqueFd fd, const event::PeerAddress& peer,
                             event::ConnectionSlot slot) {
                accept(std::move(fd), peer, implicit, std::move(slot));
            },
            [](const event::PeerAddress& peer, event::LimitHit why) {
                log::warn("too many connections ",
                          why == event::LimitHit::PerIp ? "from " : "in total; refused ", peer.ip);
            });
        if (!acc) return fail(l.name + " listener: " + acc.error().message);
        acceptors_.push_back(std::move(acc).value());
    }
    if (acceptors_.empty()) return fail("no listener was inherited from the master");
    log::info("ready: ", acceptors_.size(), " listener(s), TLS ", tls_ ? "available" : "missing",
              ", at most ", settings_.limits.max_total, " connections");
    return {};
}

void LoginServer::accept(UniqueFd fd, const event::PeerAddress& peer, bool implicit_tls,
                         event::ConnectionSlot slot) {
    if (stop_.stopping()) return;
    const uint64_t id = next_id_++;
    auto [it, inserted] = connections_.emplace(
        id, std::make_unique<Connection>(*this, id, peer, implicit_tls, std::move(slot)));
    if (!it->second->start(std::move(fd))) connections_.erase(it);
}

void LoginServer::remove(uint64_t id) {
    connections_.erase(id);
    stop_.removed();
}

void LoginServer::stop() {
    if (stop_.stopping()) return;
    acceptors_.clear();
    stop_.begin(base_, [&] {
        for (auto& [id, c] : connections_) c->shutdown();
    });
}

}  // namespace pbx::login
