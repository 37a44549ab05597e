// Every configuration key of every program, sorted by name (a unit test checks
// the order). pillarbox.conf(5) documents this same table; keep them in step.
#include "common/config/config.hpp"

namespace pbx::config {
namespace {

constexpr KeyDef kKeys[] = {
    {"aliases_file", Type::String, "/etc/aliases",
     "aliases in /etc/aliases format (pillarbox-aliases(5))"},
    {"authd_enable", Type::Bool, "yes", "run authd (users, aliases, credentials)"},
    {"bounce_notice_recipient", Type::String, "postmaster",
     "who gets a copy of bounces that cannot be returned"},
    {"default_mailbox_format", Type::String, "maildir",
     "maildir or mbox, for users that do not name one"},
    {"delay_warning_time", Type::Duration, "4h",
     "send a delay notice (DSN Action: delayed) after this long; 0 = never"},
    {"domains", Type::List, "localhost",
     "mail domains delivered locally; everything else is remote"},
    {"imap_listen", Type::Endpoints, "0.0.0.0:143",
     "IMAP listeners (STARTTLS); empty disables them"},
    {"imaps_listen", Type::Endpoints, "0.0.0.0:993",
     "IMAP listeners with implicit TLS; empty disables them"},
    {"listen_backlog", Type::Int, "511", "listen(2) backlog of every listener"},
    {"local_delivery_concurrency", Type::Int, "20", "parallel local deliveries"},
    {"local_delivery_enable", Type::Bool, "yes", "run local-delivery (the MDA)"},
    {"log_debug", Type::Bool, "no", "log debugging detail"},
    {"maximal_backoff_time", Type::Duration, "4000s", "longest wait between delivery attempts"},
    {"maximal_queue_lifetime", Type::Duration, "5d",
     "bounce a message still undeliverable after this long"},
    {"message_size_limit", Type::Size, "50M", "largest message accepted, in bytes"},
    {"minimal_backoff_time", Type::Duration, "300s", "shortest wait between delivery attempts"},
    {"myhostname", Type::String, "",
     "this host's fully qualified name; empty = the system host name"},
    {"pop3_listen", Type::Endpoints, "0.0.0.0:110", "POP3 listeners (STLS); empty disables them"},
    {"pop3s_listen", Type::Endpoints, "0.0.0.0:995",
     "POP3 listeners with implicit TLS; empty disables them"},
    {"program_dir", Type::String, "/usr/local/libexec/pillarbox",
     "where pillarbox-master finds the programs it starts"},
    {"queue_manager_enable", Type::Bool, "yes", "run the queue-manager"},
    {"recipient_delimiter", Type::String, "+",
     "characters that separate user and detail (user+detail@domain); empty disables"},
    {"remote_delivery_enable", Type::Bool, "yes", "run remote-delivery (the outbound MTA)"},
    {"runtime_dir", Type::String, "/run/pillarbox",
     "directory of the IPC sockets (the socket chroot)"},
    {"smtp_listen", Type::Endpoints, "0.0.0.0:25", "SMTP (MTA) listeners; empty disables smtpd"},
    {"smtpd_command_timeout", Type::Duration, "300s",
     "idle time allowed while waiting for a command"},
    {"smtpd_data_timeout", Type::Duration, "600s",
     "idle time allowed while receiving message data"},
    {"smtpd_greet_pause", Type::Duration, "0s",
     "wait before the greeting; a client that talks first is refused"},
    {"smtpd_line_limit", Type::Size, "512", "longest SMTP command line, CRLF included"},
    {"smtpd_max_bad_commands", Type::Int, "20", "bad commands in one session before 421"},
    {"smtpd_max_connections", Type::Int, "200", "simultaneous SMTP sessions in total"},
    {"smtpd_max_connections_per_ip", Type::Int, "20",
     "simultaneous SMTP sessions from one client address"},
    {"smtpd_max_recipients", Type::Int, "1000", "recipients in one message"},
    {"smtpd_text_line_limit", Type::Size, "64k",
     "longest line of message text, CRLF included (RFC 5321 asks for 1000; real mail is sloppier)"},
    {"spool_dir", Type::String, "/var/spool/pillarbox", "the queue (pillarbox-spool(5))"},
    {"submission_listen", Type::Endpoints, "0.0.0.0:587",
     "submission (MSA, STARTTLS) listeners; empty disables submitd"},
    {"submissions_listen", Type::Endpoints, "0.0.0.0:465",
     "submission listeners with implicit TLS (RFC 8314)"},
    {"system_users", Type::Bool, "no",
     "system accounts (uid >= 1000) receive mail and log in with their passwords"},
    {"tls_cert_file", Type::String, "/etc/pillarbox/tls/cert.pem",
     "server certificate chain (PEM)"},
    {"tls_key_file", Type::String, "/etc/pillarbox/tls/key.pem",
     "server private key (PEM), read as root before the drop"},
    {"trusted_networks", Type::List, "",
     "client networks (CIDR) allowed to relay without AUTH; empty by default"},
    {"trusted_users", Type::List, "",
     "local users who may submit mail with any envelope sender (root always may)"},
    {"users_file", Type::String, "/etc/pillarbox/users", "virtual users (pillarbox-users(5))"},
};

}  // namespace

std::span<const KeyDef> schema() {
    return kKeys;
}

}  // namespace pbx::config
