#include "common/auth/expand.hpp"

#include <algorithm>
#include <cerrno>

namespace pbx::auth {

std::string_view to_string(TargetKind k) {
    switch (k) {
        case TargetKind::Mailbox:
            return "mailbox";
        case TargetKind::Pipe:
            return "pipe";
        case TargetKind::File:
            return "file";
        case TargetKind::Forward:
            return "forward";
    }
    return "?";
}

std::string_view to_string(ExpandStatus s) {
    switch (s) {
        case ExpandStatus::Found:
            return "found";
        case ExpandStatus::Unknown:
            return "unknown";
        case ExpandStatus::TempFail:
            return "tempfail";
        case ExpandStatus::Loop:
            return "loop";
        case ExpandStatus::Refused:
            return "refused";
        case ExpandStatus::Unsupported:
            return "unsupported";
    }
    return "?";
}

namespace {

std::string shown(std::string_view v) {
    std::string out;
    for (char c : v.substr(0, 80)) {
        unsigned char u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? '?' : c;
    }
    if (v.size() > 80) out += "...";
    return out;
}

class Expander {
  public:
    Expander(const ExpandContext& ctx, const ExpandLimits& limits) : ctx_(ctx), limits_(limits) {}

    Expansion out;

    void address(std::string_view addr, int depth) {
        if (!ok()) return;
        auto res = resolve_recipient(addr, ctx_.settings, ctx_.users, ctx_.aliases, ctx_.system);
        switch (res.status) {
            case RcptStatus::Remote: {
                DeliveryTarget t;
                t.kind = TargetKind::Forward;
                t.target = std::string(addr);
                return add(std::move(t));
            }
            case RcptStatus::Invalid:
                return set(ExpandStatus::Unknown,
                           "invalid address " + shown(addr) + ": " + res.reason);
            case RcptStatus::Unknown:
                return set(ExpandStatus::Unknown, "no such user: " + shown(addr));
            case RcptStatus::Local:
                break;
        }
        switch (res.kind) {
            case LocalKind::Alias:
                return alias(res.name, depth);
            case LocalKind::User:
            case LocalKind::SystemUser:
                return user(res.name, false);
            case LocalKind::Postmaster:
                return set(ExpandStatus::Unsupported, "postmaster has no alias and no user");
        }
    }

  private:
    bool ok() const { return out.status == ExpandStatus::Found; }
    void set(ExpandStatus s, std::string r) {
        if (!ok()) return;
        out.status = s;
        out.reason = std::move(r);
    }

    void add(DeliveryTarget t) {
        for (const DeliveryTarget& have : out.targets) {
            if (have.kind != t.kind) continue;
            bool same = t.kind == TargetKind::Mailbox
                            ? have.mailbox == t.mailbox
                            : have.target == t.target && have.uid == t.uid;
            if (t.kind == TargetKind::Forward) same = iequals(have.target, t.target);
            if (same) return;  // listed twice: one copy
        }
        if (out.targets.size() >= limits_.max_targets)
            return set(ExpandStatus::Unsupported,
                       "more than " + std::to_string(limits_.max_targets) + " targets");
        out.targets.push_back(std::move(t));
    }

    // Targets of an alias entry or an include file. `where` names it for
    // messages; `safe`: commands, files and includes are allowed.
    void targets(const std::vector<AliasTarget>& list, const std::string& where, bool safe,
                 int depth) {
        for (const AliasTarget& t : list) {
            if (!ok()) return;
            switch (t.kind) {
                case AliasTargetKind::Local:
                    if (t.verbatim)
                        user(t.value, true);
                    else
                        address(t.value, depth + 1);
                    break;
                case AliasTargetKind::Address:
                    address(t.value, depth + 1);
                    break;
                case AliasTargetKind::Include:
                    if (!safe) return refuse(where, t);
                    include(t.value, depth + 1);
                    break;
                case AliasTargetKind::Command:
                case AliasTargetKind::File:
                    if (!safe) return refuse(where, t);
                    privileged(t);
                    break;
            }
        }
    }

    void refuse(const std::string& where, const AliasTarget& t) {
        set(ExpandStatus::Refused,
            where + ": " + std::string(to_string(t.kind)) +
                " targets need a file owned by root and not writable by group or others");
    }

