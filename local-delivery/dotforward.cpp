#include "local-delivery/dotforward.hpp"

#include <algorithm>

#include "common/auth/aliases.hpp"

namespace pbx::local {
namespace {

bool is_self(const auth::AliasTarget& a, std::string_view user,
             const auth::ResolverSettings& settings) {
    if (a.kind == auth::AliasTargetKind::Local) return auth::iequals(a.value, user);
    if (a.kind != auth::AliasTargetKind::Address) return false;
    std::string_view v = a.value;
    size_t at = v.rfind('@');
    std::string_view local = v.substr(0, at), domain = v.substr(at + 1);
    if (!settings.is_local_domain(domain)) return false;
    if (auth::iequals(local, user)) return true;
    size_t cut = settings.recipient_delimiter.empty()
                     ? std::string_view::npos
                     : local.find_first_of(settings.recipient_delimiter);
    return cut != std::string_view::npos && cut > 0 && auth::iequals(local.substr(0, cut), user);
}

}  // namespace

size_t ForwardPlan::deliveries() const {
    if (!ignored.empty()) return 1;
    return (self ? 1 : 0) + commands.size() + files.size() + (forward_to.empty() ? 0 : 1);
}

ForwardPlan plan_dotforward(std::string_view text, std::string_view user, std::string_view rcpt,
                            const auth::ResolverSettings& settings,
                            std::string_view fallback_domain) {
    ForwardPlan plan;
    auto list = auth::parse_target_lines(text);
    if (!list) {
        plan.ignored = list.error();
        return plan;
    }
    size_t at = rcpt.rfind('@');
    std::string domain = at != std::string_view::npos && at + 1 < rcpt.size()
                             ? std::string(rcpt.substr(at + 1))
                             : std::string(fallback_domain);
    for (const auth::AliasTarget& a : *list) {
        switch (a.kind) {
            case auth::AliasTargetKind::Include:
                return ForwardPlan{":include: is not allowed in a .forward", false, {}, {}, {}};
            case auth::AliasTargetKind::Command:
                plan.commands.push_back(a.value);
                continue;
            case auth::AliasTargetKind::File:
                plan.files.push_back(a.value);
                continue;
            case auth::AliasTargetKind::Local:
            case auth::AliasTargetKind::Address:
                break;
        }
        if (is_self(a, user, settings)) {
            plan.self = true;
            continue;
        }
        std::string addr = a.value;
        if (addr.find('@') == std::string::npos) addr += "@" + domain;
        bool have = std::any_of(plan.forward_to.begin(), plan.forward_to.end(),
                                [&](const std::string& x) { return auth::iequals(x, addr); });
        if (!have) plan.forward_to.push_back(std::move(addr));
    }
    return plan;
}

}  // namespace pbx::local
