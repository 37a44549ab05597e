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
};

inline const ProgramDef kPrograms[] = {
    {"authd", "authd_enable", {}},
    {"queue-manager", "queue_manager_enable", {}},
    {"local-delivery", "local_delivery_enable", {}},
    {"remote-delivery", "remote_delivery_enable", {}},
    {"smtpd", "", {"smtp"}},
    {"submitd", "", {"submission", "submissions"}},
    {"pop3-login", "", {"pop3", "pop3s"}},
    {"imap-login", "", {"imap", "imaps"}},
};

}  // namespace pbx::master
