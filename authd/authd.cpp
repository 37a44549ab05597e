#include "authd/authd.hpp"

#include "common/auth/senders.hpp"
#include "common/log.hpp"

namespace pbx::authd {

Status Authd::pre_drop(ServiceContext&) {
    auto peers = ipc::PeerTable::from_system();
    if (!peers) return Err{peers.error()};
    peers_.emplace(std::move(peers).value());
    return {};
}

Status Authd::post_drop(ServiceContext& ctx) {
    const config::Config& cfg = ctx.config;
    auto settings = auth::ResolverSettings::from_config(cfg);
    if (auto map = auth::parse_sender_map(settings.sender_map); !map)
        return fail("submission_sender_map: " + map.error());
    if (settings.system_users)
        system_ = std::make_unique<auth::PasswdSystemUsers>();
    else
        system_ = std::make_unique<auth::NoSystemUsers>();

    db_ = std::make_unique<Database>(cfg.str("users_file"), cfg.str("aliases_file"));
    db_->refresh(auth::Clock::now());

    auto dummy = auth::PasswordChecker::make_dummy_hash();
    if (!dummy) return Err{dummy.error()};
    handler_ = std::make_unique<Handler>(settings, *db_, *system_,
                                         auth::PasswordChecker(std::move(dummy).value()));
    handler_->set_pop_before_smtp(std::chrono::minutes(cfg.integer("pop_before_smtp")));
    server_ = std::make_unique<Server>(ctx.base.get(), *handler_);
    return server_->listen(ctx.runtime_path(ipc::kAuthSocket), std::move(*peers_));
}

}  // namespace pbx::authd
