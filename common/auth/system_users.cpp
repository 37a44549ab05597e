#include "common/auth/system_users.hpp"

#include <pwd.h>
#include <shadow.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace pbx::auth {
namespace {

// Bounds for the NSS buffer: start at sysconf's hint, grow on ERANGE.
constexpr size_t kMinNssBuffer = 1024;
constexpr size_t kMaxNssBuffer = 1u << 20;
// Longer names cannot exist and would only cost a lookup.
constexpr size_t kMaxAccountName = 256;

size_t initial_buffer(int which) {
    long hint = sysconf(which);
    return hint > 0 ? static_cast<size_t>(hint) : kMinNssBuffer;
}

}  // namespace

bool is_regular_account(const SystemAccount& a) {
    return a.uid >= kMinSystemUserUid && a.uid != kNobodyUid && a.uid != static_cast<uid_t>(-1);
}

std::optional<SystemAccount> PasswdSystemUsers::account(std::string_view name) const {
    if (name.empty() || name.size() > kMaxAccountName || name.find('\0') != name.npos) return {};
    std::string key(name);
    std::vector<char> buf(initial_buffer(_SC_GETPW_R_SIZE_MAX));
    for (;;) {
        struct passwd pw {};
        struct passwd* result = nullptr;
        int rc = getpwnam_r(key.c_str(), &pw, buf.data(), buf.size(), &result);
        if (rc == ERANGE && buf.size() < kMaxNssBuffer) {
            buf.resize(buf.size() * 2);
            continue;
        }
        if (rc != 0 || !result) return {};
        return SystemAccount{pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir ? pw.pw_dir : ""};
    }
}

std::optional<std::string> PasswdSystemUsers::password_hash(std::string_view name) const {
    if (name.empty() || name.size() > kMaxAccountName || name.find('\0') != name.npos) return {};
    std::string key(name);
    std::vector<char> buf(kMinNssBuffer * 4);
    for (;;) {
        struct spwd sp {};
        struct spwd* result = nullptr;
        int rc = getspnam_r(key.c_str(), &sp, buf.data(), buf.size(), &result);
        if (rc == ERANGE && buf.size() < kMaxNssBuffer) {
            buf.resize(buf.size() * 2);
            continue;
        }
        if (rc != 0 || !result || !sp.sp_pwdp) return {};
        return std::string(sp.sp_pwdp);
    }
}

}  // namespace pbx::auth
