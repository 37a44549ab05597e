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
#include <sys/uio.h>

#include <algorithm>
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

// `a` then `b` in one sendmsg(), as one segment on TCP: a proxied answer
// that arrived in two reads leaves as one write (bench/RESULTS.md, POP3:
// two sends woke the client twice per RETR).
inline void write_through(StreamConnection& c, std::string_view a, std::string_view b) {
    if (b.empty()) return write_through(c, a);
    if (a.empty()) return write_through(c, b);
    if (c.closing()) return;
    if (!c.tls_active() && c.fd() >= 0 && c.output_size() == 0) {
        iovec iov[2] = {{const_cast<char*>(a.data()), a.size()},
                        {const_cast<char*>(b.data()), b.size()}};
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = 2;
        const ssize_t n = ::sendmsg(c.fd(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            const size_t sent = static_cast<size_t>(n), from_a = std::min(sent, a.size());
            a.remove_prefix(from_a);
            b.remove_prefix(sent - from_a);
        }
    }
    if (!a.empty()) c.write(a);
    if (!b.empty()) c.write(b);
}

}  // namespace pbx::event
