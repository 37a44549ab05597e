// The IPC graph: which program may connect to which channel (STYLE item 4,
// OpenSMTPD's peer matrix). This table is the one place that says it; the
// server side of every channel checks each client's SO_PEERCRED uid against
// it (ipc::Server does), and DESIGN.md §2/§3 mirror it:
//
//   channel (under runtime_dir)   server           clients (access)
//   control/control.sock          master           root (full); any user (read-only status)
//   queue/enqueue.sock            queue-manager    smtpd, submitd, root (full);
//                                                  any user: sendmail, mailq (full, as that uid)
//   auth/auth.sock                authd            smtpd, submitd, login, queue-manager,
//                                                  local-delivery and master (root)
//   local/local.sock              local-delivery   queue-manager
//   remote/remote.sock            remote-delivery  queue-manager
//   session/session.sock          master           login (pop3-login, imap-login: start
//                                                  a session with an authd ticket)
//
// root (uid 0) may connect to every channel: the master and local-delivery's
// parent run as root, and so does an administrator. A uid is mapped to a
// program through the system users pbx-smtpd, pbx-submit, pbx-queue,
// pbx-remote, pbx-auth and pbx-login, resolved once at start-up (before any
// chroot). Every other uid is "any user" (tools, pop3d/imapd sessions).
//
// Each channel is a directory holding one socket, so that the directory's
// owner and mode can gate who reaches the socket at all; paths are relative to
// the runtime directory, so a program chrooted there uses the same names.
#pragma once

#include <sys/types.h>

#include <map>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::ipc {

enum class Program : uint8_t {
    Root,  // uid 0: master, local-delivery's parent, an administrator
    Smtpd,
    Submitd,
    QueueManager,
    RemoteDelivery,
    Authd,
    Login,    // pop3-login, imap-login
    AnyUser,  // any other uid: sendmail, mailq, pillarbox, sessions
};

std::string_view to_string(Program p);

enum class Channel : uint8_t { Control, Enqueue, Auth, Local, Remote, Session };

enum class Access : uint8_t { Denied, ReadOnly, Full };

std::string_view to_string(Access a);

// Channel directories and socket names, relative to runtime_dir.
inline constexpr std::string_view kControlDir = "control";
inline constexpr std::string_view kControlSocket = "control/control.sock";
inline constexpr std::string_view kQueueDir = "queue";
inline constexpr std::string_view kEnqueueSocket = "queue/enqueue.sock";
inline constexpr std::string_view kAuthDir = "auth";
inline constexpr std::string_view kAuthSocket = "auth/auth.sock";
inline constexpr std::string_view kLocalDir = "local";
inline constexpr std::string_view kLocalSocket = "local/local.sock";
inline constexpr std::string_view kRemoteDir = "remote";
inline constexpr std::string_view kRemoteSocket = "remote/remote.sock";
inline constexpr std::string_view kSessionDir = "session";
inline constexpr std::string_view kSessionSocket = "session/session.sock";

struct ClientRule {
    Program who;
    Access access;
};

struct ChannelSpec {
    Channel id;
    std::string_view name;    // for logs: "enqueue"
    std::string_view dir;     // relative to runtime_dir
    std::string_view socket;  // relative to runtime_dir, inside `dir`
    Program server;
    std::string_view server_program;  // the program that listens
    // Who may connect besides root. A rule for AnyUser applies to every uid
    // that no other rule names.
    std::span<const ClientRule> clients;
    // The socket must be connectable by any local user (mode 0666 in a 0755
    // directory); otherwise only by the listed programs' users.
    bool any_local_user;
};

// The table itself, one row per channel.
std::span<const ChannelSpec> channels();
const ChannelSpec& channel_spec(Channel c);

// "queue/enqueue.sock" when runtime_dir is empty (a program chrooted into the
// runtime directory, or one that chdir'ed there), else runtime_dir + "/" + it.
std::string socket_path(std::string_view runtime_dir, Channel c);

// The system user each program runs as (pbx-smtpd, ...).
struct SystemUser {
    Program program;
    std::string_view user;
};
std::span<const SystemUser> system_users();

class PeerTable {
  public:
    // Tests and special set-ups: the uid of each program given directly.
    explicit PeerTable(std::map<uid_t, Program> uids);
    // Resolves the system users with getpwnam(); call before any chroot. A
    // user that does not exist maps nothing (its program is then refused
    // everywhere); two programs sharing a uid, or a pbx user with uid 0, is
    // an error since it would defeat the separation.
    static Result<PeerTable> from_system(std::span<const SystemUser> users = system_users());

    Program program_of(uid_t uid) const;
    Access access(Channel c, uid_t uid) const;

  private:
    std::map<uid_t, Program> uids_;
};

}  // namespace pbx::ipc
