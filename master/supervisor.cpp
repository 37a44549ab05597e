#include "master/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/peers.hpp"
#include "common/ipc/queue_msgs.hpp"
#include "common/log.hpp"
#include "common/master_interface.hpp"
#include "master/runtime.hpp"
#include "master/sessions.hpp"

namespace pbx::master {
namespace mi = master_interface;
namespace {

// A child that lived at least this long is healthy: its next crash restarts at once.
constexpr auto kHealthyUptime = std::chrono::seconds(10);
// How long the first start waits for authd and the queue-manager to listen.
constexpr auto kServerStartWait = std::chrono::seconds(5);
constexpr auto kMaxBackoff = std::chrono::milliseconds(10000);
constexpr auto kFirstBackoff = std::chrono::milliseconds(200);
constexpr int64_t kMaxInstances = 64;  // of one program (pop3_login_processes, ...)

Result<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail_errno("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

Result<UniqueFd> make_config_memfd(const std::string& text) {
    UniqueFd fd(memfd_create("pillarbox.conf", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) return fail_errno("memfd_create");
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = write(fd.get(), text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("write memfd");
        off += static_cast<size_t>(n);
    }
    // Children get a frozen copy: nobody can change the text under them.
    if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        return fail_errno("seal memfd");
    return fd;
}

// The uid a process runs as, from /proc (what `status` reports).
std::string proc_uid(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Uid:", 0) == 0) {
            std::istringstream f(line.substr(4));
            std::string real;
            f >> real;
            return real;
        }
    }
    return "?";
}

std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

std::string describe_exit(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char* name = sigabbrev_np(sig);
        return std::string("signal ") + std::to_string(sig) +
               (name ? std::string(" (SIG") + name + ")" : "");
    }
    return "status " + std::to_string(status);
}

Supervisor::Supervisor(event_base* base, Options opts) : base_(base), opts_(std::move(opts)) {
    for (const auto& def : kPrograms) (void)child_of(def, 0);
}

Supervisor::~Supervisor() = default;

Supervisor::Child& Supervisor::child_of(const ProgramDef& def, unsigned instance) {
    std::string name(def.name);
    if (instance > 0) name += "#" + std::to_string(instance + 1);
    auto [it, fresh] = children_.try_emplace(name);
    if (fresh) {
        it->second.def = &def;
        it->second.name = name;
        it->second.instance = instance;
        it->second.owner = this;
    }
    return it->second;
}

std::vector<const Supervisor::Child*> Supervisor::children_of(const ProgramDef& def) const {
    std::vector<const Child*> out;
    for (const auto& [name, c] : children_)
        if (c.def == &def) out.push_back(&c);
    std::sort(out.begin(), out.end(),
              [](const Child* a, const Child* b) { return a->instance < b->instance; });
    return out;
}

unsigned Supervisor::instances(const ProgramDef& def) const {
    if (def.processes_key.empty()) return 1;
    return static_cast<unsigned>(
        std::clamp<int64_t>(config_.integer(def.processes_key), 1, kMaxInstances));
}

bool Supervisor::wanted(const ProgramDef& def) const {
    if (!def.enable_key.empty()) return config_.boolean(def.enable_key);
    return !listeners_of(def).empty();
}

bool Supervisor::wanted(const Child& child) const {
    return wanted(*child.def) && child.instance < instances(*child.def);
}

std::vector<const BoundListener*> Supervisor::listeners_of(const ProgramDef& def) const {
    std::vector<const BoundListener*> out;
    for (const auto& l : listeners_)
        if (std::find(def.listeners.begin(), def.listeners.end(), l.kind) != def.listeners.end())
            out.push_back(&l);
    return out;
}

std::string Supervisor::program_path(const ProgramDef& def) const {
    return config_.str("program_dir") + "/" + std::string(def.name);
}

Status Supervisor::start() {
    auto text = read_file(opts_.config_path);
    if (!text) return Err{text.error()};
    auto cfg = config::Config::parse(*text, opts_.config_path);
    if (!cfg) return fail(cfg.error().to_string());
    return apply_config(std::move(cfg).value(), std::move(text).value(), true);
}

Status Supervisor::apply_config(config::Config cfg, std::string text, bool initial) {
    if (auto s = check_traversable(cfg.str("spool_dir")); !s) return s;
    if (auto s = prepare_runtime_dir(cfg); !s) return s;

    std::map<std::string, UniqueFd> keep;
    for (auto& l : listeners_) keep[listener_key(l.kind, l.endpoint)] = std::move(l.fd);
    auto bound = bind_listeners(cfg, keep);
    if (!bound) {
        // Put the old sockets back: the running configuration stays intact.
        for (auto& l : listeners_) {
            auto it = keep.find(listener_key(l.kind, l.endpoint));
            if (it != keep.end()) l.fd = std::move(it->second);
        }
        return Err{bound.error()};
    }
    auto memfd = make_config_memfd(text);
    if (!memfd) return Err{memfd.error()};

    // From here on the new configuration is in force.
    if (!initial) {
        for (auto& [name, child] : children_) stop_child(child);
    }
    listeners_ = std::move(bound).value();  // sockets left in `keep` close now
    for (const auto& l : listeners_) log::info("listening on ", l.endpoint, " (", l.kind, ")");
    config_ = std::move(cfg);
    config_text_ = std::move(text);
    config_memfd_ = std::move(memfd).value();
    ++generation_;
    log::set_debug(opts_.debug || config_.boolean("log_debug"));

    bool servers_waited = !initial;
    for (const auto& def : kPrograms) {  // in start order
        for (unsigned i = 0; i < instances(def); ++i) {
            Child& child = child_of(def, i);
            child.fast_crashes = 0;
            if (child.pid != 0) continue;  // still stopping; restarted when reaped
            if (!wanted(child)) continue;
            if (access(program_path(def).c_str(), X_OK) != 0) {
                log::warn(child.name, ": not started: ", program_path(def), ": ",
                          std::strerror(errno));
                continue;
            }
            if (def.listeners.size() > 0 && !servers_waited) {
                wait_for_servers();
                servers_waited = true;
            }
            if (auto s = spawn(child); !s)
                log::error(child.name, ": cannot start: ", s.error().message);
        }
    }
    return {};
}

// At the first start, the programs that face clients (smtpd, submitd, the
// login processes) start only once authd and the queue-manager accept
// connections on their sockets, or after a few seconds: otherwise the first
// clients would meet "451 try again later" answers for a moment, which a
// sending MTA tolerates but a user watching a login does not. Later restarts
// of one program are not waited for: the others answer 4xx meanwhile.
void Supervisor::wait_for_servers() {
    struct Server {
        std::string path;
        const ipc::Protocol* protocol;
    };
    std::vector<Server> servers;
    std::string runtime = config_.str("runtime_dir");
    for (const auto& [name, child] : children_) {
        if (child.pid == 0) continue;
        if (name == "authd")
            servers.push_back(
                {ipc::socket_path(runtime, ipc::Channel::Auth), &ipc::auth::kProtocol});
        if (name == "queue-manager")
            servers.push_back(
                {ipc::socket_path(runtime, ipc::Channel::Enqueue), &ipc::queue::kProtocol});
    }
    auto deadline = std::chrono::steady_clock::now() + kServerStartWait;
    for (const Server& server : servers) {
        for (;;) {
            // A whole handshake, so that the server sees a client that said
            // hello and left, not a reset connection.
            if (auto fd = ipc::connect_unix(server.path);
                fd && ipc::handshake(fd->get(), *server.protocol, std::chrono::seconds(2)))
                break;
            if (std::chrono::steady_clock::now() >= deadline) {
                log::warn(server.path,
                          " does not accept connections yet; starting the listeners anyway");
                return;
            }
            usleep(20 * 1000);
        }
    }
}

Status Supervisor::spawn(Child& child) {
    std::string path = program_path(*child.def);
    auto listeners = listeners_of(*child.def);
    std::string names;
    for (const auto* l : listeners) names += (names.empty() ? "" : ":") + l->kind;
    std::string name(child.def->name);

    // Everything the child needs is prepared before fork: after fork only
    // async-signal-safe calls are made.
    std::vector<std::string> env_strings = {
        std::string(mi::kEnvListenFds) + "=" + std::to_string(listeners.size()),
        std::string(mi::kEnvListenFdNames) + "=" + names,
        std::string(mi::kEnvConfigFd) + "=" + std::to_string(mi::kFirstListenFd + listeners.size()),
        std::string(mi::kEnvConfigPath) + "=" + opts_.config_path,
        std::string(mi::kEnvService) + "=" + name,
        std::string(mi::kEnvGeneration) + "=" + std::to_string(generation_),
        std::string(mi::kEnvForeground) + "=" + (opts_.foreground ? "1" : "0"),
        std::string(mi::kEnvDebug) + "=" + (opts_.debug ? "1" : "0"),
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    };
    if (const char* tz = std::getenv("TZ")) env_strings.push_back(std::string("TZ=") + tz);
    // LISTEN_PID is the child's pid, known only after fork: the slot is filled there.
    char listen_pid[32] = "LISTEN_PID=";
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(listen_pid);
    envp.push_back(nullptr);
    std::vector<char*> argv = {name.data(), nullptr};
    std::vector<int> fds;
    for (const auto* l : listeners) fds.push_back(l->fd.get());
    fds.push_back(config_memfd_.get());

    pid_t pid = fork();
    if (pid < 0) return fail_errno("fork");
    if (pid == 0) {
        // Child. Own session: a Ctrl-C on the master's terminal reaches only
        // the master, which then stops the children in order.
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
        // Move the inherited fds out of the way first, then into 3, 4, ...
        int base = 3 + static_cast<int>(fds.size()) + 64;
        for (size_t i = 0; i < fds.size(); ++i) {
            int moved = fcntl(fds[i], F_DUPFD, base);
            if (moved < 0) _exit(126);
            fds[i] = moved;
        }
        for (size_t i = 0; i < fds.size(); ++i) {
            if (dup2(fds[i], mi::kFirstListenFd + static_cast<int>(i)) < 0) _exit(126);
        }
        close_range(static_cast<unsigned>(mi::kFirstListenFd + fds.size()), ~0U, 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0 && devnull != 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        // "LISTEN_PID=" + getpid(), without snprintf.
        char digits[16];
        int n = 0;
        for (pid_t p = getpid(); p > 0 && n < 15; p /= 10)
            digits[n++] = static_cast<char>('0' + p % 10);
        size_t at = std::strlen(listen_pid);
        while (n > 0) listen_pid[at++] = digits[--n];
        listen_pid[at] = '\0';
        execve(path.c_str(), argv.data(), envp.data());
        _exit(127);
    }
    child.pid = pid;
    child.started = Clock::now();
    child.started_wall = std::chrono::system_clock::now();
    log::info(child.name, ": started, pid ", pid);
    return {};
}

void Supervisor::schedule_restart(Child& child) {
    auto lived = Clock::now() - child.started;
    if (lived >= kHealthyUptime) child.fast_crashes = 0;
    ++child.fast_crashes;
    std::chrono::milliseconds delay(0);
    if (child.fast_crashes > 1) {
        delay = kFirstBackoff;
        for (int i = 2; i < child.fast_crashes && delay < kMaxBackoff; ++i) delay *= 2;
        delay = std::min(delay, kMaxBackoff);
    }
    if (delay.count() == 0) {
        ++child.restarts;
        if (auto s = spawn(child); !s)
            log::error(child.name, ": cannot restart: ", s.error().message);
        return;
    }
    log::warn(child.name, ": crashed ", child.fast_crashes, " times in a row; restarting in ",
              delay.count(), " ms");
    child.restart_timer.reset(evtimer_new(base_, on_restart_timer, &child));
    timeval tv{static_cast<time_t>(delay.count() / 1000),
               static_cast<suseconds_t>((delay.count() % 1000) * 1000)};
    evtimer_add(child.restart_timer.get(), &tv);
}

void Supervisor::on_restart_timer(evutil_socket_t, short, void* arg) noexcept {
    auto* child = static_cast<Child*>(arg);
    Supervisor* self = child->owner;
    child->restart_timer.reset();
    if (self->stopping_ || child->pid != 0 || !self->wanted(*child)) return;
    ++child->restarts;
    if (auto s = self->spawn(*child); !s)
        log::error(child->name, ": cannot restart: ", s.error().message);
}

void Supervisor::reap() {
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) break;
        Child* found = nullptr;
        for (auto& [name, c] : children_)
            if (c.pid == pid) found = &c;
        if (!found) {
            if (sessions_) sessions_->reaped(pid, status);
            continue;
        }
        found->pid = 0;
        std::string how = describe_exit(status);
        if (stopping_) {
            log::info(found->name, ": pid ", pid, " stopped (", how, ")");
            continue;
        }
        if (found->stop_requested) {
            found->stop_requested = false;
            log::info(found->name, ": pid ", pid, " stopped for the reload (", how, ")");
            if (wanted(*found)) {
                if (auto s = spawn(*found); !s)
                    log::error(found->name, ": cannot start: ", s.error().message);
            }
            continue;
        }
        log::warn(found->name, ": pid ", pid, " died (", how, "); restarting");
        if (!stopping_ && wanted(*found)) schedule_restart(*found);
    }
    maybe_finish_stop();
}

