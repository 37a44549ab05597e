// The scheduler (DESIGN §5): decides which recipients are due, hands them to
// the delivery agents grouped by route, and applies the agents' answers to
// the envelopes with the retry policy of schedule.hpp.
//
// A recipient is due when it is pending or deferred and its next attempt has
// come (or the message was flushed). A message whose agent is unavailable
// keeps its recipients untouched (no attempt counted: mail stays queued until
// the agents exist) and is looked at again after `agent_retry`. When every
// recipient is delivered or failed the message is removed ("ID: removed").
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "queue-manager/delivery.hpp"
#include "queue-manager/schedule.hpp"
#include "queue-manager/store.hpp"

namespace pbx::qm {

struct SchedulerConfig {
    RetryPolicy policy;
    std::vector<std::string> local_domains;  // `domains` plus myhostname
    std::chrono::seconds agent_retry{60};    // re-check an unavailable agent
};

class Scheduler {
  public:
    using Clock = std::function<Seconds()>;

    Scheduler(QueueStore& store, DeliveryAgents& agents, SchedulerConfig config, Clock clock);

    // Hands every due recipient of every active message to its agent.
    // Returns the earliest time something else becomes due (nullopt: nothing
    // is waiting for time).
    std::optional<Seconds> run();

    // Makes the message (or, with no id, every active message) due now,
    // deferred recipients included.
    void flush(const spool::QueueId* id);

    // When the earliest recipient of the envelope is due.
    static Seconds due_of(const spool::Envelope& env);

    // Called after a report changed the queue, so the owner runs us again.
    void set_on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

  private:
    void dispatch(Entry& e, Seconds now);
    void apply(const spool::QueueId& id, Route route, DeliveryReport report);
    static bool is_due(const spool::Recipient& r, Seconds now, bool flushed);

    QueueStore& store_;
    DeliveryAgents& agents_;
    SchedulerConfig config_;
    Clock clock_;
    std::function<void()> on_change_;
};

}  // namespace pbx::qm
