#include "common/event/acceptor.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "common/event/cidr.hpp"
#include "common/log.hpp"

namespace pbx::event {

PeerAddress peer_address(const sockaddr* sa, socklen_t len) {
    PeerAddress p;
    if (!sa) return p;
    char buf[INET6_ADDRSTRLEN] = {};
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        p.ip = buf;
        p.port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
        // ::ffff:192.0.2.1 → 192.0.2.1, so one client counts once.
        auto ip = parse_ip(buf);
        p.ip = ip ? ip->str() : std::string(buf);
        p.port = ntohs(in6->sin6_port);
    }
    return p;
}

// ---- limiter ---------------------------------------------------------------

ConnectionSlot& ConnectionSlot::operator=(ConnectionSlot&& o) noexcept {
    if (this != &o) {
        reset();
        limiter_ = std::move(o.limiter_);
        ip_ = std::move(o.ip_);
    }
    return *this;
}

void ConnectionSlot::reset() {
    if (limiter_) limiter_->release(ip_);
    limiter_.reset();
}

std::pair<ConnectionSlot, LimitHit> ConnectionLimiter::try_acquire(const std::string& ip) {
    if (limits_.max_total > 0 && total_ >= limits_.max_total)
        return {ConnectionSlot{}, LimitHit::Total};
    auto it = per_ip_.find(ip);
    const size_t have = it == per_ip_.end() ? 0 : it->second;
    if (limits_.max_per_ip > 0 && have >= limits_.max_per_ip)
        return {ConnectionSlot{}, LimitHit::PerIp};
    ++total_;
    ++per_ip_[ip];
    return {ConnectionSlot(shared_from_this(), ip), LimitHit::None};
}

size_t ConnectionLimiter::from(const std::string& ip) const {
    auto it = per_ip_.find(ip);
    return it == per_ip_.end() ? 0 : it->second;
}

void ConnectionLimiter::release(const std::string& ip) {
    if (total_ > 0) --total_;
    auto it = per_ip_.find(ip);
    if (it == per_ip_.end()) return;
    if (--it->second == 0) per_ip_.erase(it);
}

// ---- acceptor --------------------------------------------------------------

Acceptor::Acceptor(std::shared_ptr<ConnectionLimiter> limiter, Options options, AcceptFn on_accept,
                   RefuseFn on_refuse)
    : limiter_(std::move(limiter)),
      options_(std::move(options)),
      on_accept_(std::move(on_accept)),
      on_refuse_(std::move(on_refuse)) {}

Acceptor::~Acceptor() = default;

Result<std::unique_ptr<Acceptor>> Acceptor::create(event_base* base, int listen_fd,
                                                   std::shared_ptr<ConnectionLimiter> limiter,
                                                   Options options, AcceptFn on_accept,
                                                   RefuseFn on_refuse) {
    if (listen_fd < 0) return fail("Acceptor: invalid listening fd");
    if (!limiter) return fail("Acceptor: no connection limiter");
    // libevent accepts in a loop until EAGAIN: a blocking listener would hang
    // the whole process on the first spurious wake-up.
    const int flags = ::fcntl(listen_fd, F_GETFL);
    if (flags < 0 || ::fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return fail_errno("fcntl O_NONBLOCK on the listening socket");
    std::unique_ptr<Acceptor> a(new Acceptor(std::move(limiter), std::move(options),
                                             std::move(on_accept), std::move(on_refuse)));
    a->resume_.reset(evtimer_new(base, resume_cb, a.get()));
    if (!a->resume_) return fail("evtimer_new failed");
    // Backlog 0: the master already called listen(). No LEV_OPT_CLOSE_ON_FREE:
    // the fd belongs to the ServiceContext.
    a->listener_.reset(
        evconnlistener_new(base, accept_cb, a.get(), LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd));
    if (!a->listener_) return fail("evconnlistener_new failed");
    evconnlistener_set_error_cb(a->listener_.get(), error_cb);
    return a;
}

void Acceptor::accept_cb(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int len,
                         void* self) noexcept {
    auto* a = static_cast<Acceptor*>(self);
    UniqueFd client(fd);
    PeerAddress peer = peer_address(sa, static_cast<socklen_t>(len));
    auto [slot, hit] = a->limiter_->try_acquire(peer.ip);
    if (hit != LimitHit::None) {
        ++a->refused_;
        if (!a->options_.refusal.empty()) {
            // The socket buffer of a fresh connection is empty: a short reply
            // fits without waiting; if not, the client gets only the close.
            (void)::send(client.get(), a->options_.refusal.data(), a->options_.refusal.size(),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        client.reset();
        if (a->on_refuse_) {
            auto refuse = a->on_refuse_;
            refuse(peer, hit);
        }
        return;
    }
    ++a->accepted_;
    // Copied: the handler may destroy the Acceptor.
    auto accept = a->on_accept_;
    accept(std::move(client), peer, std::move(slot));
}

void Acceptor::error_cb(evconnlistener* l, void* self) noexcept {
    auto* a = static_cast<Acceptor*>(self);
    const int e = EVUTIL_SOCKET_ERROR();
    log::warn("accept failed: ", std::strerror(e), "; pausing for ",
              a->options_.error_pause.count(), " ms");
    evconnlistener_disable(l);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(a->options_.error_pause.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((a->options_.error_pause.count() % 1000) * 1000);
    event_add(a->resume_.get(), &tv);
}

void Acceptor::resume_cb(evutil_socket_t, short, void* self) noexcept {
    auto* a = static_cast<Acceptor*>(self);
    if (a->listener_) evconnlistener_enable(a->listener_.get());
}

}  // namespace pbx::event
