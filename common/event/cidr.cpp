#include "common/event/cidr.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace pbx::event {

namespace {

// INET6_ADDRSTRLEN - 1: the longest textual address inet_pton accepts.
constexpr size_t kMaxAddressText = 45;

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::string IpAddress::str() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (v4) {
        inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
    } else {
        inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
    }
    return buf;
}

Result<IpAddress, std::string> parse_ip(std::string_view text) {
    if (text.empty()) return Err{std::string("empty address")};
    if (text.size() > kMaxAddressText) return Err{"not an IP address: " + std::string(text)};
    // inet_pton needs a NUL-terminated string; copy rather than read past the view.
    const std::string copy(text);
    IpAddress ip;
    if (copy.find(':') == std::string::npos) {
        if (inet_pton(AF_INET, copy.c_str(), ip.bytes.data()) != 1)
            return Err{"not an IPv4 address: " + copy};
        ip.v4 = true;
        return ip;
    }
    std::array<uint8_t, 16> raw{};
    if (inet_pton(AF_INET6, copy.c_str(), raw.data()) != 1)
        return Err{"not an IPv6 address: " + copy};
    if (std::memcmp(raw.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0) {
        ip.v4 = true;
        std::memcpy(ip.bytes.data(), raw.data() + 12, 4);
        return ip;
    }
    ip.v4 = false;
    ip.bytes = raw;
    return ip;
}

bool Cidr::contains(const IpAddress& ip) const {
    if (ip.v4 != network.v4) return false;
    unsigned full = prefix / 8;
    if (std::memcmp(ip.bytes.data(), network.bytes.data(), full) != 0) return false;
    unsigned rest = prefix % 8;
    if (rest == 0) return true;
    const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (ip.bytes[full] & mask) == (network.bytes[full] & mask);
}

std::string Cidr::str() const {
    return network.str() + "/" + std::to_string(prefix);
}

Result<Cidr, std::string> parse_cidr(std::string_view text) {
    std::string_view addr = text;
    std::string_view len;
    if (size_t slash = text.find('/'); slash != std::string_view::npos) {
        addr = text.substr(0, slash);
        len = text.substr(slash + 1);
        if (len.empty()) return Err{"missing prefix length after '/': " + std::string(text)};
    }
    if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']')
        addr = addr.substr(1, addr.size() - 2);
    auto ip = parse_ip(addr);
    if (!ip) return Err{ip.error()};
    Cidr c;
    c.network = *ip;
    c.prefix = c.network.bit_length();
    if (!len.empty()) {
        unsigned n = 0;
        auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), n);
        // A v4-mapped network written in IPv6 form counts its prefix in
        // IPv6 bits: ::ffff:10.0.0.0/104 is 10.0.0.0/8.
        const bool mapped = c.network.v4 && addr.find(':') != std::string_view::npos;
        const unsigned max_len = mapped ? 128 : c.network.bit_length();
        if (ec != std::errc() || p != len.data() + len.size() || n > max_len)
            return Err{"bad prefix length '" + std::string(len) + "' in " + std::string(text)};
        if (mapped) {
            if (n < 96)
                return Err{"prefix too short for a v4-mapped network: " + std::string(text)};
            n -= 96;
        }
        c.prefix = n;
    }
    // Host bits must be zero.
    Cidr masked = c;
    for (unsigned bit = c.prefix; bit < c.network.bit_length(); ++bit)
        masked.network.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    if (!(masked.network == c.network))
        return Err{"host bits set in " + std::string(text) + " (did you mean " + masked.str() +
                   "?)"};
    return c;
}

Result<CidrList, std::string> CidrList::parse(const std::vector<std::string>& entries) {
    CidrList list;
    for (const auto& e : entries) {
        auto c = parse_cidr(e);
        if (!c) return Err{c.error()};
        list.nets_.push_back(*c);
    }
    return list;
}

bool CidrList::contains(const IpAddress& ip) const {
    for (const auto& n : nets_)
        if (n.contains(ip)) return true;
    return false;
}

bool CidrList::contains(std::string_view ip) const {
    auto parsed = parse_ip(ip);
    return parsed.ok() && contains(*parsed);
}

}  // namespace pbx::event