    void alias(const std::string& name, int depth) {
        if (depth >= limits_.max_depth)
            return set(ExpandStatus::Loop, "aliases nested deeper than " +
                                               std::to_string(limits_.max_depth) + " at " + name);
        if (std::find(stack_.begin(), stack_.end(), name) != stack_.end())
            return set(ExpandStatus::Loop, "alias loop through " + name);
        const AliasEntry* e = ctx_.aliases.find(name);
        if (!e) return set(ExpandStatus::Unknown, "no such alias: " + name);
        stack_.push_back(name);
        targets(e->targets, "alias " + name, ctx_.aliases_stamp.root_safe(), depth);
        stack_.pop_back();
    }

    void include(const std::string& path, int depth) {
        std::string key = ":include:" + path;
        if (depth >= limits_.max_depth)
            return set(ExpandStatus::Loop, "includes nested deeper than " +
                                               std::to_string(limits_.max_depth) + " at " +
                                               shown(path));
        if (std::find(stack_.begin(), stack_.end(), key) != stack_.end())
            return set(ExpandStatus::Loop, "include loop through " + shown(path));
        if (!ctx_.read_include) return set(ExpandStatus::TempFail, "cannot read " + shown(path));
        auto file = ctx_.read_include(path, limits_.max_include);
        if (!file) {
            // A missing list is the administrator's to fix: keep the mail.
            return set(ExpandStatus::TempFail, file.error().message);
        }
        auto list = parse_target_lines(file->text);
        if (!list) return set(ExpandStatus::Unsupported, shown(path) + ": " + list.error());
        stack_.push_back(key);
        targets(*list, shown(path), file->stamp.root_safe(), depth);
        stack_.pop_back();
    }

    // A command or file from a root-owned file: runs as default_privs.
    void privileged(const AliasTarget& t) {
        const SystemUsers& accounts = ctx_.privs_accounts ? *ctx_.privs_accounts : ctx_.system;
        auto a = accounts.account(ctx_.default_privs);
        if (!a)
            return set(ExpandStatus::TempFail,
                       "default_privs account '" + shown(ctx_.default_privs) + "' not found");
        if (a->uid == 0 || a->gid == 0)
            return set(ExpandStatus::Refused, "default_privs must not be root");
        DeliveryTarget d;
        d.kind = t.kind == AliasTargetKind::Command ? TargetKind::Pipe : TargetKind::File;
        d.user = a->name;
        d.uid = a->uid;
        d.gid = a->gid;
        d.home = a->home;
        d.target = t.value;
        add(std::move(d));
    }

    // A user by name, without alias expansion: the users file, then (with
    // system_users) a regular system account, whose mailbox is /var/mail/NAME
    // and whose ~/.forward counts unless `verbatim` ("\name").
    void user(const std::string& name, bool verbatim) {
        DeliveryTarget b;
        if (const VirtualUser* u = ctx_.users.find(name)) {
            b.user = u->name;
            b.uid = u->uid;
            b.gid = u->gid;
            b.home = u->home;
            b.mailbox = u->mailbox;
            b.format = u->format;
        } else if (auto a = ctx_.settings.system_users ? ctx_.system.account(name) : std::nullopt;
                   a && is_regular_account(*a)) {
            b.user = a->name;
            b.uid = a->uid;
            b.gid = a->gid;
            b.home = a->home;
            const std::string& rel = ctx_.settings.home_mailbox;
            if (rel.empty()) {
                b.mailbox = "/var/mail/" + a->name;
                b.format = MailboxFormat::Mbox;
            } else {
                if (rel[0] == '/' || rel.find("..") != std::string::npos || a->home.empty() ||
                    a->home[0] != '/')
                    return set(ExpandStatus::TempFail,
                               "home_mailbox must be a path below the home directory");
                b.mailbox = a->home + (a->home.back() == '/' ? "" : "/") + rel;
                b.format = rel.back() == '/' ? MailboxFormat::Maildir : MailboxFormat::Mbox;
            }
            b.dotforward = !verbatim;
        } else {
            return set(ExpandStatus::Unknown, "no such user: " + shown(name));
        }
        if (b.uid == 0 || b.gid == 0)
            return set(ExpandStatus::Refused, "refusing uid/gid 0 for " + b.user);
        b.kind = TargetKind::Mailbox;
        add(std::move(b));
    }

    const ExpandContext& ctx_;
    ExpandLimits limits_;
    std::vector<std::string> stack_;  // aliases and includes being expanded
};

}  // namespace

Expansion expand_recipient(std::string_view address, const ExpandContext& ctx,
                           const ExpandLimits& limits) {
    Expander x(ctx, limits);
    x.address(address, 0);
    if (x.out.status != ExpandStatus::Found) x.out.targets.clear();
    return std::move(x.out);
}

}  // namespace pbx::auth
