// The relay decision: may this recipient be accepted from this client, and
// is it ours (look it up) or someone else's (relay)? A pure function, so that
// every trick in the open-relay catalogue can sit in one test table.
//
// Never relayed for a client that may not relay, whatever the domain:
//   user%other@ours, host!user@ours, "user@other"@ours  (routing in the local
//   part: we never interpret it, Postfix calls it "sender-specified routing");
// Never ours unless listed exactly (ASCII case-insensitively):
//   ours. (trailing dot), [192.0.2.1] (address literal), sub.ours.
// Source routes (<@ours:user@other>) never reach this function: the address
// parser drops the route, leaving user@other.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/smtp/address.hpp"

namespace pbx::smtp {

struct Policy {
    // Domains delivered here (config `domains`). Address literals count only
    // when listed with their brackets, e.g. "[192.0.2.1]".
    std::vector<std::string> local_domains;

    // "May this client relay": the glue fills the first two at connect time
    // (trusted_networks match; authd's POP-before-SMTP memory); the engine
    // sets `authenticated` in its own copy after a successful AUTH.
    bool client_trusted = false;
    bool pop_before_smtp = false;
    bool authenticated = false;

    // One engine, two policies: smtpd (MTA, port 25) offers STARTTLS and maybe
    // AUTH; submitd (MSA, 587/465) requires AUTH (and TLS) before MAIL.
    bool starttls_offered = false;
    bool tls_required = false;      // MAIL refused (530 5.7.0) until TLS is active
    bool auth_offered = false;      // AUTH PLAIN LOGIN advertised and accepted
    bool auth_required = false;     // MAIL refused (530 5.7.0) until authenticated
    bool auth_requires_tls = true;  // AUTH hidden before TLS; 538 5.7.11 if tried
    // Submission: the glue vets every sender (CheckSender: ownership, rate)
    // and every relayed recipient (LookupRecipient with relay set: rate).
    bool check_sender = false;
    bool check_relay = false;

    bool may_relay() const { return client_trusted || pop_before_smtp || authenticated; }
    bool is_local_domain(std::string_view domain) const;
};

enum class RelayDecision {
    Local,   // one of our domains (or bare "postmaster"): look the user up
    Relay,   // someone else's domain and this client may relay: accept
    Denied,  // 554 5.7.1 <addr>: Relay access denied
};

// True when the local part carries sender-specified routing: '%', '!' or
// '@' (the last only possible inside quotes).
bool has_routing_in_local_part(std::string_view local);

RelayDecision classify_recipient(const Address& recipient, const Policy& policy);

}  // namespace pbx::smtp
