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
// The wire protocol between the queue-manager and the agents' sockets
// (local/local.sock, remote/remote.sock, channels in common/ipc/peers.hpp) is
// NOT defined yet: it belongs to the agents' issues. SocketAgents, the only
// implementation so far, checks whether the agent's socket accepts a
// connection and reports `unavailable` either way, so mail stays queued
// (and visible in `pillarbox queue list` with the reason) until the agents
// exist.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

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

// Probes local/local.sock or remote/remote.sock (see above).
class SocketAgents final : public DeliveryAgents {
  public:
    explicit SocketAgents(std::string runtime_dir) : runtime_dir_(std::move(runtime_dir)) {}
    void deliver(DeliveryRequest request, DoneFn done) override;

  private:
    std::string runtime_dir_;
};

}  // namespace pbx::qm
