#include "common/auth/resolve.hpp"

#include <unistd.h>

#include <optional>

#include "common/config/config.hpp"

namespace pbx::auth {
namespace {

Resolution invalid(std::string reason) {
    Resolution r;
    r.status = RcptStatus::Invalid;
    r.reason = std::move(reason);
    return r;
}

// "a\"b" → a"b. nullopt when the quoting is broken.
std::optional<std::string> unquote_local(std::string_view local) {
    if (local.size() < 2 || local.front() != '"' || local.back() != '"') {
        if (local.find('"') != std::string_view::npos) return std::nullopt;
        return std::string(local);
    }
    std::string out;
    for (size_t i = 1; i + 1 < local.size(); ++i) {
        char c = local[i];
        if (c == '\\') {
            if (i + 2 >= local.size()) return std::nullopt;
            out += local[++i];
            continue;
        }
        if (c == '"') return std::nullopt;
        out += c;
    }
    return out;
}

struct Found {
    LocalKind kind;
};

std::optional<Found> lookup(const std::string& name, const ResolverSettings& settings,
                            const UserTable& users, const AliasMap& aliases,
                            const SystemUsers& system) {
    if (aliases.contains(name)) return Found{LocalKind::Alias};
    if (users.find(name)) return Found{LocalKind::User};
    if (settings.system_users) {
        if (auto acct = system.account(name); acct && is_regular_account(*acct))
            return Found{LocalKind::SystemUser};
    }
    return std::nullopt;
}

}  // namespace

std::string_view to_string(RcptStatus s) {
    switch (s) {
        case RcptStatus::Local:
            return "local";
        case RcptStatus::Unknown:
            return "unknown";
        case RcptStatus::Remote:
            return "remote";
        case RcptStatus::Invalid:
            return "invalid";
    }
    return "?";
}

std::string_view to_string(LocalKind k) {
    switch (k) {
        case LocalKind::Alias:
            return "alias";
        case LocalKind::User:
            return "user";
        case LocalKind::SystemUser:
            return "system user";
        case LocalKind::Postmaster:
            return "postmaster";
    }
    return "?";
}

ResolverSettings ResolverSettings::from_config(const config::Config& cfg) {
    ResolverSettings s;
    for (const std::string& d : cfg.list("domains")) s.domains.push_back(ascii_lower(d));
    // The queue-manager qualifies local senders and the postmaster of
    // bounce_notice_recipient with myhostname and routes that domain to
    // local delivery, so its addresses must resolve here too.
    std::string host = cfg.str("myhostname");
    if (host.empty()) {
        char name[256] = {};
        if (gethostname(name, sizeof name - 1) == 0) host = name;
    }
    s.myhostname = ascii_lower(host);
    s.recipient_delimiter = cfg.str("recipient_delimiter");
    s.system_users = cfg.boolean("system_users");
    s.default_privs = cfg.str("default_privs");
    s.home_mailbox = cfg.str("home_mailbox");
    s.sender_map = cfg.list("submission_sender_map");
    return s;
}

bool ResolverSettings::is_local_domain(std::string_view domain) const {
    if (domain.empty() || domain.back() == '.') return false;
    for (const std::string& d : domains)
        if (iequals(d, domain)) return true;
    return !myhostname.empty() && iequals(myhostname, domain);
}

std::string Resolution::canonical() const {
    std::string out = name;
    if (delimiter) {
        out += delimiter;
        out += detail;
    }
    if (!domain.empty()) {
        out += '@';
        out += domain;
    }
    return out;
}

Resolution resolve_recipient(std::string_view address, const ResolverSettings& settings,
                             const UserTable& users, const AliasMap& aliases,
                             const SystemUsers& system, const ResolveLimits& limits) {
    if (address.empty()) return invalid("empty address");
    if (address.size() > limits.max_address) return invalid("address too long");
    for (char c : address) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return invalid("white space or control character");
    }
    size_t at = address.rfind('@');
    std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
    std::string domain;
    if (at != std::string_view::npos) {
        std::string_view d = address.substr(at + 1);
        if (d.empty()) return invalid("empty domain");
        if (d.back() == '.') return invalid("domain with a trailing dot");
        domain = ascii_lower(d);
    }
    if (local.empty()) return invalid("empty local part");

    Resolution r;
    r.domain = domain;
    if (!domain.empty() && !settings.is_local_domain(domain)) {
        r.status = RcptStatus::Remote;
        r.name = std::string(local);
        return r;
    }

    auto unquoted = unquote_local(local);
    if (!unquoted) return invalid("bad quoting in the local part");
    if (unquoted->empty()) return invalid("empty local part");
    if (unquoted->size() > limits.max_local_part) return invalid("local part too long");
    std::string full = ascii_lower(*unquoted);

    // Whole local part first, so that an alias like "owner-list" still works
    // when '-' is a delimiter (Postfix does the same).
    if (auto f = lookup(full, settings, users, aliases, system)) {
        r.status = RcptStatus::Local;
        r.kind = f->kind;
        r.name = full;
        return r;
    }
    std::string base = full;
    size_t cut = settings.recipient_delimiter.empty()
                     ? std::string::npos
                     : full.find_first_of(settings.recipient_delimiter);
    if (cut != std::string::npos && cut > 0) {
        base = full.substr(0, cut);
        r.delimiter = full[cut];
        r.detail = unquoted->substr(cut + 1);
        if (auto f = lookup(base, settings, users, aliases, system)) {
            r.status = RcptStatus::Local;
            r.kind = f->kind;
            r.name = base;
            return r;
        }
    }
    if (full == "postmaster" || base == "postmaster") {
        r.status = RcptStatus::Local;
        r.kind = LocalKind::Postmaster;
        r.name = "postmaster";
        if (base != "postmaster") {
            r.delimiter = 0;
            r.detail.clear();
        }
        return r;
    }
    r.status = RcptStatus::Unknown;
    r.name = full;
    r.delimiter = 0;
    r.detail.clear();
    return r;
}

}  // namespace pbx::auth
