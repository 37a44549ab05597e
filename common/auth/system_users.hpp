// The system account database (passwd, shadow) behind an interface, so that
// recipient resolution and password checks are pure functions in tests.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace pbx::auth {

struct SystemAccount {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
};

class SystemUsers {
  public:
    virtual ~SystemUsers() = default;
    // getpwnam(): the account, or nullopt when there is none (or on error).
    virtual std::optional<SystemAccount> account(std::string_view name) const = 0;
    // getspnam(): the crypt(3) hash of the account's password; nullopt when
    // there is none or it cannot be read (no shadow group).
    virtual std::optional<std::string> password_hash(std::string_view name) const = 0;
};

// The real thing: getpwnam_r/getspnam_r (NSS, so LDAP accounts work too).
class PasswdSystemUsers final : public SystemUsers {
  public:
    std::optional<SystemAccount> account(std::string_view name) const override;
    std::optional<std::string> password_hash(std::string_view name) const override;
};

// No system users at all (system_users = no, and tests).
class NoSystemUsers final : public SystemUsers {
  public:
    std::optional<SystemAccount> account(std::string_view) const override { return {}; }
    std::optional<std::string> password_hash(std::string_view) const override { return {}; }
};

// Accounts below this uid are system accounts (daemon, bin, mail, ...): mail
// for them goes through aliases, never straight into their home directory.
inline constexpr uid_t kMinSystemUserUid = 1000;
// nobody/nogroup (65534) is a system account too, whatever its number.
inline constexpr uid_t kNobodyUid = 65534;

// A system account that may receive mail and log in directly.
bool is_regular_account(const SystemAccount& a);

}  // namespace pbx::auth
