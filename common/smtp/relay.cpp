#include "common/smtp/relay.hpp"

namespace pbx::smtp {

bool Policy::is_local_domain(std::string_view domain) const {
    if (domain.empty()) return false;
    for (const auto& d : local_domains) {
        if (iequals(d, domain)) return true;
    }
    return false;
}

bool has_routing_in_local_part(std::string_view local) {
    return local.find_first_of("%!@") != std::string_view::npos;
}

RelayDecision classify_recipient(const Address& recipient, const Policy& policy) {
    if (recipient.domain.empty()) {
        // Only "<postmaster>" parses without a domain; anything else here is
        // a caller's mistake and is refused rather than guessed at.
        return iequals(recipient.local, "postmaster") ? RelayDecision::Local
                                                      : RelayDecision::Denied;
    }
    const bool may_relay = policy.may_relay();
    // user%other@ours would be relayed by a server that honours the percent
    // hack; we never do, and an untrusted client does not get to try.
    if (!may_relay && has_routing_in_local_part(recipient.local)) return RelayDecision::Denied;
    if (policy.is_local_domain(recipient.domain)) return RelayDecision::Local;
    return may_relay ? RelayDecision::Relay : RelayDecision::Denied;
}

}  // namespace pbx::smtp
