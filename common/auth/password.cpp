#include "common/auth/password.hpp"

#include <crypt.h>

#include <memory>
#include <random>

namespace pbx::auth {
namespace {

// struct crypt_data is ~32 KiB: on the heap, zeroed as crypt_rn requires.
Result<std::string> run_crypt(std::string_view password, std::string_view setting) {
    if (password.find('\0') != std::string_view::npos) return fail("password contains NUL");
    if (setting.find('\0') != std::string_view::npos) return fail("hash contains NUL");
    auto data = std::make_unique<crypt_data>();
    std::string phrase(password), salt(setting);
    const char* out = crypt_rn(phrase.c_str(), salt.c_str(), data.get(), sizeof(crypt_data));
    // Scrub our copy of the password; crypt_data is scrubbed on the way out.
    for (char& c : phrase) *static_cast<volatile char*>(&c) = 0;
    if (!out || out[0] == '*') {
        std::fill_n(reinterpret_cast<volatile char*>(data.get()), sizeof(crypt_data), 0);
        return fail("crypt failed (unsupported or malformed hash)");
    }
    std::string result(out);
    std::fill_n(reinterpret_cast<volatile char*>(data.get()), sizeof(crypt_data), 0);
    return result;
}

bool locked(std::string_view hash) {
    return hash.empty() || hash[0] == '*' || hash[0] == '!';
}

}  // namespace

std::string_view to_string(VerifyStatus s) {
    switch (s) {
        case VerifyStatus::Ok:
            return "ok";
        case VerifyStatus::Fail:
            return "fail";
        case VerifyStatus::TempFail:
            return "tempfail";
    }
    return "?";
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

bool crypt_verify(std::string_view password, std::string_view hash) {
    if (locked(hash)) return false;
    auto out = run_crypt(password, hash);
    return out && constant_time_equal(*out, hash);
}

Result<std::string> crypt_hash(std::string_view password, std::string_view prefix) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    std::string pfx(prefix);
    // NULL random bytes: libcrypt reads them from the kernel itself.
    if (!crypt_gensalt_rn(pfx.empty() ? nullptr : pfx.c_str(), 0, nullptr, 0, setting,
                          sizeof setting))
        return fail_errno("crypt_gensalt");
    return run_crypt(password, setting);
}

Result<std::string> PasswordChecker::make_dummy_hash() {
    std::random_device rd;
    std::string random;
    for (int i = 0; i < 24; ++i) random += static_cast<char>('a' + rd() % 26);
    return crypt_hash(random);
}

VerifyOutcome PasswordChecker::fail(std::string user, std::string reason,
                                    std::string_view password) const {
    // Same cost as a real check; the result is thrown away.
    (void)crypt_verify(password.substr(0, limits_.max_password), dummy_);
    return VerifyOutcome{VerifyStatus::Fail, std::move(user), std::move(reason)};
}

VerifyOutcome PasswordChecker::verify(std::string_view user, std::string_view password,
                                      const ResolverSettings& settings, const UserTable& users,
                                      const SystemUsers& system) const {
    if (user.empty() || user.size() > limits_.max_user) return fail("", "bad user name", password);
    std::string name = ascii_lower(user);
    if (size_t at = name.rfind('@'); at != std::string::npos) {
        if (!settings.is_local_domain(name.substr(at + 1)))
            return fail(name, "not one of our domains", password);
        name.resize(at);
    }
    for (char c : name) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f || c == ':') return fail(name, "bad user name", password);
    }
    if (name.empty()) return fail(name, "bad user name", password);
    if (password.size() > limits_.max_password) return fail(name, "password too long", password);
    if (password.empty()) return fail(name, "empty password", password);

    if (const VirtualUser* u = users.find(name)) {
        if (u->login_disabled()) return fail(name, "login disabled", password);
        if (crypt_verify(password, u->password_hash)) return {VerifyStatus::Ok, u->name, {}};
        return {VerifyStatus::Fail, u->name, "bad password"};
    }
    if (settings.system_users) {
        if (auto acct = system.account(name); acct && is_regular_account(*acct)) {
            auto hash = system.password_hash(acct->name);
            if (!hash) {
                (void)crypt_verify(password, dummy_);
                return {VerifyStatus::TempFail, acct->name, "cannot read the shadow entry"};
            }
            if (locked(*hash)) return fail(acct->name, "login disabled", password);
            if (crypt_verify(password, *hash)) return {VerifyStatus::Ok, acct->name, {}};
            return {VerifyStatus::Fail, acct->name, "bad password"};
        }
    }
    return fail(name, "unknown user", password);
}

}  // namespace pbx::auth
