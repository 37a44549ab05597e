// One SMTP session of smtpd: the glue between a client connection
// (event::StreamConnection), the protocol engine (smtp::Engine, MTA policy)
// and the two internal peers (authd for recipients, the queue-manager for
// messages). It moves bytes and answers; every protocol decision is the
// engine's.
//
//   accept → [greet pause: any byte is a pregreet] → greeting → feed the
//   engine → act on its outputs → ... → on_closed → Server::remove
#pragma once

#include <event2/event.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/event/acceptor.hpp"
#include "common/event/stream.hpp"
#include "common/smtp/engine.hpp"
#include "smtpd/enqueue.hpp"
#include "smtpd/feed.hpp"

namespace pbx::smtpd {

class Server;

class Session : public event::StreamHandler {
  public:
    Session(Server& server, uint64_t id, const event::PeerAddress& peer,
            event::ConnectionSlot slot);
    ~Session() override;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Takes the accepted socket; false when the session could not start
    // (logged; the caller drops it).
    bool start(UniqueFd fd);
    // The service is stopping: 421 and close.
    void shutdown();

    // event::StreamHandler
    void on_input(event::StreamConnection& c) noexcept override;
    void on_timeout(event::StreamConnection& c) noexcept override;
    void on_tls_ready(event::StreamConnection& c) noexcept override;
    void on_drained(event::StreamConnection& c) noexcept override;
    void on_closed(event::StreamConnection& c, const event::CloseInfo& info) noexcept override;

  private:
    void begin(bool pop_before_smtp);
    void greet();
    void pump();
    void feed(std::string_view bytes);
    void handle_outputs();
    void handle_reply(const std::string& text);
    void lookup(const smtp::Address& address);
    void message_done(const EnqueueResult& r);
    void update_timeout();
    bool enqueue_congested() const;
    std::string client() const;  // "unknown[192.0.2.1]"
    static void greet_cb(evutil_socket_t, short, void* self) noexcept;
    static void backlog_cb(evutil_socket_t, short, void* self) noexcept;

    Server& server_;
    uint64_t id_;
    event::PeerAddress peer_;
    event::ConnectionSlot slot_;
    std::unique_ptr<event::StreamConnection> conn_;
    std::optional<smtp::Engine> engine_;
    std::unique_ptr<EnqueueClient> enqueue_;
    EventPtr greet_timer_, backlog_timer_;

    bool greeted_ = false;
    bool tls_pending_ = false;     // StartTls: the handshake runs
    bool closing_ = false;         // the engine said Close (or we did)
    uint64_t lookup_id_ = 0;       // authd request in flight, 0: none
    uint64_t relay_check_id_ = 0;  // POP-before-SMTP question in flight
    std::string lookup_address_;

    // For the log: the command line being fed (its start), its stats, and
    // what the transaction looked like.
    CommandStats stats_;
    std::string line_;           // the current command line, up to kLogLineMax bytes
    std::string awaiting_line_;  // the command whose reply is awaited
    std::string helo_;
    std::string mail_from_;
    bool esmtp_ = false;
    size_t discarded_ = 0;
};

}  // namespace pbx::smtpd
