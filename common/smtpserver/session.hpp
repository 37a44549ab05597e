// One SMTP session of smtpd or submitd: the glue between a client
// connection (event::StreamConnection), the protocol engine (smtp::Engine,
// MTA or submission policy) and the two internal peers (authd for
// recipients, passwords and sender ownership, the queue-manager for
// messages). It moves bytes and answers; every protocol decision is the
// engine's, every policy answer authd's or the rate limiter's.
//
//   accept → [implicit TLS handshake] → [greet pause: any byte is a
//   pregreet] → greeting → feed the engine → act on its outputs → ... →
//   on_closed → Server::remove
//
// Submission only: the message text passes smtp::SubmissionFilter (Date:
// and Message-ID: added when missing, From: collected); at the end of DATA
// every From: address must be one the user owns (authd `owns`), else the
// message is dropped with 553 5.7.1.
#pragma once

#include <event2/event.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/event/acceptor.hpp"
#include "common/event/stream.hpp"
#include "common/smtp/engine.hpp"
#include "common/smtp/submission_filter.hpp"
#include "common/smtpserver/enqueue.hpp"
#include "common/smtpserver/feed.hpp"

namespace pbx::smtpserver {

class Server;

class Session : public event::StreamHandler {
  public:
    Session(Server& server, uint64_t id, const event::PeerAddress& peer,
            event::ConnectionSlot slot);
    ~Session() override;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Takes the accepted socket; false when the session could not start
    // (logged; the caller drops it). implicit_tls: port 465, the TLS
    // handshake comes before the greeting.
    bool start(UniqueFd fd, bool implicit_tls = false);
    // The service is stopping: 421 and close.
    void shutdown();

    // event::StreamHandler
    void on_input(event::StreamConnection& c) noexcept override;
    void on_timeout(event::StreamConnection& c) noexcept override;
    void on_tls_ready(event::StreamConnection& c) noexcept override;
    void on_drained(event::StreamConnection& c) noexcept override;
    void on_closed(event::StreamConnection& c, const event::CloseInfo& info) noexcept override;

  private:
    void make_engine(bool tls, const smtp::TlsInfo& info, bool pop_before_smtp = false);
    void begin(bool pop_before_smtp);
    void greet();
    bool submission() const;
    void authenticate(const smtp::Authenticate& a);
    void check_sender(const std::string& address);
    void vet_recipient(const smtp::LookupRecipient& l);
    void begin_message(const smtp::Envelope& env);
    void end_message();
    void from_checked();
    void forget_requests();
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
    bool implicit_tls_ = false;  // port 465: the engine starts after the handshake
    bool tls_pending_ = false;   // StartTls: the handshake runs
    bool closing_ = false;       // the engine said Close (or we did)
    uint64_t lookup_id_ = 0;     // authd request in flight, 0: none
    std::string lookup_address_;
    std::set<uint64_t> requests_;  // other authd requests in flight (verify, owns)

    // Submission: the message being received.
    std::optional<smtp::SubmissionFilter> filter_;
    std::string envelope_sender_;  // already checked by CheckSender
    size_t from_pending_ = 0;      // owns answers still awaited for From:
    std::string from_refused_;     // the first From: address not owned
    bool from_tempfail_ = false;

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

}  // namespace pbx::smtpserver
