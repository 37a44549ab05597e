// Parsers for SMTP command lines and their arguments: the verb, MAIL FROM and
// RCPT TO with their ESMTP parameters (SIZE, BODY, SMTPUTF8, DSN's RET,
// ENVID, NOTIFY and ORCPT, AUTH=), BDAT and AUTH. Syntax only: whether a
// command is allowed now, and what a valid value means for this session
// (SIZE over the limit, AUTH= without AUTH...), is the engine's business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/smtp/address.hpp"
#include "common/smtp/envelope.hpp"

namespace pbx::smtp {

struct CommandLine {
    std::string_view verb;  // up to the first SP
    std::string_view args;  // after that SP, trailing SPs removed
};
CommandLine split_command(std::string_view line);

// True when the command line holds a byte the protocol never allows there
// (NUL, controls, DEL). Non-ASCII is left to the argument parsers.
bool has_control_characters(std::string_view line);

enum class ArgError {
    Syntax,            // 501 5.5.4 "Syntax: MAIL FROM:<address>"
    BadAddress,        // 501 5.1.7 (sender) / 5.1.3 (recipient)
    PathTooLong,       // 501 5.1.7 / 5.1.3
    LocalPartTooLong,  // 553 5.1.7 / 5.1.3
    DomainTooLong,     // 553 5.1.7 / 5.1.3
    Utf8NotAllowed,    // 553 5.6.7 (non-ASCII without SMTPUTF8)
    BadParameter,      // 555 5.5.4 (unknown, repeated or malformed parameter)
};

struct ArgProblem {
    ArgError kind;
    std::string detail;  // the offending parameter, or a short explanation
};

struct MailArgs {
    Address from;
    std::optional<uint64_t> size;  // SIZE=
    BodyType body = BodyType::SevenBit;
    bool smtputf8 = false;
    DsnRet ret = DsnRet::Unspecified;
    std::string envid;                // decoded
    std::optional<std::string> auth;  // AUTH= (RFC 4954 5), decoded; "<>" kept as is
};

struct MailOptions {
    bool esmtp = true;          // false after HELO: no parameters at all
    bool auth_offered = false;  // AUTH= only when AUTH is offered
};

// `args` is everything after "MAIL ": "FROM:<path> [params]".
Result<MailArgs, ArgProblem> parse_mail(std::string_view args, const MailOptions& options);

struct RcptArgs {
    Address to;
    uint8_t notify = 0;  // NotifyFlags
    std::string orcpt_type;
    std::string orcpt;  // decoded
};

struct RcptOptions {
    bool esmtp = true;
    bool smtputf8 = false;  // the transaction's MAIL carried SMTPUTF8
};

// `args` is everything after "RCPT ": "TO:<path> [params]".
Result<RcptArgs, ArgProblem> parse_rcpt(std::string_view args, const RcptOptions& options);

// RFC 3461 limits on parameter values (before decoding).
inline constexpr size_t kMaxEnvid = 100;
inline constexpr size_t kMaxOrcpt = 500;

struct BdatArgs {
    uint64_t size = 0;
    bool last = false;
};
// "chunk-size [SP LAST]" (RFC 3030); chunk-size at most 19 digits.
Result<BdatArgs, Unit> parse_bdat(std::string_view args);

struct AuthArgs {
    std::string_view mechanism;
    std::optional<std::string_view> initial_response;
};
// "mechanism [SP initial-response]" (RFC 4954 4).
Result<AuthArgs, Unit> parse_auth(std::string_view args);

}  // namespace pbx::smtp
