// DNS for remote-delivery (DESIGN §5): MX records by preference, random
// among equal preferences; no MX → the domain's own addresses (the implicit
// MX of RFC 5321 5.1); a null MX (RFC 7505) → the domain takes no mail;
// NXDOMAIN → a permanent failure; SERVFAIL and timeouts → try later. IPv6
// and IPv4 addresses are both used.
//
// The parsing and ordering are pure functions (tested alone); the Resolver
// interface hides libunbound (resolver.hpp) from the delivery logic, so the
// delivery logic is tested with a scripted resolver.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace pbx::remote {

enum class DnsStatus {
    Ok,        // records found
    NoData,    // the name exists, without records of that type
    NxDomain,  // the name does not exist
    TempFail,  // SERVFAIL, timeout, resolver trouble: try again later
};
std::string_view to_string(DnsStatus s);

struct MxRecord {
    uint16_t preference = 0;
    std::string host;  // lower case, without the final dot; "" = "." (null MX)

    bool operator==(const MxRecord&) const = default;
};

struct MxAnswer {
    DnsStatus status = DnsStatus::TempFail;
    std::vector<MxRecord> records;
    std::string error;  // for TempFail
};

struct AddressAnswer {
    DnsStatus status = DnsStatus::TempFail;
    std::vector<std::string> addresses;  // textual IPv6 and IPv4 addresses
    std::string error;
};

// An MX RDATA in wire format: 16-bit preference, then an uncompressed
// domain name. nullopt when malformed.
std::optional<MxRecord> parse_mx_rdata(std::string_view rdata);
// A wire-format domain name as text (lower case, no final dot; "" = root).
std::optional<std::string> parse_wire_name(std::string_view wire);

// RFC 7505: the domain's only MX record is "." (any preference).
bool is_null_mx(const std::vector<MxRecord>& records);

// Sorted by preference, shuffled among equal preferences; "." records and
// duplicate hosts removed.
std::vector<MxRecord> order_mx(std::vector<MxRecord> records, std::mt19937& rng);

// What to do for a domain, from its MX answer.
struct HostPlan {
    enum class Kind { Hosts, Defer, Fail } kind = Kind::Defer;
    std::vector<std::string> hosts;  // in the order to try
    std::string reply;               // Defer/Fail: "550 5.1.10 ..." ready to report
    std::string dsn;
};
HostPlan plan_hosts(std::string_view domain, const MxAnswer& answer, std::mt19937& rng);

class Resolver {
  public:
    using MxFn = std::function<void(MxAnswer)>;
    using AddressFn = std::function<void(AddressAnswer)>;
    virtual ~Resolver() = default;
    // Callbacks come from the event loop, never from inside the call.
    virtual void lookup_mx(const std::string& domain, MxFn done) = 0;
    // AAAA and A together: Ok when either has addresses (IPv6 first).
    virtual void lookup_addresses(const std::string& host, AddressFn done) = 0;
};

}  // namespace pbx::remote
