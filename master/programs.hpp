// The programs pillarbox-master supervises, in start order. A program runs
// when its switch is on (or, for listeners, when it has any listener
// configured) and its executable exists in program_dir.
#pragma once

#include <initializer_list>
#include <string_view>

namespace pbx::master {

struct ProgramDef {
    std::string_view name;
    std::string_view enable_key;  // a Bool key; empty: enabled by its listeners
    std::initializer_list<std::string_view> listeners;  // master_interface kListenerKinds names
    // An Int key: how many instances share the program's listeners (each
    // accepts from the same sockets; the kernel hands each connection to
    // one of them). Empty: one.
    std::string_view processes_key = {};
};

inline const ProgramDef kPrograms[] = {
    {"authd", "authd_enable", {}},
    {"queue-manager", "queue_manager_enable", {}},
    {"local-delivery", "local_delivery_enable", {}},
    {"remote-delivery", "remote_delivery_enable", {}},
    {"smtpd", "", {"smtp"}},
    {"submitd", "", {"submission", "submissions"}},
    {"pop3-login", "", {"pop3", "pop3s"}, "pop3_login_processes"},
    {"imap-login", "", {"imap", "imaps"}, "imap_login_processes"},
};

}  // namespace pbx::master