void Supervisor::stop_child(Child& child) {
    child.restart_timer.reset();
    if (child.pid > 0) {
        child.stop_requested = true;
        kill(child.pid, SIGTERM);
    }
}

void Supervisor::stop() {
    if (stopping_) return;
    stopping_ = true;
    sd_notify("STOPPING=1");
    log::info("stopping: asking every program to stop");
    for (auto& [name, child] : children_) stop_child(child);
    if (sessions_) sessions_->signal_all(SIGTERM);
    kill_timer_.reset(evtimer_new(base_, on_kill_timer, this));
    timeval tv{mi::kStopGraceSeconds, 0};
    evtimer_add(kill_timer_.get(), &tv);
    maybe_finish_stop();
}

void Supervisor::on_kill_timer(evutil_socket_t, short, void* arg) noexcept {
    auto* self = static_cast<Supervisor*>(arg);
    for (auto& [name, child] : self->children_) {
        if (child.pid > 0) {
            log::warn(name, ": pid ", child.pid, " did not stop in time; killing it");
            kill(child.pid, SIGKILL);
        }
    }
    if (self->sessions_ && self->sessions_->running() > 0) {
        log::warn(self->sessions_->running(), " session(s) did not stop in time; killing them");
        self->sessions_->signal_all(SIGKILL);
    }
}

