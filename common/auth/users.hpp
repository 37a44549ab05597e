// The virtual users file, pillarbox-users(5): one line per user,
//
//   name:crypt-hash:uid:gid:home:mailbox
//
// `#` comment lines and blank lines are allowed. Strict by design (this file
// decides which uid mail is written as): every field is checked, uid and gid
// are decimal and never 0, names are lower case [a-z0-9._-], a name appears
// once, and lines and entries are bounded (UsersLimits). Every error names
// file:line. The parser is pure: it takes the text, never a path.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>

#include "common/auth/textfile.hpp"
#include "common/result.hpp"

namespace pbx::auth {

enum class MailboxFormat { Maildir, Mbox };

std::string_view to_string(MailboxFormat f);

struct VirtualUser {
    std::string name;           // lower case
    std::string password_hash;  // crypt(3) string; "*" or "!..." = no password login
    uid_t uid = 0;              // never 0
    gid_t gid = 0;              // never 0
    std::string home;           // absolute
    // Absolute path: the field as written, made absolute against home when it
    // was relative, home + "/Maildir/" when it was empty. A trailing '/'
    // means Maildir (and is kept), anything else an mbox file.
    std::string mailbox;
    MailboxFormat format = MailboxFormat::Maildir;
    int line = 0;  // where it was defined, for messages

    // "*", "!", "!$6$...": the account receives mail but cannot log in.
    bool login_disabled() const;
};

struct UsersLimits {
    size_t max_line = 4096;       // bytes per line, without the '\n'
    size_t max_entries = 100000;  // users per file
    size_t max_name = 64;         // bytes of a user name
    size_t max_file = 64u << 20;  // bytes of the whole file (read_text_file)
};

// Valid user name: 1..max_name bytes of [a-z0-9._-], starting with [a-z0-9].
bool valid_user_name(std::string_view name, size_t max_name = UsersLimits{}.max_name);

class UserTable {
  public:
    UserTable() = default;  // no users (a missing users file)

    static Result<UserTable, FileError> parse(std::string_view text, std::string_view file_name,
                                              const UsersLimits& limits = {});

    // Case-insensitive: "Alice" finds "alice".
    const VirtualUser* find(std::string_view name) const;
    size_t size() const { return users_.size(); }
    bool empty() const { return users_.empty(); }
    const std::map<std::string, VirtualUser, std::less<>>& all() const { return users_; }

  private:
    std::map<std::string, VirtualUser, std::less<>> users_;
};

}  // namespace pbx::auth
