// Write-through for a plaintext StreamConnection: the bytes go to the
// kernel in the call (one send()) when nothing is queued before them, and
// only what the socket did not take is queued through c.write(). A reply
// then costs one system call instead of a trip through the event loop (an
// EPOLLOUT wait, two epoll_ctl calls and a writev): pop3d's replies, the
// login process's proxying (bench/RESULTS.md, POP3).
//
// Only for a connection that is not in TLS and cannot be in a handshake:
// a session's socketpair, or a client connection after login (no STARTTLS
// any more). on_drained() follows only writes that had to be queued.
#pragma once

#include <sys/socket.h>

#include <string_view>

#include "common/event/stream.hpp"

namespace pbx::event {

inline void write_through(StreamConnection& c, std::string_view bytes) {
    if (bytes.empty() || c.closing()) return;
    if (!c.tls_active() && c.fd() >= 0 && c.output_size() == 0) {
        const ssize_t n = ::send(c.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) bytes.remove_prefix(static_cast<size_t>(n));
        // EAGAIN, or an error that the bufferevent meets and reports itself.
    }
    if (!bytes.empty()) c.write(bytes);
}

}  // namespace pbx::event
