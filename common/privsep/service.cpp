#include "common/privsep/service.hpp"

#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"
#include "common/master_interface.hpp"

namespace pbx {
namespace mi = master_interface;

namespace {

// Upper bound on the config text a child accepts from the master.
constexpr size_t kMaxConfigSize = 4 * 1024 * 1024;

const char* env(std::string_view name) {
    return std::getenv(std::string(name).c_str());
}

bool parse_int(const char* s, int& out) {
    if (!s || !*s) return false;
    auto [p, ec] = std::from_chars(s, s + std::strlen(s), out);
    return ec == std::errc() && *p == '\0';
}

Result<std::string> read_all(int fd) {
    std::string text;
    char buf[8192];
    // pread: the memfd's offset is shared by every child the master started.
    off_t offset = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("read config fd");
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        offset += n;
        if (text.size() > kMaxConfigSize) return fail("config from the master is too large");
    }
    return text;
}

Result<config::Config> load_config(const std::string& path_flag) {
    int fd = -1;
    if (parse_int(env(mi::kEnvConfigFd), fd)) {
        UniqueFd owned(fd);
        auto text = read_all(fd);
        if (!text) return Err{text.error()};
        const char* path = env(mi::kEnvConfigPath);
        auto cfg = config::Config::parse(*text, path ? path : "(from master)");
        if (!cfg) return fail(cfg.error().to_string());
        return std::move(cfg).value();
    }
    std::string path = path_flag.empty() ? std::string(config::kDefaultPath) : path_flag;
    auto cfg = config::Config::load(path);
    if (!cfg) return fail(cfg.error().to_string());
    return std::move(cfg).value();
}

Result<std::vector<InheritedListener>> take_listeners() {
    std::vector<InheritedListener> out;
    int count = 0;
    if (!parse_int(env(mi::kEnvListenFds), count)) return out;
    int pid = 0;
    if (!parse_int(env(mi::kEnvListenPid), pid) || pid != getpid())
        return fail("LISTEN_FDS without a matching LISTEN_PID");
    if (count < 0 || count > 64) return fail("LISTEN_FDS out of range");
    std::vector<std::string> names;
    if (const char* n = env(mi::kEnvListenFdNames)) {
        std::string_view all(n);
        size_t start = 0;
        while (start <= all.size()) {
            size_t colon = all.find(':', start);
            if (colon == std::string_view::npos) colon = all.size();
            names.emplace_back(all.substr(start, colon - start));
            start = colon + 1;
        }
    }
    for (int i = 0; i < count; ++i) {
        InheritedListener l;
        l.fd = UniqueFd(mi::kFirstListenFd + i);
        l.name = i < static_cast<int>(names.size()) ? names[static_cast<size_t>(i)] : "unknown";
        for (const auto& kind : mi::kListenerKinds)
            if (kind.name == l.name) l.implicit_tls = kind.implicit_tls;
        out.push_back(std::move(l));
    }
    // The variables describe this process only; children of ours must not see them.
    unsetenv(std::string(mi::kEnvListenFds).c_str());
    unsetenv(std::string(mi::kEnvListenPid).c_str());
    unsetenv(std::string(mi::kEnvListenFdNames).c_str());
    return out;
}

struct StopState {
    ServiceContext* ctx;
    const ServiceSpec* spec;
};

void on_signal(evutil_socket_t, short, void* arg) noexcept {
    auto* st = static_cast<StopState*>(arg);
    if (st->ctx->stopping) {
        // A second signal: stop now.
        event_base_loopbreak(st->ctx->base.get());
        return;
    }
    st->ctx->stopping = true;
    log::info("stopping");
    if (st->spec->on_stop)
        st->spec->on_stop(*st->ctx);
    else
        event_base_loopexit(st->ctx->base.get(), nullptr);
}

void usage(const char* name) {
    std::fprintf(stderr, "usage: %s [-c CONFIG] [-f] [-d]\n", name);
}

}  // namespace

std::string ServiceContext::runtime_path(std::string_view relative) const {
    if (chrooted_to_runtime) return std::string(relative);
    return config.str("runtime_dir") + "/" + std::string(relative);
}

