// How the queue-manager hands mail to the delivery agents (DESIGN §2, §5).
//
// THE INTERFACE, for the local-delivery and remote-delivery issues: the
// scheduler calls DeliveryAgents::deliver() with one DeliveryRequest per
// message and route: the queue ID, a read-only fd of queue/ID.msg (agents
// never browse the spool, DESIGN §2), the envelope, and which of its
// recipients to try. The agent answers with one DeliveryReport: either
// `unavailable` (nothing was attempted: the agent is not running or cannot
// take work now; the recipients stay as they were, no attempt is counted) or
// one RecipientResult per requested recipient (delivered / deferred /
// failed, with the reply to log and store). The scheduler does the rest:
// retry times (schedule.hpp), envelope updates, removal when done.
//
// On the wire (SocketAgents) this is the delivery channel of
// common/ipc/delivery_msgs.hpp: one persistent connection per agent
// (local/local.sock, remote/remote.sock), `deliver` requests numbered by id,
// `rcpt_result`s in any order and `done`. An agent whose socket cannot be
// reached is `unavailable`: mail for it stays queued, no attempt is counted
// (and `pillarbox queue list` shows why) until the agent runs. A connection
// that drops with requests in flight defers their unanswered recipients, as
// the channel's contract says.
#pragma once

#include <event2/event.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc/channel.hpp"
#include "common/spool/envelope.hpp"
#include "common/unique_fd.hpp"

namespace pbx::qm {

enum class Route { Local, Remote };

std::string_view to_string(Route r);

// A recipient domain listed in `domains` (or myhostname) is local; every
// other domain is remote. Case-insensitive; an address without "@" is local.
Route route_of(std::string_view address, const std::vector<std::string>& local_domains);

struct DeliveryRequest {
    spool::QueueId id;
    Route route = Route::Local;
    spool::Envelope envelope;        // a copy: the queue may change meanwhile
    std::vector<size_t> recipients;  // indexes into envelope.recipients
    UniqueFd message;                // O_RDONLY fd of queue/ID.msg
};

enum class Outcome { Delivered, Deferred, Failed };

struct RecipientResult {
    size_t index = 0;  // into envelope.recipients
    Outcome outcome = Outcome::Deferred;
    std::string reply;  // "250 2.0.0 ok", "451 4.4.1 ...": logged and stored
    std::string relay;  // for the log line: "local", "mx.example.org[192.0.2.1]:25"
    std::string tls;    // remote only: "TLSv1.3:TLS_AES_256_GCM_SHA384:verified", "none"; "" = omit
};

struct DeliveryReport {
    bool unavailable = false;
    std::string reason;  // when unavailable: shown by `queue list`
    std::vector<RecipientResult> results;
};

class DeliveryAgents {
  public:
    using DoneFn = std::function<void(DeliveryReport)>;
    virtual ~DeliveryAgents() = default;
    // Takes the request; calls `done` exactly once, from the event loop,
    // possibly before deliver() returns.
    virtual void deliver(DeliveryRequest request, DoneFn done) = 0;
};

// The delivery agents over their sockets (see above).
class SocketAgents final : public DeliveryAgents {
  public:
    struct Limits {
        // Requests outstanding on one agent's connection; more wait here, so
        // a queue of thousands does not flood an agent that has its own cap.
        size_t max_in_flight = 100;
    };
    SocketAgents(event_base* base, std::string runtime_dir, Limits limits);
    SocketAgents(event_base* base, std::string runtime_dir)
        : SocketAgents(base, std::move(runtime_dir), Limits{}) {}
    ~SocketAgents() override;
    void deliver(DeliveryRequest request, DoneFn done) override;

    // Requests sent and not yet answered, on both agents (tests).
    size_t in_flight() const;

  private:
    struct Pending {
        std::vector<size_t> recipients;  // the request's, in wire order
        DoneFn done;
        std::vector<RecipientResult> results;
        std::vector<bool> answered;
    };
    struct Waiting {
        DeliveryRequest request;
        DoneFn done;
    };
    struct Agent {
        Route route;
        std::unique_ptr<ipc::Connection> conn;
        std::map<uint64_t, Pending> in_flight;
        std::deque<Waiting> waiting;
    };

    Agent& agent(Route r) { return r == Route::Local ? local_ : remote_; }
    std::string name(const Agent& a) const;
    // Connects when not connected; the error text when that fails.
    std::optional<std::string> connect(Agent& a);
    void send(Agent& a, DeliveryRequest request, DoneFn done);
    void pump(Agent& a);
    void on_message(Agent& a, ipc::Message&& m);
    void on_close(Agent& a, const ipc::IpcError& e);
    void finish(Agent& a, uint64_t id, std::string_view missing_reply);
    void fail_waiting(Agent& a, const std::string& reason);

    event_base* base_;
    std::string runtime_dir_;
    Limits limits_;
    Agent local_{Route::Local, nullptr, {}, {}};
    Agent remote_{Route::Remote, nullptr, {}, {}};
    uint64_t next_id_ = 1;
};

}  // namespace pbx::qm
