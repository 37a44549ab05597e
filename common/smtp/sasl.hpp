// The server side of SMTP AUTH (RFC 4954) for the PLAIN (RFC 4616) and LOGIN
// mechanisms: strict base64, decoding of the credentials, and the small
// challenge/response exchange. Verifying the credentials is authd's job; the
// engine hands them to the glue in an Authenticate action.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::smtp::sasl {

// Strict RFC 4648 base64: length a multiple of 4, only the standard alphabet,
// "=" only as final padding, unused bits zero. "" decodes to "".
Result<std::string, Unit> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

enum class Mechanism { Plain, Login };
std::optional<Mechanism> parse_mechanism(std::string_view name);  // case-insensitive
std::string_view to_string(Mechanism m);
// What EHLO advertises after "AUTH ".
inline constexpr std::string_view kAdvertised = "PLAIN LOGIN";

struct Credentials {
    std::string authzid;  // PLAIN only; empty when not given
    std::string authcid;  // the user name
    std::string password;
};

enum class SaslError {
    Cancelled,  // the client sent "*"            → 501 5.0.0
    BadBase64,  // not strict base64              → 501 5.5.2
    Malformed,  // decodes, but not PLAIN/LOGIN   → 501 5.5.2
};

// message = [authzid] NUL authcid NUL passwd (RFC 4616 2); authcid and
// password non-empty, no further NUL, valid UTF-8.
Result<Credentials, SaslError> decode_plain(std::string_view message);

// One exchange. start() takes the AUTH command's optional initial response
// ("=" stands for an empty one); respond() takes each continuation line.
class Exchange {
  public:
    struct Step {
        enum class Kind { Challenge, Done, Failed } kind;
        std::string challenge;  // base64, for "334 <challenge>"
        SaslError error = SaslError::Malformed;
    };

    explicit Exchange(Mechanism mechanism) : mechanism_(mechanism) {}

    Step start(std::optional<std::string_view> initial_response);
    Step respond(std::string_view line);

    Mechanism mechanism() const { return mechanism_; }
    const Credentials& credentials() const { return credentials_; }

  private:
    Step take(std::string_view decoded);

    Mechanism mechanism_;
    int step_ = 0;  // LOGIN: 0 wants the user name, 1 the password
    Credentials credentials_;
};

}  // namespace pbx::smtp::sasl
