// remote-delivery's tables and next hops, as pure parsers (tested alone):
//
//   relayhost        "[host]:port" (brackets: no MX lookup), "host:port",
//                    "host" or "[192.0.2.1]"; empty: deliver by MX.
//   TLS policy file  (remote_tls_policy_file) one "destination level" per
//                    line, level none | may | encrypt | verify; destination
//                    a domain ("example.org"), its subdomains (".example.org")
//                    or a relay host as written in relayhost ("[smtp.isp.net]:587").
//   relay map        (relayhost_map) one "domain nexthop" per line: mail for
//                    that domain (".example.org": its subdomains) goes to
//                    that next hop instead of relayhost or the MX records.
//   sender map       (sender_relayhost_map) one "sender nexthop" per line:
//                    mail from that envelope sender ("user@example.org",
//                    any sender of a domain "@example.org", the null sender
//                    "<>") goes to that next hop (Postfix's
//                    sender_dependent_relayhost_maps).
//   credentials      (relayhost_credentials) one "destination user:password"
//                    per line for the smart host; destination as above.
//
// '#' starts a comment line; blank lines are ignored; every other line
// that does not parse is an error naming the line.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/smtp/client.hpp"

namespace pbx::remote {

struct NextHop {
    std::string host;  // a name or an IP address, without brackets
    uint16_t port = 25;
    bool mx_lookup = true;  // false: "[host]" (or an address literal)
    bool relay = false;     // a smart host (relayhost, relayhost_map): AUTH may apply
    // "[host]:port" / "host:port" / "host" as an administrator writes it,
    // lower case: the key of the tables.
    std::string key() const;
};

Result<NextHop, std::string> parse_nexthop(std::string_view text, uint16_t default_port);

class TlsPolicy {
  public:
    static Result<TlsPolicy, std::string> parse(std::string_view text);
    // The level for a destination key (a domain or NextHop::key()).
    std::optional<smtp::client::TlsLevel> lookup(std::string_view destination) const;
    size_t size() const { return entries_.size(); }

  private:
    std::map<std::string, smtp::client::TlsLevel, std::less<>> entries_;
};

// relayhost_map: "domain nexthop" per line; the domain as in the TLS policy
// table (exact, or ".example.org" for its subdomains).
class RelayMap {
  public:
    static Result<RelayMap, std::string> parse(std::string_view text, uint16_t default_port);
    std::optional<NextHop> lookup(std::string_view domain) const;
    size_t size() const { return entries_.size(); }

  private:
    std::map<std::string, NextHop, std::less<>> entries_;
};

// sender_relayhost_map: "sender nexthop" per line (see above). Lookup: the
// whole address, then "@domain"; "<>" for the null sender. Case-insensitive.
class SenderRelayMap {
  public:
    static Result<SenderRelayMap, std::string> parse(std::string_view text, uint16_t default_port);
    std::optional<NextHop> lookup(std::string_view sender) const;
    size_t size() const { return entries_.size(); }

  private:
    std::map<std::string, NextHop, std::less<>> entries_;
};

class Credentials {
  public:
    static Result<Credentials, std::string> parse(std::string_view text);
    const std::pair<std::string, std::string>* lookup(const NextHop& hop) const;
    size_t size() const { return entries_.size(); }

  private:
    std::map<std::string, std::pair<std::string, std::string>, std::less<>> entries_;
};

// A file of at most 1 MiB. With `secret`: refused unless owned by root and
// unreadable to group and others (a password file).
Result<std::string> read_table_file(const std::string& path, bool secret);

// The domain of an address ("" when it has none), lower case.
std::string domain_of(std::string_view address);

}  // namespace pbx::remote
