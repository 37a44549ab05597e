// Expansion of one recipient into its delivery targets: authd's answer to
// `resolve` (common/ipc/auth_msgs.hpp), a pure function of the tables, the
// aliases file's owner and mode, and an include-file reader (faked in tests).
//
// Rules (pillarbox-aliases(5) and authd(8) describe them for administrators):
//  - Aliases expand recursively (depth ExpandLimits::max_depth; an alias met
//    again inside itself is a loop). `\name` is the user `name`, without
//    alias expansion and without its .forward.
//  - A user of the users file is a Mailbox target; a system account (with
//    system_users) is a Mailbox target (/var/mail/NAME, or home_mailbox below
//    its home) with `dotforward` set: local-delivery then reads ~/.forward as
//    that user.
//  - An address in a domain that is not ours is a Forward target:
//    local-delivery re-submits the message to it (doc/design-notes.md).
//  - `:include:/path`, `|command` and `/file` are honoured only from an
//    aliases file owned by root and not writable by group or others. An
//    included file is read here (bounded); commands and files inside it also
//    need the included file itself to be root's and not group/other-writable
//    (its plain addresses are honoured either way, as sendmail does).
//  - Commands and files from aliases run as `default_privs` (an account name,
//    default nobody; never uid 0), like Postfix.
//  - The first problem ends the expansion: a recipient is delivered
//    completely or not at all. Identical targets are delivered once.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/auth/aliases.hpp"
#include "common/auth/resolve.hpp"
#include "common/auth/system_users.hpp"
#include "common/auth/textfile.hpp"
#include "common/auth/users.hpp"
#include "common/result.hpp"

namespace pbx::auth {

enum class TargetKind { Mailbox, Pipe, File, Forward };
std::string_view to_string(TargetKind k);  // mailbox | pipe | file | forward

struct DeliveryTarget {
    TargetKind kind = TargetKind::Mailbox;
    // Who the delivery runs as (Mailbox, Pipe, File); empty/0 for Forward.
    std::string user;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
    // Mailbox: the mailbox path and format; dotforward: look at ~/.forward.
    std::string mailbox;
    MailboxFormat format = MailboxFormat::Maildir;
    bool dotforward = false;
    // Pipe: the command line; File: the path; Forward: the address.
    std::string target;
};

struct ExpandLimits {
    int max_depth = 10;            // nested aliases and includes
    size_t max_targets = 100;      // targets of one recipient (fits a frame)
    size_t max_include = 1 << 20;  // bytes of one :include: file
};

struct ExpandContext {
    const ResolverSettings& settings;
    const UserTable& users;
    const AliasMap& aliases;
    FileStamp aliases_stamp;    // owner and mode of the aliases file in use
    const SystemUsers& system;  // system_users accounts (may be NoSystemUsers)
    std::string default_privs = "nobody";
    // Where default_privs is looked up: the passwd database even when
    // system_users is off (nullptr: `system`).
    const SystemUsers* privs_accounts = nullptr;
    // Reads an :include: file (the real one: read_text_file).
    std::function<Result<ReadFile, Error>(const std::string& path, size_t max)> read_include;
};

enum class ExpandStatus { Found, Unknown, TempFail, Loop, Refused, Unsupported };
std::string_view to_string(
    ExpandStatus s);  // found | unknown | tempfail | loop | refused | unsupported

struct Expansion {
    ExpandStatus status = ExpandStatus::Found;
    std::string reason;  // not Found: why (for the log and the bounce)
    std::vector<DeliveryTarget> targets;
};

Expansion expand_recipient(std::string_view address, const ExpandContext& ctx,
                           const ExpandLimits& limits = {});

}  // namespace pbx::auth
