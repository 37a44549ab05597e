#include "common/auth/senders.hpp"

#include <set>

namespace pbx::auth {
namespace {

class Walker {
  public:
    Walker(std::string_view user, const ResolverSettings& settings, const UserTable& users,
           const AliasMap& aliases, const SystemUsers& system, const OwnershipLimits& limits)
        : user_(user),
          settings_(settings),
          users_(users),
          aliases_(aliases),
          system_(system),
          limits_(limits) {}

    // Does `address` (or a bare local name) lead to the user?
    bool address(std::string_view addr, int depth) {
        if (!budget()) return false;
        Resolution r = resolve_recipient(addr, settings_, users_, aliases_, system_);
        if (r.status != RcptStatus::Local) return false;
        switch (r.kind) {
            case LocalKind::User:
            case LocalKind::SystemUser:
                return r.name == user_;
            case LocalKind::Alias:
                return alias(r.name, depth);
            case LocalKind::Postmaster:
                return false;
        }
        return false;
    }

  private:
    bool budget() { return ++visited_ <= limits_.max_visited; }

    bool alias(const std::string& name, int depth) {
        if (depth >= limits_.max_depth || !seen_.insert(name).second) return false;
        const AliasEntry* e = aliases_.find(name);
        if (!e) return false;
        for (const AliasTarget& t : e->targets) {
            switch (t.kind) {
                case AliasTargetKind::Local:
                    if (t.verbatim) {
                        if (t.value == user_) return true;
                    } else if (address(t.value, depth + 1)) {
                        return true;
                    }
                    break;
                case AliasTargetKind::Address:
                    if (address(t.value, depth + 1)) return true;
                    break;
                default:  // commands, files, includes: nobody's address
                    break;
            }
            if (visited_ > limits_.max_visited) return false;
        }
        return false;
    }

    std::string user_;
    const ResolverSettings& settings_;
    const UserTable& users_;
    const AliasMap& aliases_;
    const SystemUsers& system_;
    OwnershipLimits limits_;
    std::set<std::string> seen_;
    size_t visited_ = 0;
};

}  // namespace

Result<std::vector<SenderMapEntry>, std::string> parse_sender_map(
    const std::vector<std::string>& entries) {
    std::vector<SenderMapEntry> out;
    for (const std::string& e : entries) {
        size_t colon = e.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == e.size())
            return Err{"'" + e + "' is not user:address, user:@domain or user:*"};
        SenderMapEntry m{ascii_lower(std::string_view(e).substr(0, colon)),
                         ascii_lower(std::string_view(e).substr(colon + 1))};
        if (!valid_user_name(m.user)) return Err{"'" + e + "': bad user name '" + m.user + "'"};
        if (m.pattern != "*") {
            size_t at = m.pattern.rfind('@');
            if (at == std::string::npos || at + 1 == m.pattern.size() ||
                m.pattern.find_first_of(" \t:") != std::string::npos)
                return Err{"'" + e + "': '" + m.pattern + "' is not an address, @domain or *"};
        }
        out.push_back(std::move(m));
    }
    return out;
}

bool owns_sender(std::string_view user, std::string_view address,
                 const std::vector<SenderMapEntry>& map, const ResolverSettings& settings,
                 const UserTable& users, const AliasMap& aliases, const SystemUsers& system,
                 const OwnershipLimits& limits) {
    if (address.empty()) return true;
    const std::string who = ascii_lower(user);
    if (who.empty()) return false;
    const std::string addr = ascii_lower(address);
    const size_t at = addr.rfind('@');
    const std::string domain = at == std::string::npos ? "" : addr.substr(at);  // "@domain"
    for (const SenderMapEntry& e : map) {
        if (e.user != who) continue;
        if (e.pattern == "*" || e.pattern == addr) return true;
        if (e.pattern.front() == '@' && !domain.empty() && e.pattern == domain) return true;
    }
    // Only full addresses of our domains from here: a bare "alice" is not a
    // sender a mail client should use.
    if (at == std::string::npos || !settings.is_local_domain(addr.substr(at + 1))) return false;
    Walker w(who, settings, users, aliases, system, limits);
    return w.address(address, 0);
}

}  // namespace pbx::auth