void Supervisor::maybe_finish_stop() {
    if (!stopping_) return;
    for (const auto& [name, child] : children_)
        if (child.pid > 0) return;
    if (sessions_ && sessions_->running() > 0) return;
    log::info("stopped");
    event_base_loopexit(base_, nullptr);
}

std::string Supervisor::reload() {
    log::info("reloading ", opts_.config_path);
    auto text = read_file(opts_.config_path);
    if (!text) {
        log::error("reload refused, keeping the running configuration: ", text.error().message);
        return text.error().message;
    }
    auto cfg = config::Config::parse(*text, opts_.config_path);
    if (!cfg) {
        std::string e = cfg.error().to_string();
        log::error("reload refused, keeping the running configuration: ", e);
        return e;
    }
    if (*text == config_text_) {
        log::info("configuration unchanged");
        return "";
    }
    if (auto s = apply_config(std::move(cfg).value(), std::move(text).value(), false); !s) {
        log::error("reload failed, keeping the running configuration: ", s.error().message);
        return s.error().message;
    }
    log::info("configuration reloaded (generation ", generation_, ")");
    return "";
}

std::string Supervisor::status_text() const {
    std::ostringstream out;
    out << "generation " << generation_ << (stopping_ ? " (stopping)" : "") << "\n";
    char line[256];
    std::snprintf(line, sizeof line, "%-16s %8s %8s %10s %8s\n", "PROGRAM", "PID", "UID", "UPTIME",
                  "RESTARTS");
    out << line;
    auto now = Clock::now();
    for (const auto& def : kPrograms) {
        for (const Child* child : children_of(def)) {
            const Child& c = *child;
            if (c.instance > 0 && c.pid == 0 && !wanted(c)) continue;  // no longer configured
            if (c.pid > 0) {
                auto up = std::chrono::duration_cast<std::chrono::seconds>(now - c.started).count();
                std::snprintf(line, sizeof line, "%-16s %8d %8s %9llds %8d\n", c.name.c_str(),
                              static_cast<int>(c.pid), proc_uid(c.pid).c_str(),
                              static_cast<long long>(up), c.restarts);
            } else {
                const char* why = !wanted(c)        ? "disabled"
                                  : c.restart_timer ? "restarting"
                                                    : "not running";
                std::snprintf(line, sizeof line, "%-16s %8s %8s %10s %8d\n", c.name.c_str(), "-",
                              "-", why, c.restarts);
            }
            out << line;
        }
    }
    return out.str();
}

std::string Supervisor::status_json() const {
    std::ostringstream out;
    out << "{\"generation\":" << generation_ << ",\"stopping\":" << (stopping_ ? "true" : "false")
        << ",\"programs\":[";
    bool first = true;
    auto now = Clock::now();
    for (const auto& def : kPrograms) {
        for (const Child* child : children_of(def)) {
            const Child& c = *child;
            if (c.instance > 0 && c.pid == 0 && !wanted(c)) continue;  // no longer configured
            if (!first) out << ",";
            first = false;
            out << "{\"name\":\"" << json_escape(c.name)
                << "\",\"enabled\":" << (wanted(c) ? "true" : "false");
            if (c.pid > 0) {
                auto up = std::chrono::duration_cast<std::chrono::seconds>(now - c.started).count();
                out << ",\"pid\":" << c.pid << ",\"uid\":" << proc_uid(c.pid)
                    << ",\"uptime\":" << up;
            } else {
                out << ",\"pid\":null";
            }
            out << ",\"restarts\":" << c.restarts << "}";
        }
    }
    out << "]}\n";
    return out.str();
}

}  // namespace pbx::master