namespace {

// The rest of run_service() for a session program (spec.session).
int run_session(const ServiceSpec& spec, ServiceContext& ctx) {
    if (!ctx.listeners.empty()) {
        log::error("a session program inherits no listeners");
        return 1;
    }
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru == 0 || eu == 0 ||
        su == 0 || rg == 0 || eg == 0 || sg == 0) {
        log::error("refusing to run a mail session as uid or gid 0");
        return 1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        log::error("PR_SET_NO_NEW_PRIVS failed");
        return 1;
    }
    ctx.drop.uid = eu;
    ctx.drop.gid = eg;
    signal(SIGPIPE, SIG_IGN);
    if (spec.pre_drop) {
        if (auto s = spec.pre_drop(ctx); !s) {
            log::error("setup failed: ", s.error().message);
            return 1;
        }
    }
    ctx.base.reset(event_base_new());
    if (!ctx.base) {
        log::error("event_base_new failed");
        return 1;
    }
    StopState stop{&ctx, &spec};
    EventPtr sigterm(evsignal_new(ctx.base.get(), SIGTERM, on_signal, &stop));
    EventPtr sigint(evsignal_new(ctx.base.get(), SIGINT, on_signal, &stop));
    if (!sigterm || !sigint || event_add(sigterm.get(), nullptr) != 0 ||
        event_add(sigint.get(), nullptr) != 0) {
        log::error("cannot install signal handlers");
        return 1;
    }
    signal(SIGHUP, SIG_IGN);
    if (spec.post_drop) {
        if (auto s = spec.post_drop(ctx); !s) {
            log::error("session setup failed: ", s.error().message);
            return 1;
        }
    }
    if (event_base_dispatch(ctx.base.get()) < 0) {
        log::error("event loop failed");
        return 1;
    }
    return 0;
}

}  // namespace

int run_service(const ServiceSpec& spec, int argc, char** argv) {
    std::string config_path;
    bool foreground = env(mi::kEnvForeground) && std::string_view(env(mi::kEnvForeground)) == "1";
    bool debug = env(mi::kEnvDebug) && std::string_view(env(mi::kEnvDebug)) == "1";
    int opt;
    while ((opt = getopt(argc, argv, "c:fd")) != -1) {
        switch (opt) {
            case 'c':
                config_path = optarg;
                break;
            case 'f':
                foreground = true;
                break;
            case 'd':
                debug = true;
                break;
            default:
                usage(spec.name);
                return 2;
        }
    }
    log::init(spec.name, foreground);

    ServiceContext ctx;
    ctx.name = spec.name;
    ctx.foreground = foreground;
    auto cfg = load_config(config_path);
    if (!cfg) {
        log::error(cfg.error().message);
        return 1;
    }
    ctx.config = std::move(cfg).value();
    log::set_debug(debug || ctx.config.boolean("log_debug"));

    auto listeners = take_listeners();
    if (!listeners) {
        log::error(listeners.error().message);
        return 1;
    }
    ctx.listeners = std::move(listeners).value();

    if (spec.session) return run_session(spec, ctx);
    if (geteuid() != 0) {
        log::error("must be started as root (by pillarbox-master); it drops privileges itself");
        return 1;
    }
    privsep::DropSpec want;
    want.user = std::string(spec.user);
    if (spec.user.empty() && spec.allow_root) {
        want.uid = 0;
        want.gid = 0;
    }
    want.keep = spec.keep_caps;
    want.no_fork_not_dumpable = spec.login_process;
    want.allow_root = spec.allow_root;
    for (std::string_view g : spec.supplementary_groups) {
        std::string name(g);
        if (struct group* gr = getgrnam(name.c_str()))
            want.supplementary_groups.push_back(gr->gr_gid);
        else
            log::warn("group '", name, "' does not exist; not joining it");
    }
    if (spec.chroot == Chroot::RuntimeDir) want.chroot_dir = ctx.config.str("runtime_dir");
    auto resolved = privsep::resolve(want);  // getpwnam before any chroot
    if (!resolved) {
        log::error("cannot resolve the run-as user: ", resolved.error().message);
        return 1;
    }
    ctx.drop = *resolved;

    signal(SIGPIPE, SIG_IGN);
    if (spec.pre_drop) {
        if (auto s = spec.pre_drop(ctx); !s) {
            log::error("setup failed: ", s.error().message);
            return 1;
        }
    }
    if (auto s = privsep::drop(ctx.drop); !s) {
        log::error("privilege drop failed: ", s.error().message);
        return 1;
    }
    ctx.chrooted_to_runtime = spec.chroot == Chroot::RuntimeDir;

    ctx.base.reset(event_base_new());
    if (!ctx.base) {
        log::error("event_base_new failed");
        return 1;
    }
    StopState stop{&ctx, &spec};
    EventPtr sigterm(evsignal_new(ctx.base.get(), SIGTERM, on_signal, &stop));
    EventPtr sigint(evsignal_new(ctx.base.get(), SIGINT, on_signal, &stop));
    if (!sigterm || !sigint || event_add(sigterm.get(), nullptr) != 0 ||
        event_add(sigint.get(), nullptr) != 0) {
        log::error("cannot install signal handlers");
        return 1;
    }
    signal(SIGHUP, SIG_IGN);  // the master restarts children on reload

    if (spec.post_drop) {
        if (auto s = spec.post_drop(ctx); !s) {
            log::error("setup after the privilege drop failed: ", s.error().message);
            return 1;
        }
    }
    log::debug("running as uid ", getuid());
    int rc = event_base_dispatch(ctx.base.get());
    if (rc < 0) {
        log::error("event loop failed");
        return 1;
    }
    return 0;
}

}  // namespace pbx
