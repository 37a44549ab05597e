#include "common/log.hpp"

#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace pbx::log {
namespace {
const char* g_ident = "pillarbox";
bool g_stderr = false;
bool g_debug = false;

int priority(Level level) {
    switch (level) {
        case Level::Debug:
            return LOG_DEBUG;
        case Level::Info:
            return LOG_INFO;
        case Level::Warning:
            return LOG_WARNING;
        case Level::Error:
            return LOG_ERR;
    }
    return LOG_INFO;
}

const char* label(Level level) {
    switch (level) {
        case Level::Debug:
            return "debug: ";
        case Level::Info:
            return "";
        case Level::Warning:
            return "warning: ";
        case Level::Error:
            return "error: ";
    }
    return "";
}
}  // namespace

void init(const char* ident, bool to_stderr) {
    g_ident = ident;
    g_stderr = to_stderr;
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void set_stderr(bool on) {
    g_stderr = on;
}
void set_debug(bool on) {
    g_debug = on;
}

void write(Level level, std::string_view line) {
    if (level == Level::Debug && !g_debug) return;
    // A log line is one line: a peer-supplied newline must not forge a second entry.
    std::string clean;
    clean.reserve(line.size());
    for (char c : line) clean.push_back((c == '\n' || c == '\r' || c == '\0') ? ' ' : c);
    syslog(priority(level), "%s%s", label(level), clean.c_str());
    if (g_stderr) {
        std::fprintf(stderr, "%s[%d]: %s%s\n", g_ident, static_cast<int>(getpid()), label(level),
                     clean.c_str());
        std::fflush(stderr);
    }
}

}  // namespace pbx::log
