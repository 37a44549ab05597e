// Accepting clients on a listening socket inherited from pillarbox-master,
// with the total and per-client-address connection limits every listener
// enforces (smtpd_max_connections, smtpd_max_connections_per_ip, and their
// kin for the other listeners).
//
// The listening fd stays owned by the ServiceContext (LEV_OPT_CLOSE_ON_FREE
// is off): destroying an Acceptor stops accepting and closes nothing.
#pragma once

#include <event2/listener.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/c_ptr.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::event {

struct PeerAddress {
    std::string ip;  // "192.0.2.1", "2001:db8::1" (v4-mapped shown as IPv4); "" for AF_UNIX
    uint16_t port = 0;
};
PeerAddress peer_address(const sockaddr* sa, socklen_t len);

struct ConnectionLimits {
    size_t max_total = 0;   // 0: unlimited
    size_t max_per_ip = 0;  // 0: unlimited
};

class ConnectionLimiter;

// One counted connection; destroying (or reset()ing) it gives the place back.
class ConnectionSlot {
  public:
    ConnectionSlot() = default;
    ConnectionSlot(ConnectionSlot&& o) noexcept
        : limiter_(std::move(o.limiter_)), ip_(std::move(o.ip_)) {}
    ConnectionSlot& operator=(ConnectionSlot&& o) noexcept;
    ConnectionSlot(const ConnectionSlot&) = delete;
    ConnectionSlot& operator=(const ConnectionSlot&) = delete;
    ~ConnectionSlot() { reset(); }
    void reset();
    bool held() const { return limiter_ != nullptr; }

  private:
    friend class ConnectionLimiter;
    ConnectionSlot(std::shared_ptr<ConnectionLimiter> l, std::string ip)
        : limiter_(std::move(l)), ip_(std::move(ip)) {}
    std::shared_ptr<ConnectionLimiter> limiter_;
    std::string ip_;
};

enum class LimitHit { None, Total, PerIp };

// The counters, shared by every Acceptor of a process (a service with an
// IPv4 and an IPv6 listener has one total).
class ConnectionLimiter : public std::enable_shared_from_this<ConnectionLimiter> {
  public:
    static std::shared_ptr<ConnectionLimiter> make(ConnectionLimits limits) {
        return std::shared_ptr<ConnectionLimiter>(new ConnectionLimiter(limits));
    }
    // A slot, or which limit refused it.
    std::pair<ConnectionSlot, LimitHit> try_acquire(const std::string& ip);
    size_t total() const { return total_; }
    size_t from(const std::string& ip) const;
    const ConnectionLimits& limits() const { return limits_; }

  private:
    friend class ConnectionSlot;
    explicit ConnectionLimiter(ConnectionLimits limits) : limits_(limits) {}
    void release(const std::string& ip);
    ConnectionLimits limits_;
    size_t total_ = 0;
    std::map<std::string, size_t, std::less<>> per_ip_;
};

class Acceptor {
  public:
    // A connection within the limits: the handler owns fd and slot from here.
    using AcceptFn = std::function<void(UniqueFd fd, const PeerAddress& peer, ConnectionSlot slot)>;
    // A refused connection, for the log; the refusal text was already sent.
    using RefuseFn = std::function<void(const PeerAddress& peer, LimitHit why)>;

    struct Options {
        // Sent (best effort, no waiting) to a client over a limit before the
        // close, e.g. "421 4.7.0 Too many connections\r\n". Empty: just close
        // (listeners with implicit TLS have no plaintext to say it in).
        std::string refusal;
        // After accept() fails with EMFILE/ENFILE/ENOBUFS, stop accepting
        // this long instead of spinning on a full table.
        std::chrono::milliseconds error_pause{1000};
    };

    // `listen_fd` is borrowed: it must stay open as long as the Acceptor.
    static Result<std::unique_ptr<Acceptor>> create(event_base* base, int listen_fd,
                                                    std::shared_ptr<ConnectionLimiter> limiter,
                                                    Options options, AcceptFn on_accept,
                                                    RefuseFn on_refuse = nullptr);
    ~Acceptor();
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;

    size_t accepted() const { return accepted_; }
    size_t refused() const { return refused_; }

  private:
    Acceptor(std::shared_ptr<ConnectionLimiter> limiter, Options options, AcceptFn on_accept,
             RefuseFn on_refuse);
    static void accept_cb(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int len,
                          void* self) noexcept;
    static void error_cb(evconnlistener*, void* self) noexcept;
    static void resume_cb(evutil_socket_t, short, void* self) noexcept;

    std::shared_ptr<ConnectionLimiter> limiter_;
    Options options_;
    AcceptFn on_accept_;
    RefuseFn on_refuse_;
    ListenerPtr listener_;
    EventPtr resume_;
    size_t accepted_ = 0;
    size_t refused_ = 0;
};

}  // namespace pbx::event
