// An outgoing TCP connection, made without blocking (remote-delivery): a
// non-blocking connect(), then the event loop waits for the socket to become
// writable or for the timeout. The connected fd then goes to
// StreamConnection::create() like an accepted one.
//
// LIFETIME: the callback is called once, from the event loop (never from
// inside connect()); destroying the Connector before that cancels it.
#pragma once

#include <event2/event.h>
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <string>

#include "common/c_ptr.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::event {

// "192.0.2.1" or "2001:db8::1" (no brackets) and a port.
Result<sockaddr_storage> make_sockaddr(const std::string& ip, uint16_t port, socklen_t& len);

class Connector {
  public:
    using DoneFn = std::function<void(Result<UniqueFd>)>;
    Connector(event_base* base, DoneFn done);
    ~Connector();
    Connector(const Connector&) = delete;
    Connector& operator=(const Connector&) = delete;

    // Starts connecting; the result comes through the callback.
    void connect(const std::string& ip, uint16_t port, std::chrono::milliseconds timeout);

  private:
    static void on_event(evutil_socket_t, short what, void* self) noexcept;
    void finish(Result<UniqueFd> r);

    event_base* base_;
    DoneFn done_;
    UniqueFd fd_;
    EventPtr ev_;
    Error pending_error_;
    bool failed_early_ = false;
};

}  // namespace pbx::event
