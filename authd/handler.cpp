#include "authd/handler.hpp"

#include <algorithm>

#include "common/auth/expand.hpp"
#include "common/ipc/auth_msgs.hpp"
#include "common/log.hpp"

namespace pbx::authd {
namespace msgs = ipc::auth;

namespace {

// Values a client chose are escaped and cut before they reach the log.
constexpr size_t kLogValue = 64;

std::string esc(std::string_view v) {
    return ipc::escape_value(v, kLogValue);
}

ipc::Message verify_result(uint64_t id, auth::VerifyStatus status, std::string_view user) {
    auto r = ipc::Message::named(msgs::kProtocol, "verify_result");
    r.set_u64("id", id).set_str("status", auth::to_string(status));
    if (status == auth::VerifyStatus::Ok) r.set_str("user", user);
    return r;
}

bool known_service(std::string_view s) {
    return s == "smtp" || s == "submission" || s == "pop3" || s == "imap";
}

}  // namespace

Handler::Handler(auth::ResolverSettings settings, Database& db, const auth::SystemUsers& system,
                 auth::PasswordChecker checker, auth::DelayPolicy delays)
    : settings_(std::move(settings)),
      db_(db),
      system_(system),
      checker_(std::move(checker)),
      throttle_(delays) {
    // authd checked the entries before it got here; a bad one is skipped.
    if (auto map = auth::parse_sender_map(settings_.sender_map); map) sender_map_ = *map;
}

std::optional<Reply> Handler::handle(const ipc::Message& request, const ipc::PeerInfo& peer,
                                     auth::Clock::time_point now) {
    std::string_view name = request.name();
    if (name == "domain") return domain(request);
    if (name == "rcpt") return rcpt(request, now);
    if (name == "verify") return verify(request, peer, now);
    if (name == "resolve") return resolve(request, peer, now);
    if (name == "login") return login(request, peer, now);
    if (name == "redeem") return redeem(request, peer, now);
    if (name == "relay_check") return relay_check(request, peer, now);
    if (name == "owns") return owns(request, peer, now);
    return std::nullopt;
}

std::optional<ipc::Message> Handler::tempfail_for(const ipc::Message& request) {
    uint64_t id = request.get_u64("id").value_or(0);
    if (request.name() == "rcpt") {
        auto r = ipc::Message::named(msgs::kProtocol, "rcpt_result");
        r.set_u64("id", id).set_str("status", "tempfail");
        return r;
    }
    if (request.name() == "verify") return verify_result(id, auth::VerifyStatus::TempFail, "");
    if (request.name() == "resolve") {
        auto r = ipc::Message::named(msgs::kProtocol, "resolve_result");
        r.set_u64("id", id).set_str("status", "tempfail");
        return r;
    }
    if (request.name() == "login" || request.name() == "redeem") {
        auto r = ipc::Message::named(msgs::kProtocol, std::string(request.name()) + "_result");
        r.set_u64("id", id).set_str("status", request.name() == "login" ? "tempfail" : "fail");
        return r;
    }
    if (request.name() == "relay_check") {
        auto r = ipc::Message::named(msgs::kProtocol, "relay_check_result");
        r.set_u64("id", id).set_u64("allowed", 0);
        return r;
    }
    if (request.name() == "owns") {
        auto r = ipc::Message::named(msgs::kProtocol, "owns_result");
        r.set_u64("id", id).set_str("status", "tempfail");
        return r;
    }
    return std::nullopt;
}

Reply Handler::domain(const ipc::Message& m) {
    auto r = ipc::Message::named(msgs::kProtocol, "domain_result");
    r.set_u64("id", *m.get_u64("id"))
        .set_u64("local", settings_.is_local_domain(*m.get_str("domain")) ? 1 : 0);
    return Reply{std::move(r)};
}

Reply Handler::rcpt(const ipc::Message& m, auth::Clock::time_point now) {
    db_.refresh(now);
    std::string_view address = *m.get_str("address");
    auto res = auth::resolve_recipient(address, settings_, db_.users(), db_.aliases(), system_);
    auto r = ipc::Message::named(msgs::kProtocol, "rcpt_result");
    r.set_u64("id", *m.get_u64("id"));
    switch (res.status) {
        case auth::RcptStatus::Local:
        case auth::RcptStatus::Unknown:
            // A database that never loaded cannot tell "unknown" from "not yet".
            if (!db_.ready() && res.kind != auth::LocalKind::Postmaster) {
                r.set_str("status", "tempfail");
                break;
            }
            if (res.status == auth::RcptStatus::Local) {
                r.set_str("status", "found").set_str("canonical", res.canonical());
            } else {
                r.set_str("status", "unknown").set_str("canonical", res.canonical());
            }
            break;
        case auth::RcptStatus::Remote:
            r.set_str("status", "remote");
            break;
        case auth::RcptStatus::Invalid:
            log::debug("rcpt ", esc(address), ": ", res.reason);
            r.set_str("status", "unknown");
            break;
    }
    return Reply{std::move(r)};
}

Reply Handler::verify(const ipc::Message& m, const ipc::PeerInfo& peer,
                      auth::Clock::time_point now) {
    uint64_t id = *m.get_u64("id");
    std::string_view user = *m.get_str("user");
    std::string_view password = *m.get_bytes("password");
    std::string_view client = m.get_str("client_address").value_or("");
    std::string_view service = *m.get_str("service");
    // Without a client address, failures still count per calling program.
    std::string client_key =
        client.empty() ? "peer:" + std::string(ipc::to_string(peer.program)) : std::string(client);

    if (!known_service(service)) {
        log::warn("verify from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  ") with unknown service '", esc(service), "'");
        return Reply{verify_result(id, auth::VerifyStatus::TempFail, "")};
    }
    db_.refresh(now);
    auth::VerifyOutcome out;
    if (!db_.ready()) {
        out = {auth::VerifyStatus::TempFail, auth::ascii_lower(user), "user database not loaded"};
    } else {
        out = checker_.verify(user, password, settings_, db_.users(), system_);
    }
    auth::Attempt attempt = out.status == auth::VerifyStatus::Ok     ? auth::Attempt::Success
                            : out.status == auth::VerifyStatus::Fail ? auth::Attempt::Failure
                                                                     : auth::Attempt::Other;
    auto delay = throttle_.on_attempt(client_key, out.user.empty() ? user : out.user, attempt, now);
    switch (out.status) {
        case auth::VerifyStatus::Ok:
            log::info("verify ok: user=", esc(out.user), " client=", esc(client),
                      " service=", service);
            break;
        case auth::VerifyStatus::Fail:
            log::info("verify failed: user=", esc(user), " client=", esc(client),
                      " service=", service, " (", out.reason, "; answer in ", delay.count(),
                      " ms)");
            break;
        case auth::VerifyStatus::TempFail:
            log::warn("verify tempfail: user=", esc(user), " client=", esc(client),
                      " service=", service, " (", out.reason, ")");
            break;
    }
    return Reply{verify_result(id, out.status, out.user), delay};
}

}  // namespace pbx::authd

