// Password verification with crypt(3) (libxcrypt: yescrypt "$y$",
// sha512-crypt "$6$", bcrypt "$2b$", ...), for virtual users (the users file)
// and, with system_users = yes, system accounts (shadow).
//
// Timing: every verification runs exactly one crypt() call, of the real hash
// or of a dummy hash when the user is unknown, cannot log in or the input is
// over the limits, and compares the result in constant time, so the answer's
// timing does not say whether a user exists. The growing delays after
// failures are throttle.hpp's business.
#pragma once

#include <string>
#include <string_view>

#include "common/auth/resolve.hpp"
#include "common/auth/system_users.hpp"
#include "common/auth/users.hpp"
#include "common/result.hpp"

namespace pbx::auth {

struct PasswordLimits {
    size_t max_password = 1024;  // bytes; longer ones fail (after the dummy crypt)
    size_t max_user = 320;       // bytes of the login name, domain included
};

// Equal contents, in time that depends only on the lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

// True when crypt(password, hash) reproduces hash. False for a password with
// a NUL, an unsupported or malformed hash, and locked hashes ("*", "!...").
bool crypt_verify(std::string_view password, std::string_view hash);

// A new hash of `password` with the scheme of `prefix` ("$y$", "$6$",
// "$2b$"; empty: libcrypt's preferred scheme) and a random salt.
Result<std::string> crypt_hash(std::string_view password, std::string_view prefix = {});

enum class VerifyStatus { Ok, Fail, TempFail };
std::string_view to_string(VerifyStatus s);

struct VerifyOutcome {
    VerifyStatus status = VerifyStatus::Fail;
    std::string user;    // canonical login name (lower case, without our domain)
    std::string reason;  // for the log only, never for the client
};

class PasswordChecker {
  public:
    // dummy_hash: what unknown users are checked against (make_dummy_hash()).
    explicit PasswordChecker(std::string dummy_hash, PasswordLimits limits = {})
        : dummy_(std::move(dummy_hash)), limits_(limits) {}

    // A hash of random bytes with the preferred scheme, so that checking it
    // costs what checking a real user's password costs.
    static Result<std::string> make_dummy_hash();

    // `user` is "name" or "name@domain" with one of our domains, any case.
    // Virtual users first; then system accounts (uid >= 1000, not nobody)
    // when settings.system_users. TempFail only when a system account exists
    // but its shadow entry cannot be read.
    VerifyOutcome verify(std::string_view user, std::string_view password,
                         const ResolverSettings& settings, const UserTable& users,
                         const SystemUsers& system) const;

  private:
    VerifyOutcome fail(std::string user, std::string reason, std::string_view password) const;

    std::string dummy_;
    PasswordLimits limits_;
};

}  // namespace pbx::auth
