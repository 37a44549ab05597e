#include "authd/handler.hpp"

#include <algorithm>

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

// A final mailbox of `resolve`.
struct Mailbox {
    std::string user;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
    std::string mailbox;
    auth::MailboxFormat format = auth::MailboxFormat::Maildir;
};

// Expands one recipient to its final mailboxes (aliases.hpp REUSE: the order
// and loop detection are ours). The first problem ends the expansion: a
// recipient is delivered completely or not at all.
class Expander {
  public:
    Expander(const auth::ResolverSettings& settings, const authd::Database& db,
             const auth::SystemUsers& system, const ExpandLimits& limits)
        : settings_(settings), db_(db), system_(system), limits_(limits) {}

    std::string status = "found";
    std::string reason;
    std::vector<Mailbox> boxes;

    void address(std::string_view addr, int depth) {
        if (!ok()) return;
        auto res = auth::resolve_recipient(addr, settings_, db_.users(), db_.aliases(), system_);
        switch (res.status) {
            case auth::RcptStatus::Remote:
                return set("unsupported", "forwarding to the remote address " + esc(addr) +
                                              " is not supported yet");
            case auth::RcptStatus::Invalid:
                return set("unknown", "invalid address " + esc(addr) + ": " + res.reason);
            case auth::RcptStatus::Unknown:
                return set("unknown", "no such user: " + esc(addr));
            case auth::RcptStatus::Local:
                break;
        }
        switch (res.kind) {
            case auth::LocalKind::Alias:
                return alias(res.name, depth);
            case auth::LocalKind::User:
            case auth::LocalKind::SystemUser:
                return user(res.name);
            case auth::LocalKind::Postmaster:
                return set("unsupported", "postmaster has no alias and no user");
        }
    }

  private:
    bool ok() const { return status == "found"; }
    void set(std::string s, std::string r) {
        if (!ok()) return;
        status = std::move(s);
        reason = std::move(r);
    }

    void alias(const std::string& name, int depth) {
        if (depth >= limits_.max_depth)
            return set("loop", "aliases nested deeper than " + std::to_string(limits_.max_depth) +
                                   " at " + name);
        if (std::find(stack_.begin(), stack_.end(), name) != stack_.end())
            return set("loop", "alias loop through " + name);
        const auth::AliasEntry* e = db_.aliases().find(name);
        if (!e) return set("unknown", "no such alias: " + name);
        stack_.push_back(name);
        for (const auth::AliasTarget& t : e->targets) {
            if (!ok()) break;
            switch (t.kind) {
                case auth::AliasTargetKind::Local:
                    if (t.verbatim)
                        user(t.value);
                    else
                        address(t.value, depth + 1);
                    break;
                case auth::AliasTargetKind::Address:
                    address(t.value, depth + 1);
                    break;
                case auth::AliasTargetKind::Include:
                case auth::AliasTargetKind::Command:
                case auth::AliasTargetKind::File:
                    set("unsupported", "alias " + name + ": " +
                                           std::string(auth::to_string(t.kind)) +
                                           " targets are not supported yet");
                    break;
            }
        }
        stack_.pop_back();
    }

    // A user by name, without alias expansion: the users file, then (with
    // system_users) a regular system account, whose mailbox is /var/mail/NAME.
    void user(const std::string& name) {
        Mailbox b;
        if (const auth::VirtualUser* u = db_.users().find(name)) {
            b = Mailbox{u->name, u->uid, u->gid, u->home, u->mailbox, u->format};
        } else if (auto a = settings_.system_users ? system_.account(name) : std::nullopt;
                   a && auth::is_regular_account(*a)) {
            b = Mailbox{a->name,
                        a->uid,
                        a->gid,
                        a->home,
                        "/var/mail/" + a->name,
                        auth::MailboxFormat::Mbox};
        } else {
            return set("unknown", "no such user: " + esc(name));
        }
        if (b.uid == 0 || b.gid == 0) return set("unsupported", "refusing uid/gid 0 for " + b.user);
        for (const Mailbox& have : boxes)
            if (have.mailbox == b.mailbox) return;  // listed twice: one copy
        if (boxes.size() >= limits_.max_mailboxes)
            return set("unsupported",
                       "more than " + std::to_string(limits_.max_mailboxes) + " mailboxes");
        boxes.push_back(std::move(b));
    }

    const auth::ResolverSettings& settings_;
    const authd::Database& db_;
    const auth::SystemUsers& system_;
    ExpandLimits limits_;
    std::vector<std::string> stack_;  // aliases being expanded
};

}  // namespace

Handler::Handler(auth::ResolverSettings settings, Database& db, const auth::SystemUsers& system,
                 auth::PasswordChecker checker, auth::DelayPolicy delays)
    : settings_(std::move(settings)),
      db_(db),
      system_(system),
      checker_(std::move(checker)),
      throttle_(delays) {}

std::optional<Reply> Handler::handle(const ipc::Message& request, const ipc::PeerInfo& peer,
                                     auth::Clock::time_point now) {
    std::string_view name = request.name();
    if (name == "domain") return domain(request);
    if (name == "rcpt") return rcpt(request, now);
    if (name == "verify") return verify(request, peer, now);
    if (name == "resolve") return resolve(request, peer, now);
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
    Expander x(settings_, db_, system_, ExpandLimits{});
    x.address(address, 0);
    r.set_str("status", x.status);
    if (!x.reason.empty()) r.set_str("reason", x.reason);
    if (x.status == "found") {
        for (const Mailbox& b : x.boxes) {
            r.set_str("user", b.user)
                .set_u64("uid", b.uid)
                .set_u64("gid", b.gid)
                .set_str("home", b.home)
                .set_str("mailbox", b.mailbox)
                .set_str("format", b.format == auth::MailboxFormat::Mbox ? "mbox" : "maildir");
        }
    }
    log::debug("resolve ", esc(address), ": ", x.status, " ", x.reason, " (", x.boxes.size(),
               " mailboxes)");
    return Reply{std::move(r)};
}

}  // namespace pbx::authd