namespace pbx::authd {

Reply Handler::resolve(const ipc::Message& m, const ipc::PeerInfo& peer,
                       auth::Clock::time_point now) {
    auto r = ipc::Message::named(msgs::kProtocol, "resolve_result");
    r.set_u64("id", *m.get_u64("id"));
    // Only local-delivery (root) learns where mailboxes are and whose they are.
    if (peer.program != ipc::Program::Root) {
        log::warn("resolve from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  ") refused: only local-delivery may ask");
        r.set_str("status", "tempfail").set_str("reason", "not allowed");
        return Reply{std::move(r)};
    }
    db_.refresh(now);
    std::string_view address = *m.get_str("address");
    if (!db_.ready()) {
        r.set_str("status", "tempfail").set_str("reason", "user database not loaded");
        return Reply{std::move(r)};
    }
    static const auth::PasswdSystemUsers passwd;  // default_privs, whatever system_users says
    auth::ExpandContext ctx{settings_,     db_.users(),
                            db_.aliases(), db_.aliases_stamp(),
                            system_,       settings_.default_privs,
                            &passwd,       auth::read_text_file};
    auth::Expansion x = auth::expand_recipient(address, ctx);
    r.set_str("status", auth::to_string(x.status));
    if (!x.reason.empty()) r.set_str("reason", x.reason);
    for (const auth::DeliveryTarget& t : x.targets) {
        r.set_str("kind", auth::to_string(t.kind))
            .set_str("target", t.target)
            .set_str("user", t.user)
            .set_u64("uid", t.uid)
            .set_u64("gid", t.gid)
            .set_str("home", t.home)
            .set_str("mailbox", t.mailbox)
            .set_str("format", t.format == auth::MailboxFormat::Mbox ? "mbox" : "maildir")
            .set_u64("dotforward", t.dotforward ? 1 : 0);
    }
    if (x.status == auth::ExpandStatus::Refused)
        log::warn("resolve ", esc(address), ": refused: ", x.reason);
    log::debug("resolve ", esc(address), ": ", auth::to_string(x.status), " ", x.reason, " (",
               x.targets.size(), " targets)");
    return Reply{std::move(r)};
}

}  // namespace pbx::authd

