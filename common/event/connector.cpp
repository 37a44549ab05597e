#include "common/event/connector.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <cstring>

namespace pbx::event {

Result<sockaddr_storage> make_sockaddr(const std::string& ip, uint16_t port, socklen_t& len) {
    sockaddr_storage ss{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof(sockaddr_in);
        return ss;
    }
    if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof(sockaddr_in6);
        return ss;
    }
    return fail("not an IP address: " + ip);
}

Connector::Connector(event_base* base, DoneFn done) : base_(base), done_(std::move(done)) {}

Connector::~Connector() = default;

void Connector::connect(const std::string& ip, uint16_t port, std::chrono::milliseconds timeout) {
    socklen_t len = 0;
    auto addr = make_sockaddr(ip, port, len);
    int err = 0;
    std::string what;
    if (!addr) {
        pending_error_ = addr.error();
    } else {
        fd_ = UniqueFd(::socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd_) {
            err = errno;
            what = "socket";
        } else if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&*addr), len) != 0 &&
                   errno != EINPROGRESS) {
            err = errno;
            what = "connect";
        }
        if (err) pending_error_ = Error::from_errno(what, err);
    }
    failed_early_ = !addr || err != 0;
    // Even an immediate failure is reported from the loop.
    ev_.reset(event_new(base_, failed_early_ ? -1 : fd_.get(), failed_early_ ? 0 : EV_WRITE,
                        on_event, this));
    if (!ev_) {
        pending_error_ = Error{"event_new failed", 0};
        failed_early_ = true;
        return;  // nothing can report it: the caller's timeout must (never happens in practice)
    }
    if (failed_early_) {
        event_active(ev_.get(), EV_TIMEOUT, 0);
        return;
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    event_add(ev_.get(), &tv);
}

void Connector::on_event(evutil_socket_t fd, short what, void* self) noexcept {
    auto* c = static_cast<Connector*>(self);
    if (c->failed_early_) return c->finish(Err{c->pending_error_});
    if (what & EV_TIMEOUT) return c->finish(fail("connection timed out"));
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return c->finish(fail_errno("connect", err));
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->finish(std::move(c->fd_));
}

void Connector::finish(Result<UniqueFd> r) {
    ev_.reset();
    fd_.reset();
    DoneFn done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(r));  // may destroy *this
}

}  // namespace pbx::event
