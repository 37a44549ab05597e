// Shared by the ipc unit tests: a small example protocol and frame builders.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/ipc/frame.hpp"
#include "common/log.hpp"

namespace ipctest {

using namespace pbx::ipc;

inline constexpr FieldSpec kDeliverFields[] = {
    {"id", Kind::U64, kRequired},
    {"sender", Kind::Str, kRequired},
    {"rcpt", Kind::Str, kRequired, kRepeated},
    {"note", Kind::Str},
    {"blob", Kind::Bytes},
    {"file", Kind::Fd},
    {"extra", Kind::Fd, kOptional, kRepeated},
};
inline constexpr FieldSpec kPingFields[] = {{"seq", Kind::U64, kRequired}};
inline constexpr MessageSpec kMessages[] = {
    {1, "deliver", kDeliverFields},
    {2, "ping", kPingFields},
    {3, "bye", {}},
};
inline constexpr Protocol kTest{"test", 3, kMessages, 4u << 20};
inline constexpr Protocol kTestV4{"test", 4, kMessages, 4u << 20};
inline constexpr Protocol kTiny{"test", 3, kMessages, 64};
static_assert(well_formed(kTest));
static_assert(well_formed(kTiny));

inline std::string be(uint64_t v, int n) {
    std::string s;
    for (int i = n - 1; i >= 0; --i) s.push_back(i >= 8 ? '\0' : static_cast<char>(v >> (8 * i)));
    return s;
}

// One field on the wire: index, length, value.
inline std::string field(uint16_t index, const std::string& value) {
    return be(index, 2) + be(value.size(), 4) + value;
}

struct Raw {
    uint16_t type = 2;
    std::vector<std::string> fields;
    uint8_t fds = 0;
    int count = -1;  // field count written; -1: fields.size()
    uint16_t magic = kMagic;
    uint8_t version = kWireVersion;
    std::string tail;  // inside the frame, after the fields
};

inline std::string build(const Raw& r) {
    std::string body = be(r.magic, 2) + be(r.version, 1) + be(r.fds, 1) + be(r.type, 2) +
                       be(r.count < 0 ? r.fields.size() : static_cast<size_t>(r.count), 2);
    for (const auto& f : r.fields) body += f;
    body += r.tail;
    return be(body.size(), 4) + body;
}

inline pbx::UniqueFd devnull() {
    return pbx::UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

inline bool fd_open(int fd) {
    return ::fcntl(fd, F_GETFD) >= 0;
}

// Catch2 v2 has no death tests: run fn in a child and report whether it aborted.
inline bool aborts(const std::function<void()>& fn) {
    pid_t pid = ::fork();
    if (pid == 0) {
        pbx::log::set_stderr(false);
        ::signal(SIGABRT, SIG_DFL);  // not Catch's handler: no report from the child
        fn();
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

}  // namespace ipctest
