#include "remote-delivery/dns.hpp"

#include <algorithm>

namespace pbx::remote {

std::string_view to_string(DnsStatus s) {
    switch (s) {
        case DnsStatus::Ok:
            return "ok";
        case DnsStatus::NoData:
            return "no data";
        case DnsStatus::NxDomain:
            return "NXDOMAIN";
        case DnsStatus::TempFail:
            return "temporary failure";
    }
    return "?";
}

std::optional<std::string> parse_wire_name(std::string_view wire) {
    std::string out;
    size_t pos = 0;
    while (true) {
        if (pos >= wire.size()) return std::nullopt;
        auto len = static_cast<unsigned char>(wire[pos++]);
        if (len == 0) break;
        if (len > 63 || pos + len > wire.size()) return std::nullopt;  // no compression here
        if (!out.empty()) out += '.';
        for (size_t i = 0; i < len; ++i) {
            char c = wire[pos + i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            // A host name: letters, digits, '-', '_' (seen in the wild).
            bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
            if (!ok) return std::nullopt;
            out += c;
        }
        pos += len;
        if (out.size() > 253) return std::nullopt;
    }
    if (pos != wire.size()) return std::nullopt;
    return out;
}

std::optional<MxRecord> parse_mx_rdata(std::string_view rdata) {
    if (rdata.size() < 3) return std::nullopt;
    MxRecord r;
    r.preference = static_cast<uint16_t>((static_cast<unsigned char>(rdata[0]) << 8) |
                                         static_cast<unsigned char>(rdata[1]));
    auto name = parse_wire_name(rdata.substr(2));
    if (!name) return std::nullopt;
    r.host = std::move(*name);
    return r;
}

bool is_null_mx(const std::vector<MxRecord>& records) {
    return records.size() == 1 && records[0].host.empty();
}

std::vector<MxRecord> order_mx(std::vector<MxRecord> records, std::mt19937& rng) {
    std::erase_if(records, [](const MxRecord& r) { return r.host.empty(); });
    std::shuffle(records.begin(), records.end(), rng);
    std::stable_sort(records.begin(), records.end(), [](const MxRecord& a, const MxRecord& b) {
        return a.preference < b.preference;
    });
    std::vector<MxRecord> out;
    for (auto& r : records) {
        bool dup = std::any_of(out.begin(), out.end(),
                               [&](const MxRecord& o) { return o.host == r.host; });
        if (!dup) out.push_back(std::move(r));
    }
    return out;
}

HostPlan plan_hosts(std::string_view domain, const MxAnswer& answer, std::mt19937& rng) {
    HostPlan p;
    std::string d(domain);
    switch (answer.status) {
        case DnsStatus::TempFail:
            p.kind = HostPlan::Kind::Defer;
            p.reply = "451 4.4.3 cannot look up the MX records of " + d + ": " +
                      (answer.error.empty() ? "temporary DNS failure" : answer.error);
            p.dsn = "4.4.3";
            return p;
        case DnsStatus::NxDomain:
            p.kind = HostPlan::Kind::Fail;
            p.reply = "550 5.4.4 host or domain name not found: " + d + " (NXDOMAIN)";
            p.dsn = "5.4.4";
            return p;
        case DnsStatus::NoData:
            // RFC 5321 5.1: the domain itself is the implicit MX.
            p.kind = HostPlan::Kind::Hosts;
            p.hosts.push_back(d);
            return p;
        case DnsStatus::Ok:
            break;
    }
    if (is_null_mx(answer.records)) {
        p.kind = HostPlan::Kind::Fail;
        p.reply = "556 5.1.10 domain " + d + " does not accept mail (null MX)";
        p.dsn = "5.1.10";
        return p;
    }
    for (auto& r : order_mx(answer.records, rng)) p.hosts.push_back(r.host);
    if (p.hosts.empty()) {
        p.kind = HostPlan::Kind::Defer;
        p.reply = "451 4.4.3 no usable MX records for " + d;
        p.dsn = "4.4.3";
        return p;
    }
    p.kind = HostPlan::Kind::Hosts;
    return p;
}

}  // namespace pbx::remote