namespace pbx::authd {

Reply Handler::login(const ipc::Message& m, const ipc::PeerInfo& peer,
                     auth::Clock::time_point now) {
    const uint64_t id = *m.get_u64("id");
    const std::string_view user = *m.get_str("user");
    const std::string_view password = *m.get_bytes("password");
    const std::string_view client = m.get_str("client_address").value_or("");
    const std::string_view service = *m.get_str("service");
    auto result = [id](std::string_view status) {
        auto r = ipc::Message::named(msgs::kProtocol, "login_result");
        r.set_u64("id", id).set_str("status", status);
        return r;
    };
    if (peer.program != ipc::Program::Login && peer.program != ipc::Program::Root) {
        log::warn("login from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  ") refused: only the login processes may ask");
        return Reply{result("tempfail")};
    }
    if (service != "pop3" && service != "imap") {
        log::warn("login with unknown service '", esc(service), "'");
        return Reply{result("tempfail")};
    }
    std::string client_key =
        client.empty() ? "peer:" + std::string(ipc::to_string(peer.program)) : std::string(client);
    db_.refresh(now);
    auth::VerifyOutcome out;
    if (!db_.ready())
        out = {auth::VerifyStatus::TempFail, auth::ascii_lower(user), "user database not loaded"};
    else
        out = checker_.verify(user, password, settings_, db_.users(), system_);
    std::optional<UserMailbox> box;
    if (out.status == auth::VerifyStatus::Ok) {
        box = find_user_mailbox(out.user, settings_, db_, system_);
        if (!box) {
            out = {auth::VerifyStatus::Fail, out.user, "no mailbox for this user"};
        } else if (box->uid == 0 || box->gid == 0) {
            out = {auth::VerifyStatus::Fail, out.user, "refusing a session as uid/gid 0"};
        }
    }
    const auth::Attempt attempt = out.status == auth::VerifyStatus::Ok     ? auth::Attempt::Success
                                  : out.status == auth::VerifyStatus::Fail ? auth::Attempt::Failure
                                                                           : auth::Attempt::Other;
    const auto delay =
        throttle_.on_attempt(client_key, out.user.empty() ? user : out.user, attempt, now);
    if (out.status == auth::VerifyStatus::Fail) {
        log::info("login failed: user=", esc(user), " client=", esc(client), " service=", service,
                  " (", out.reason, "; answer in ", delay.count(), " ms)");
        return Reply{result("fail"), delay};
    }
    if (out.status == auth::VerifyStatus::TempFail) {
        log::warn("login tempfail: user=", esc(user), " client=", esc(client), " service=", service,
                  " (", out.reason, ")");
        return Reply{result("tempfail"), delay};
    }
    auto ticket = tickets_.issue(*box, std::string(service), std::string(client), now);
    if (!ticket) {
        log::warn("login tempfail: user=", esc(out.user), ": cannot issue a ticket (",
                  tickets_.size(), " outstanding)");
        return Reply{result("tempfail"), delay};
    }
    if (pop_before_smtp_.count() > 0 && !client.empty()) {
        recent_logins_.record(client, now + pop_before_smtp_);
        log::info("pop-before-smtp: ", esc(client), " may relay for ", pop_before_smtp_.count(),
                  " minutes (", service, " login of ", esc(out.user), ")");
    }
    log::info("login ok: user=", esc(out.user), " client=", esc(client), " service=", service,
              " (ticket issued)");
    auto r = result("ok");
    r.set_str("user", out.user).set_str("ticket", *ticket);
    return Reply{std::move(r), delay};
}

Reply Handler::redeem(const ipc::Message& m, const ipc::PeerInfo& peer,
                      auth::Clock::time_point now) {
    auto r = ipc::Message::named(msgs::kProtocol, "redeem_result");
    r.set_u64("id", *m.get_u64("id"));
    if (peer.program != ipc::Program::Root) {
        log::warn("redeem from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  ") refused: only the master may redeem tickets");
        r.set_str("status", "fail");
        return Reply{std::move(r)};
    }
    auto t = tickets_.redeem(*m.get_str("ticket"), now);
    if (!t) {
        log::warn("redeem: unknown, used or expired ticket");
        r.set_str("status", "fail");
        return Reply{std::move(r)};
    }
    log::debug("redeem: ticket of ", t->box.user, " for ", t->service);
    r.set_str("status", "ok")
        .set_str("user", t->box.user)
        .set_u64("uid", t->box.uid)
        .set_u64("gid", t->box.gid)
        .set_str("home", t->box.home)
        .set_str("mailbox", t->box.mailbox)
        .set_str("format", t->box.format == auth::MailboxFormat::Mbox ? "mbox" : "maildir")
        .set_str("service", t->service)
        .set_str("client_address", t->client_address);
    return Reply{std::move(r)};
}

Reply Handler::relay_check(const ipc::Message& m, const ipc::PeerInfo& peer,
                           auth::Clock::time_point now) {
    auto r = ipc::Message::named(msgs::kProtocol, "relay_check_result");
    r.set_u64("id", *m.get_u64("id"));
    const std::string_view client = *m.get_str("client_address");
    std::optional<auth::Clock::duration> left;
    if (pop_before_smtp_.count() > 0 &&
        (peer.program == ipc::Program::Smtpd || peer.program == ipc::Program::Submitd ||
         peer.program == ipc::Program::Root))
        left = recent_logins_.remaining(client, now);
    r.set_u64("allowed", left ? 1 : 0);
    if (left)
        r.set_u64("minutes_left",
                  static_cast<uint64_t>(std::chrono::ceil<std::chrono::minutes>(*left).count()));
    log::debug("relay_check ", esc(client), ": ", left ? "allowed" : "no recent login");
    return Reply{std::move(r)};
}

Reply Handler::owns(const ipc::Message& m, const ipc::PeerInfo& peer, auth::Clock::time_point now) {
    auto r = ipc::Message::named(msgs::kProtocol, "owns_result");
    r.set_u64("id", *m.get_u64("id"));
    // Only submitd (and root, for tests and tools) learns who owns what.
    if (peer.program != ipc::Program::Submitd && peer.program != ipc::Program::Root) {
        log::warn("owns from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  ") refused: only submitd may ask");
        r.set_str("status", "tempfail");
        return Reply{std::move(r)};
    }
    db_.refresh(now);
    if (!db_.ready()) {
        r.set_str("status", "tempfail");
        return Reply{std::move(r)};
    }
    std::string_view user = *m.get_str("user");
    std::string_view address = *m.get_str("address");
    const bool yes = auth::owns_sender(user, address, sender_map_, settings_, db_.users(),
                                       db_.aliases(), system_);
    log::debug("owns ", esc(user), " ", esc(address), ": ", yes ? "yes" : "no");
    r.set_str("status", yes ? "yes" : "no");
    return Reply{std::move(r)};
}

}  // namespace pbx::authd
