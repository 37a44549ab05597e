// The contract between pillarbox-master and the programs it starts (STYLE
// item 3; Postfix master_proto.h, Dovecot master-interface.h). Everything a
// child inherits is listed here; nothing else crosses exec.
//
// File descriptors (systemd socket-activation convention, sd_listen_fds(3)):
//   3 .. 3+LISTEN_FDS-1   listening sockets, already bound and listening by the
//                         master; the child never binds a network port.
//   kConfigFd (after the listeners: 3+LISTEN_FDS)
//                         a read-only memfd holding the exact configuration
//                         text the master checked, so a child never reads a
//                         newer, unchecked file, and chrooted children need
//                         no file access at all.
// Environment (the master clears everything else):
//   LISTEN_PID      the child's own pid (set between fork and exec)
//   LISTEN_FDS      number of listening sockets
//   LISTEN_FDNAMES  colon-separated names, one per socket (kListenerNames)
//   PBX_CONFIG_FD   the config memfd's number
//   PBX_CONFIG      the path the config came from (for messages only)
//   PBX_SERVICE     the program's name as the master knows it
//   PBX_GENERATION  the master's config generation (bumped on each reload)
//   PBX_FOREGROUND  "1" when logs should also go to stderr
//   PBX_DEBUG       "1" for debug logging
// Signals: SIGTERM asks a child to stop (finish what it can quickly, exit 0);
// the master escalates to SIGKILL after kStopGraceSeconds.
#pragma once

#include <string_view>

namespace pbx::master_interface {

inline constexpr int kFirstListenFd = 3;  // SD_LISTEN_FDS_START
inline constexpr int kStopGraceSeconds = 5;

inline constexpr std::string_view kEnvListenPid = "LISTEN_PID";
inline constexpr std::string_view kEnvListenFds = "LISTEN_FDS";
inline constexpr std::string_view kEnvListenFdNames = "LISTEN_FDNAMES";
inline constexpr std::string_view kEnvConfigFd = "PBX_CONFIG_FD";
inline constexpr std::string_view kEnvConfigPath = "PBX_CONFIG";
inline constexpr std::string_view kEnvService = "PBX_SERVICE";
inline constexpr std::string_view kEnvGeneration = "PBX_GENERATION";
inline constexpr std::string_view kEnvForeground = "PBX_FOREGROUND";
inline constexpr std::string_view kEnvDebug = "PBX_DEBUG";

// Listener names as they appear in LISTEN_FDNAMES, with their config keys.
struct ListenerKind {
    std::string_view name;
    std::string_view config_key;
    bool implicit_tls;
};
inline constexpr ListenerKind kListenerKinds[] = {
    {"smtp", "smtp_listen", false},
    {"submission", "submission_listen", false},
    {"submissions", "submissions_listen", true},
    {"pop3", "pop3_listen", false},
    {"pop3s", "pop3s_listen", true},
    {"imap", "imap_listen", false},
    {"imaps", "imaps_listen", true},
};

}  // namespace pbx::master_interface
