// The one logger: syslog (journald) one line per event, optionally mirrored to
// stderr (master in the foreground, tests). Lines carry the program name and
// pid through openlog(); callers put the queue ID first: "ID: to=<...>, ...".
#pragma once

#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>

namespace pbx::log {

enum class Level { Debug, Info, Warning, Error };

// Call once at start-up. `ident` must outlive the process (a literal).
void init(const char* ident, bool to_stderr);
void set_stderr(bool on);
void set_debug(bool on);
void write(Level level, std::string_view line);

// One part of a line, formatted as std::ostream's operator<< formats it (the
// output is byte-for-byte what the old ostringstream produced) but without
// iostreams: pulling in <sstream> made every process initialise the C++ locale
// machinery (~500 KiB resident per process). An unsupported type is a compile
// error, never a silent fallback.
namespace detail {
template <class T>
inline constexpr bool kUnsupported = false;

template <class T>
void append(std::string& out, const T& part) {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_convertible_v<const T&, std::string_view>) {
        out.append(std::string_view(part));
    } else if constexpr (std::is_same_v<U, char> || std::is_same_v<U, signed char> ||
                         std::is_same_v<U, unsigned char>) {
        out.push_back(static_cast<char>(part));  // ostream prints these as characters
    } else if constexpr (std::is_same_v<U, bool>) {
        out.push_back(part ? '1' : '0');  // ostream without boolalpha
    } else if constexpr (std::is_integral_v<U>) {
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof buf, part);
        out.append(buf, r.ptr);
    } else if constexpr (std::is_floating_point_v<U>) {
        // ostream's default: %g with precision 6; to_chars(general, 6) is %.6g.
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, part, std::chars_format::general, 6);
        out.append(buf, r.ptr);
    } else if constexpr (std::is_enum_v<U> && std::is_convertible_v<U, int>) {
        // An unscoped enum prints as its number, as with ostream.
        append(out, static_cast<std::underlying_type_t<U>>(part));
    } else {
        static_assert(kUnsupported<T>, "log::concat: unsupported argument type");
    }
}
}  // namespace detail

template <class... Parts>
std::string concat(const Parts&... parts) {
    std::string out;
    (detail::append(out, parts), ...);
    return out;
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
