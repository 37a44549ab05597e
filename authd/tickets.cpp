#include "authd/tickets.hpp"

#include <openssl/rand.h>

#include <algorithm>

namespace pbx::authd {

std::optional<UserMailbox> find_user_mailbox(std::string_view name,
                                             const auth::ResolverSettings& settings,
                                             const Database& db, const auth::SystemUsers& system) {
    if (const auth::VirtualUser* u = db.users().find(name))
        return UserMailbox{u->name, u->uid, u->gid, u->home, u->mailbox, u->format};
    if (!settings.system_users) return std::nullopt;
    auto a = system.account(name);
    if (!a || !auth::is_regular_account(*a)) return std::nullopt;
    // Where local-delivery puts a system user's mail (common/auth/expand.cpp).
    const std::string& rel = settings.home_mailbox;
    if (rel.empty())
        return UserMailbox{
            a->name, a->uid, a->gid, a->home, "/var/mail/" + a->name, auth::MailboxFormat::Mbox};
    if (rel[0] == '/' || rel.find("..") != std::string::npos || a->home.empty() ||
        a->home[0] != '/')
        return std::nullopt;
    return UserMailbox{
        a->name,
        a->uid,
        a->gid,
        a->home,
        a->home + (a->home.back() == '/' ? "" : "/") + rel,
        rel.back() == '/' ? auth::MailboxFormat::Maildir : auth::MailboxFormat::Mbox};
}

void TicketStore::expire(auth::Clock::time_point now) {
    std::erase_if(tickets_, [now](const auto& kv) { return kv.second.expires <= now; });
}

std::optional<std::string> TicketStore::issue(UserMailbox box, std::string service,
                                              std::string client_address,
                                              auth::Clock::time_point now) {
    if (tickets_.size() >= max_) expire(now);
    if (tickets_.size() >= max_) return std::nullopt;
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) return std::nullopt;
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    text.reserve(2 * sizeof raw);
    for (unsigned char c : raw) {
        text.push_back(kHex[c >> 4]);
        text.push_back(kHex[c & 15]);
    }
    Ticket t{std::move(box), std::move(service), std::move(client_address), now + lifetime_};
    if (!tickets_.emplace(text, std::move(t)).second) return std::nullopt;  // 2^-256
    return text;
}

std::optional<Ticket> TicketStore::redeem(std::string_view ticket, auth::Clock::time_point now) {
    auto it = tickets_.find(ticket);
    if (it == tickets_.end()) return std::nullopt;
    Ticket t = std::move(it->second);
    tickets_.erase(it);
    if (t.expires <= now) return std::nullopt;
    return t;
}

void RecentLogins::record(std::string_view address, auth::Clock::time_point until) {
    if (address.empty()) return;
    auto it = until_.find(address);
    if (it != until_.end()) {
        it->second = std::max(it->second, until);
        return;
    }
    if (until_.size() >= max_) {
        // Forget the entry that ends first (expired ones end first of all).
        auto oldest =
            std::min_element(until_.begin(), until_.end(),
                             [](const auto& a, const auto& b) { return a.second < b.second; });
        until_.erase(oldest);
    }
    until_.emplace(std::string(address), until);
}

std::optional<auth::Clock::duration> RecentLogins::remaining(std::string_view address,
                                                             auth::Clock::time_point now) const {
    auto it = until_.find(address);
    if (it == until_.end() || it->second <= now) return std::nullopt;
    return it->second - now;
}

}  // namespace pbx::authd
