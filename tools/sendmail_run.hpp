// The glue of sendmail(1) between its pure parts (mail_input, mail_headers)
// and its I/O (submit): what the normal path and -bs share.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/config/config.hpp"
#include "common/smtp/mail_headers.hpp"
#include "tools/mail_input.hpp"
#include "tools/submit.hpp"

namespace pbx::mail {

// Who runs us and where things are; built once in main().
struct Context {
    std::string program;  // "sendmail", "mailq" or "newaliases": prefixes messages
    std::string config_path;
    config::Config config;
    std::string myhostname;  // myhostname, or the system host name
    uid_t uid = 0;           // getuid(): only for our own defaults and messages
    std::string login;       // the uid's passwd name; empty when it has none
    std::string gecos_name;  // the passwd full name (GECOS up to the first ',')
    bool verbose = false;
    uint64_t size_limit = 0;  // effective_size_limit(message_size_limit)
};

// The header fix-up values of this process and moment (Date:, Message-ID:,
// From: address and full name) for prepare_message().
PrepareInput prepare_input(const Context& ctx, const Options& o);

struct Delivery {
    int exit_code = kExOk;
    std::string queue_id;  // when queued by the queue-manager
    bool dropped = false;  // left in maildrop/ by postdrop instead
    std::string text;      // why it failed, for stderr
    std::string refusal;   // the queue-manager's own text ("5.7.1 ..."), if it refused
};

// Queues the message: through the queue-manager, or when that does not
// answer, through postdrop(8) into maildrop/.
Delivery deliver(const Context& ctx, const Submission& s);

// True when the string holds an octet >= 0x80.
bool has_non_ascii(std::string_view s);

// -bs: an SMTP session on stdin/stdout; returns the exit code.
int run_smtp_session(const Context& ctx, const Options& o);

}  // namespace pbx::mail
