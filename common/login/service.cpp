#include "common/login/service.hpp"

#include <memory>

namespace pbx::login {

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
