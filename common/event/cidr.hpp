// IP addresses and CIDR networks, for trusted_networks and the per-client
// connection limits. Pure functions over std::string_view: no I/O, no DNS.
//
// An IPv4-mapped IPv6 address (::ffff:192.0.2.1, what an AF_INET6 socket
// reports for an IPv4 client) is normalised to IPv4, so a client is matched
// and counted the same whichever socket family accepted it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace pbx::event {

struct IpAddress {
    bool v4 = true;
    // IPv4 in bytes[0..3]; IPv6 in all 16.
    std::array<uint8_t, 16> bytes{};

    unsigned bit_length() const { return v4 ? 32 : 128; }
    // Canonical text: "192.0.2.1", "2001:db8::1".
    std::string str() const;
    friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (→ IPv4). No brackets, no
// zone index, no port. The error names what was wrong.
Result<IpAddress, std::string> parse_ip(std::string_view text);

struct Cidr {
    IpAddress network;
    unsigned prefix = 0;  // 0..32 or 0..128

    bool contains(const IpAddress& ip) const;
    std::string str() const;  // "192.0.2.0/24"
};

// "192.0.2.0/24", "2001:db8::/32", "[2001:db8::]/32", or a bare address (a
// /32 or /128). Host bits set below the prefix ("192.0.2.1/24") are an error:
// the administrator meant something, and guessing which is worse.
Result<Cidr, std::string> parse_cidr(std::string_view text);

class CidrList {
  public:
    CidrList() = default;
    // Every entry must parse; the error quotes the bad entry.
    static Result<CidrList, std::string> parse(const std::vector<std::string>& entries);

    bool contains(const IpAddress& ip) const;
    // False for text that is not an address.
    bool contains(std::string_view ip) const;
    bool empty() const { return nets_.empty(); }
    const std::vector<Cidr>& networks() const { return nets_; }

  private:
    std::vector<Cidr> nets_;
};

}  // namespace pbx::event
