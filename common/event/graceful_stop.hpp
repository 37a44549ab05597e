// A listener's graceful stop (SIGTERM; pillarbox-master(8)): the server
// stops accepting, asks every open connection to finish (a 421, a final
// -ERR or BYE, or flushing a proxied session), and its event loop ends when
// the last one is gone or after kGrace, whichever comes first. Shared by
// smtpd/submitd (common/smtpserver) and pop3-login/imap-login
// (common/login).
#pragma once

#include <event2/event.h>

#include <cstddef>
#include <functional>
#include <string>

#include "common/c_ptr.hpp"

namespace pbx::event {

class GracefulStop {
  public:
    // Under the master's kill (master_interface::kStopGraceSeconds).
    static constexpr timeval kGrace{3, 0};

    // open(): how many connections are open now; `what` names them in the
    // log line of a stop that ran out of time ("session(s)").
    GracefulStop(std::string what, std::function<size_t()> open);

    bool stopping() const { return stopping_; }
    // Starts the stop (the caller has closed its acceptors): the loop ends
    // now if nothing is open, else ask_to_finish() runs and the grace
    // timer starts. ask_to_finish() must not remove connections
    // synchronously.
    void begin(event_base* base, const std::function<void()>& ask_to_finish);
    // A connection was removed: the loop ends with the last one.
    void removed();

  private:
    static void timer_cb(evutil_socket_t, short, void* self) noexcept;

    event_base* base_ = nullptr;
    std::string what_;
    std::function<size_t()> open_;
    EventPtr timer_;
    bool stopping_ = false;
};

}  // namespace pbx::event
