#include "common/login/service.hpp"

#include <sys/resource.h>

#include <memory>

#include "common/log.hpp"

namespace pbx::login {

namespace {

// Two descriptors per connection (the client, the session's socket) and a
// few of its own: systemd's soft limit of 1,024 would end at ~500 sessions.
// Raised as root, before the drop (the hard limit too when it is lower).
void raise_fd_limit(size_t max_connections) {
    if (max_connections == 0) return;
    rlim_t want = static_cast<rlim_t>(2 * max_connections + 64);
    struct rlimit rl {};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
    struct rlimit up {
        want, rl.rlim_max < want ? want : rl.rlim_max
    };
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) return;
    up = {rl.rlim_max, rl.rlim_max};
    (void)setrlimit(RLIMIT_NOFILE, &up);
    log::warn("open files limited to ", static_cast<unsigned long long>(up.rlim_cur),
              ", below the ", static_cast<unsigned long long>(want), " that ", max_connections,
              " connections need");
}

}  // namespace

int run_login_service(const LoginSpec& spec, int argc, char** argv) {
    std::unique_ptr<LoginServer> server;
    ServiceSpec s{
        .name = spec.name,
        .user = "pbx-login",
        .chroot = Chroot::RuntimeDir,
        .login_process = true,
        .pre_drop = [&](ServiceContext& ctx) -> Status {
            auto settings = LoginSettings::from_config(ctx.config, spec.service, spec.prefix);
            if (!settings) return Err{settings.error()};
            settings->reply_ahead =
                spec.reply_ahead &&
                ctx.config.boolean(std::string(spec.prefix) + "_reply_ahead");
            raise_fd_limit(settings->limits.max_total);
            auto srv = LoginServer::prepare(ctx, std::move(settings).value(), spec.make_engine,
                                            spec.listeners, spec.refusal);
            if (!srv) return Err{srv.error()};
            server = std::move(srv).value();
            return {};
        },
        .post_drop = [&](ServiceContext& ctx) { return server->start(ctx); },
        .on_stop = [&](ServiceContext&) { server->stop(); },
    };
    return run_service(s, argc, argv);
}

}  // namespace pbx::login
