// The envelope the SMTP engine hands to the glue with BeginMessage: what the
// queue-manager stores next to the message (DESIGN.md §4). Every string here
// came from the network but was validated by the engine's parsers: addresses
// follow RFC 5321 (UTF-8 only when smtputf8), ENVID/ORCPT are xtext-decoded
// (and may therefore hold any byte: the spool writer must encode them again).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pbx::smtp {

enum class BodyType { SevenBit, EightBitMime };  // BINARYMIME is not offered

enum class DsnRet { Unspecified, Full, Hdrs };  // RFC 3461 4.3

// RFC 3461 4.1 NOTIFY, as bits; 0 means the client did not say.
enum NotifyFlags : uint8_t {
    kNotifyNever = 1,
    kNotifySuccess = 2,
    kNotifyFailure = 4,
    kNotifyDelay = 8,
};

struct EnvelopeRecipient {
    std::string address;     // as the client wrote it (local@domain, or "postmaster")
    std::string canonical;   // from the recipient lookup; == address for relayed mail
    uint8_t notify = 0;      // NotifyFlags
    std::string orcpt_type;  // RFC 3461 4.2 addr-type ("rfc822", "utf-8"); empty: none
    std::string orcpt;       // the original recipient, xtext-decoded
};

struct Envelope {
    std::string helo;         // EHLO/HELO argument
    std::string client_ip;    // from SessionInfo
    std::string client_host;  // from SessionInfo (reverse DNS, may be empty)
    std::string protocol;     // RFC 3848 / RFC 6531: SMTP, ESMTP, ESMTPSA, UTF8SMTPS...
    bool tls = false;
    std::string tls_details;  // TlsInfo::describe(), empty without TLS
    std::string auth_user;    // empty unless authenticated
    std::string mail_from;    // empty for the null sender "<>"
    BodyType body = BodyType::SevenBit;
    bool smtputf8 = false;
    std::optional<uint64_t> size_declared;  // MAIL FROM SIZE=
    DsnRet ret = DsnRet::Unspecified;
    std::string envid;  // RFC 3461 ENVID, xtext-decoded; empty: none
    std::vector<EnvelopeRecipient> recipients;
};

}  // namespace pbx::smtp
