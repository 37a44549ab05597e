#include "master/sessions.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/session_msgs.hpp"
#include "common/log.hpp"
#include "common/master_interface.hpp"
#include "common/privsep/privsep.hpp"
#include "common/session_interface.hpp"
#include "master/supervisor.hpp"

namespace pbx::master {
namespace si = session_interface;
namespace sm = ipc::session;

namespace {

std::string esc(std::string_view v) {
    return ipc::escape_value(v, 64);
}

std::string env(std::string_view key, std::string_view value) {
    std::string s(key);
    s += '=';
    s += value;
    return s;
}

}  // namespace

SessionLauncher::SessionLauncher(event_base* base, Supervisor& sup) : base_(base), sup_(sup) {}

SessionLauncher::~SessionLauncher() = default;

Status SessionLauncher::listen(const std::string& runtime_dir, ipc::PeerTable peers) {
    auth_path_ = ipc::socket_path(runtime_dir, ipc::Channel::Auth);
    auto path = ipc::socket_path(runtime_dir, ipc::Channel::Session);
    auto fd = ipc::listen_unix(path, 0666);
    if (!fd) return Err{fd.error()};
    server_ = std::make_unique<ipc::Server>(
        base_, std::move(fd).value(), ipc::Channel::Session, std::move(peers),
        [this](UniqueFd client, const ipc::PeerInfo& who) { accept(std::move(client), who); });
    return {};
}

void SessionLauncher::accept(UniqueFd fd, const ipc::PeerInfo& peer) {
    const uint64_t id = next_client_++;
    Client& c = clients_[id];
    c.peer = peer;
    c.conn = std::make_unique<ipc::Connection>(
        base_, std::move(fd), sm::kProtocol,
        [this, id](ipc::Message&& m) { on_start(id, std::move(m)); },
        [this, id](const ipc::IpcError& e) {
            if (e.code != ipc::IpcErrc::Eof && e.code != ipc::IpcErrc::Done)
                log::warn("session channel: login process (pid ", clients_[id].peer.pid,
                          "): ", e.text);
            clients_.erase(id);  // pending starts find their client gone
        });
    log::debug("session channel: login process pid ", peer.pid, " connected");
}

void SessionLauncher::on_start(uint64_t client_id, ipc::Message&& m) {
    auto cit = clients_.find(client_id);
    if (cit == clients_.end()) return;
    Client& c = cit->second;
    if (m.name() != "start") {
        log::warn("session channel: login process pid ", c.peer.pid, " sent a '", m.name(),
                  "'; closing");
        clients_.erase(cit);
        return;
    }
    const uint64_t request_id = *m.get_u64("id");
    const std::string service(*m.get_str("service"));
    if (sm::session_program(service).empty()) {
        log::warn("session channel: unknown service '", esc(service), "'");
        return answer(client_id, request_id, "fail", "unknown service", "", 0);
    }
    const std::string proxy(m.get_str("proxy").value_or(""));
    if (!proxy.empty() && (proxy != si::kProxyFrames || service != "pop3")) {
        log::warn("session channel: unknown proxy mode '", esc(proxy), "'");
        return answer(client_id, request_id, "fail", "unknown proxy mode", "", 0);
    }
    if (c.pending >= kMaxPendingPerClient)
        return answer(client_id, request_id, "tempfail", "too many starts in flight", "", 0);

    auto p = std::make_unique<Pending>();
    p->owner = this;
    p->key = next_key_++;
    p->client_id = client_id;
    p->request_id = request_id;
    p->service = service;
    p->client_address = std::string(m.get_str("client_address").value_or(""));
    p->tls = std::string(m.get_str("tls").value_or(""));
    p->login_tag = std::string(m.get_str("login_tag").value_or(""));
    p->session_id = std::string(m.get_str("session_id").value_or(""));
    p->proxy = proxy;
    p->client_fd = m.take_fd("client");
    p->timer.reset(evtimer_new(base_, timer_cb, p.get()));
    const std::string ticket(*m.get_str("ticket"));
    if (ensure_auth()) {
        auto r = ipc::Message::named(ipc::auth::kProtocol, "redeem");
        r.set_u64("id", p->key).set_str("ticket", ticket);
        if (auth_->send(std::move(r))) p->sent = true;
    }
    timeval tv{p->sent ? static_cast<time_t>(kRedeemTimeout.count()) : 0, 0};
    event_add(p->timer.get(), &tv);
    ++c.pending;
    pending_.emplace(p->key, std::move(p));
}

bool SessionLauncher::ensure_auth() {
    if (auth_ && auth_->is_open()) return true;
    auth_.reset();
    auto fd = ipc::connect_unix(auth_path_);
    if (!fd) {
        log::warn("session channel: authd is not reachable: ", fd.error().message);
        return false;
    }
    auth_ = std::make_unique<ipc::Connection>(
        base_, std::move(fd).value(), ipc::auth::kProtocol,
        [this](ipc::Message&& m) { on_auth_message(std::move(m)); },
        [this](const ipc::IpcError& e) { on_auth_close(e); });
    return true;
}

void SessionLauncher::on_auth_message(ipc::Message&& m) {
    if (m.name() != "redeem_result") {
        log::warn("session channel: unexpected ", m.name(), " from authd; ignored");
        return;
    }
    const uint64_t key = *m.get_u64("id");
    if (m.get_str("status").value_or("") != "ok")
        return finish(key, "fail", "ticket refused by authd", nullptr);
    finish(key, "ok", "", &m);
}

void SessionLauncher::on_auth_close(const ipc::IpcError& e) {
    log::warn("session channel: authd connection lost: ", e.text.empty() ? "closed" : e.text);
    auth_.reset();
    std::vector<uint64_t> keys;
    for (const auto& [key, p] : pending_)
        if (p->sent) keys.push_back(key);
    for (uint64_t key : keys) finish(key, "tempfail", "authd connection lost", nullptr);
}

void SessionLauncher::timer_cb(evutil_socket_t, short, void* arg) noexcept {
    auto* p = static_cast<Pending*>(arg);
    p->owner->finish(p->key, "tempfail",
                     p->sent ? "authd did not answer in time" : "authd is not reachable", nullptr);
}

void SessionLauncher::finish(uint64_t key, std::string_view status, std::string_view reason,
                             const ipc::Message* redeemed) {
    auto it = pending_.find(key);
    if (it == pending_.end()) return;  // timed out before authd answered
    std::unique_ptr<Pending> p = std::move(it->second);
    pending_.erase(it);
    auto cit = clients_.find(p->client_id);
    if (cit != clients_.end() && cit->second.pending > 0) --cit->second.pending;
    if (cit == clients_.end()) {
        log::info("session channel: the login process went away before its ", p->service,
                  " session for ", esc(p->client_address), " could start");
        return;  // the socketpair end closes with p
    }
    if (!redeemed) {
        log::warn(sm::session_program(p->service), ": no session for ", esc(p->client_address),
                  " (", p->session_id, "): ", reason);
        return answer(p->client_id, p->request_id, status, reason, "", 0);
    }
    const std::string user(redeemed->get_str("user").value_or(""));
    if (redeemed->get_str("service").value_or("") != p->service) {
        log::warn(sm::session_program(p->service), ": ticket of ", esc(user), " was issued for ",
                  esc(redeemed->get_str("service").value_or("")), ", not ", p->service);
        return answer(p->client_id, p->request_id, "fail", "ticket for another service", "", 0);
    }
    auto pid = spawn(*p, *redeemed);
    if (!pid) {
        log::error(sm::session_program(p->service), ": cannot start a session for ", esc(user),
                   ": ", pid.error().message);
        return answer(p->client_id, p->request_id, "tempfail", "cannot start the session", user, 0);
    }
    sessions_[*pid] = Running{user, p->service, p->session_id, p->client_address,
                              std::chrono::steady_clock::now()};
    log::info(sm::session_program(p->service), ": session of ", esc(user), " from ",
              esc(p->client_address), " started, pid ", *pid, " (", p->session_id,
              p->tls.empty() ? ", no TLS" : ", " + p->tls, ")");
    answer(p->client_id, p->request_id, "ok", "", user, *pid);
}

void SessionLauncher::answer(uint64_t client_id, uint64_t request_id, std::string_view status,
                             std::string_view reason, std::string_view user, pid_t pid) {
    auto cit = clients_.find(client_id);
    if (cit == clients_.end()) return;
    auto r = ipc::Message::named(sm::kProtocol, "start_result");
    r.set_u64("id", request_id).set_str("status", status);
    if (!reason.empty()) r.set_str("reason", reason);
    if (!user.empty()) r.set_str("user", user);
    if (pid > 0) r.set_u64("pid", static_cast<uint64_t>(pid));
    if (auto s = cit->second.conn->send(std::move(r)); !s)
        log::error("session channel: cannot encode an answer: ", s.error().message);
}

Result<pid_t> SessionLauncher::spawn(Pending& p, const ipc::Message& r) {
    const config::Config& cfg = sup_.config();
    const std::string program(sm::session_program(p.service));
    const std::string path = cfg.str("program_dir") + "/" + program;
    if (access(path.c_str(), X_OK) != 0) return fail_errno(path);
    const uint64_t uid = r.get_u64("uid").value_or(0);
    const uint64_t gid = r.get_u64("gid").value_or(0);
    if (uid == 0 || gid == 0 || uid > 0xfffffffeULL || gid > 0xfffffffeULL)
        return fail("refusing uid/gid " + std::to_string(uid) + "/" + std::to_string(gid));
    if (!p.client_fd) return fail("no client socket");
    if (sup_.config_fd() < 0) return fail("no configuration to pass on");

    privsep::DropSpec drop;
    drop.uid = static_cast<uid_t>(uid);
    drop.gid = static_cast<gid_t>(gid);

    const Options& opts = sup_.options();
    std::vector<std::string> env_strings = {
        env(si::kEnvConfigFd, std::to_string(si::kConfigFd)),
        env(si::kEnvService, program),
        env(si::kEnvUser, r.get_str("user").value_or("")),
        env(si::kEnvHome, r.get_str("home").value_or("/")),
        env(si::kEnvMailbox, r.get_str("mailbox").value_or("")),
        env(si::kEnvMailboxFormat, r.get_str("format").value_or("maildir")),
        env(si::kEnvClientAddress, p.client_address),
        env(si::kEnvTls, p.tls),
        env(si::kEnvSessionId, p.session_id),
        env(master_interface::kEnvForeground, opts.foreground ? "1" : "0"),
        env(master_interface::kEnvDebug, opts.debug ? "1" : "0"),
    };
    if (!p.login_tag.empty()) env_strings.push_back(env(si::kEnvLoginTag, p.login_tag));
    if (!p.proxy.empty()) env_strings.push_back(env(si::kEnvProxy, p.proxy));
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string argv0 = program;
    std::vector<char*> argv = {argv0.data(), nullptr};
    const int client = p.client_fd.get();
    const int config = sup_.config_fd();

    pid_t pid = fork();
    if (pid < 0) return fail_errno("fork");
    if (pid == 0) {
        // The master is single-threaded, so the drop's library calls are
        // safe here; anything that fails ends this child only.
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
        const int moved_client = fcntl(client, F_DUPFD, 16);
        const int moved_config = fcntl(config, F_DUPFD, 16);
        if (moved_client < 0 || moved_config < 0) _exit(126);
        if (dup2(moved_client, si::kClientFd) < 0 || dup2(moved_client, 1) < 0 ||
            dup2(moved_config, si::kConfigFd) < 0)
            _exit(126);
        close_range(si::kConfigFd + 1, ~0U, 0);
        if (!privsep::drop(drop)) _exit(126);
        if (chdir("/") != 0) _exit(126);
        execve(path.c_str(), argv.data(), envp.data());
        _exit(127);
    }
    p.client_fd.reset();  // the session holds it now
    return pid;
}

bool SessionLauncher::reaped(pid_t pid, int status) {
    auto it = sessions_.find(pid);
    if (it == sessions_.end()) return false;
    const Running& s = it->second;
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                 s.started)
                    .count();
    const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::string line =
        log::concat(sm::session_program(s.service), ": session of ", esc(s.user), " from ",
                    esc(s.client_address), " (pid ", pid, ", ", s.session_id, ") ended after ",
                    secs, " s: ", describe_exit(status));
    if (clean)
        log::info(line);
    else
        log::warn(line);
    sessions_.erase(it);
    return true;
}

void SessionLauncher::signal_all(int sig) {
    for (const auto& [pid, s] : sessions_) kill(pid, sig);
}

Result<std::unique_ptr<SessionLauncher>> start_sessions(event_base* base, Supervisor& sup,
                                                        const std::string& runtime_dir) {
    auto peers = ipc::PeerTable::from_system();
    if (!peers) return Err{peers.error()};
    auto launcher = std::make_unique<SessionLauncher>(base, sup);
    if (auto s = launcher->listen(runtime_dir, std::move(peers).value()); !s) return Err{s.error()};
    sup.attach_sessions(launcher.get());
    return launcher;
}

}  // namespace pbx::master
