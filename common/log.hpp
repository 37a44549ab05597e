// The one logger: syslog (journald) one line per event, optionally mirrored to
// stderr (master in the foreground, tests). Lines carry the program name and
// pid through openlog(); callers put the queue ID first: "ID: to=<...>, ...".
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace pbx::log {

enum class Level { Debug, Info, Warning, Error };

// Call once at start-up. `ident` must outlive the process (a literal).
void init(const char* ident, bool to_stderr);
void set_stderr(bool on);
void set_debug(bool on);
void write(Level level, std::string_view line);

template <class... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}

template <class... Parts>
void debug(const Parts&... parts) {
    write(Level::Debug, concat(parts...));
}
template <class... Parts>
void info(const Parts&... parts) {
    write(Level::Info, concat(parts...));
}
template <class... Parts>
void warn(const Parts&... parts) {
    write(Level::Warning, concat(parts...));
}
template <class... Parts>
void error(const Parts&... parts) {
    write(Level::Error, concat(parts...));
}

}  // namespace pbx::log
