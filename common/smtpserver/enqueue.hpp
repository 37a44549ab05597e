// One SMTP session's client of the queue-manager (queue/enqueue.sock).
//
// Connection policy: one connection per client object, made at its first
// message and reused for its later messages (queue_msgs.hpp allows several
// transactions in a row). A session that never sends a message never
// connects. A session that ends between transactions hands its client to
// the Server, which gives it to the next session (Server::take_enqueue_client:
// with a new SMTP connection per message, one connect per message fewer). A
// broken connection fails the transaction in progress (451 4.3.0) and is made
// again for the next one.
//
// Flow: begin() → chunk()* → end(done) → done(Queued | TempFail | PermFail);
// or abort(). The message bytes cross IPC here and only here (DESIGN §3).
// backlog() is what the queue-manager has not read yet: the session stops
// reading its client while it is high.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"
#include "common/smtp/envelope.hpp"

namespace pbx::smtpserver {

struct EnqueueResult {
    enum class Kind { Queued, TempFail, PermFail } kind = Kind::TempFail;
    std::string text;  // Queued: the queue ID; otherwise the reason
};

// The begin and rcpt frames of a transaction, from the engine's envelope.
// origin: "smtp" (smtpd) or "submission" (submitd).
ipc::Message begin_frame(const smtp::Envelope& env, std::string_view origin = "smtp");
ipc::Message rcpt_frame(const smtp::EnvelopeRecipient& r);

class EnqueueClient {
  public:
    using DoneFn = std::function<void(const EnqueueResult&)>;

    EnqueueClient(event_base* base, std::string socket_path, std::chrono::milliseconds timeout);
    ~EnqueueClient();
    EnqueueClient(const EnqueueClient&) = delete;
    EnqueueClient& operator=(const EnqueueClient&) = delete;

    // Starts a transaction. A failure (queue-manager unreachable) is kept
    // and reported by end(); chunks are dropped meanwhile.
    void begin(const smtp::Envelope& env, std::string_view origin = "smtp");
    void chunk(std::string_view bytes);
    // Commits; `done` is called once, from the event loop. The timeout runs
    // from here to the queue-manager's answer.
    void end(DoneFn done);
    // Drops the transaction in progress (no answer comes).
    void abort();

    size_t backlog() const { return conn_ && conn_->is_open() ? conn_->queued_bytes() : 0; }
    bool in_transaction() const { return state_ != State::Idle; }
    bool connected() const { return conn_ && conn_->is_open(); }

  private:
    enum class State { Idle, Sending, Failed, Committing };
    bool ensure_connected();
    bool send(ipc::Message&& m);  // false: the transaction failed (fail() was called)
    void fail(std::string why);
    void on_message(ipc::Message&& m);
    void on_close(const ipc::IpcError& e);
    void finish(const EnqueueResult& r);
    static void timer_cb(evutil_socket_t, short, void* self) noexcept;

    event_base* base_;
    std::string path_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<ipc::Connection> conn_;
    State state_ = State::Idle;
    std::string failure_;
    DoneFn done_;
    EventPtr timer_;
};

}  // namespace pbx::smtpserver
