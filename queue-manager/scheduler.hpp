// The scheduler (DESIGN §5): decides which recipients are due, hands them to
// the delivery agents grouped by route, and applies the agents' answers to
// the envelopes with the retry policy of schedule.hpp.
//
// A recipient is due when it is pending or deferred and its next attempt has
// come (or the message was flushed). A message whose agent is unavailable
// keeps its recipients untouched (no attempt counted: mail stays queued until
// the agents exist) and is looked at again after as long as that agent has
// been unavailable (at least 1 s, at most `agent_retry`); one that the
// configuration disables is not asked at all (looked at every
// `agent_retry`, the mail staying queued). An agent
// that is merely starting (the master starts the delivery agents alongside
// the queue-manager) is thus picked up at once, and one that stays down is
// not polled in a tight loop.
//
// After each pass (no request of the message still out) the scheduler asks
// plan_notices() (notices.hpp) which delivery status notifications are due,
// has the Notifier queue them as one new message, and only once that is
// durable marks the recipients `notified` (and delay-notice-sent) and saves
// the envelope, or, when every recipient is delivered or failed, removes the
// message ("ID: removed"). A crash in between sends a notice twice, never
// loses one. A notice that cannot be queued is tried again after
// `agent_retry`; the message stays until it is.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "queue-manager/delivery.hpp"
#include "queue-manager/notices.hpp"
#include "queue-manager/schedule.hpp"
#include "queue-manager/store.hpp"

namespace pbx::qm {

struct SchedulerConfig {
    RetryPolicy policy;
    std::vector<std::string> local_domains;  // `domains` plus myhostname
    std::chrono::seconds agent_retry{60};    // re-check an unavailable agent
    std::set<Route> disabled_routes;         // agents switched off in the config
    NoticeConfig notices;
};

// Queues a notice (the queue-manager: composes it with common/dsn and
// commits it through the group committer). `done` gets the new queue ID
// once the notice is durable, or the error; exactly once, from the event
// loop (possibly before send_notice returns).
class Notifier {
  public:
    using DoneFn = std::function<void(Result<spool::QueueId>)>;
    virtual ~Notifier() = default;
    virtual void send_notice(const spool::Envelope& original, const NoticePlan& plan,
                             const std::map<size_t, std::string>& relays, DoneFn done) = 0;
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
    // That, or the message's delay notice if it comes first.
    Seconds due(const spool::Envelope& env) const;

    // Without one, due notices are logged as not sent (tests).
    void set_notifier(Notifier* n) { notifier_ = n; }

    // Called after a report changed the queue, so the owner runs us again.
    void set_on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

  private:
    std::map<Route, Seconds> unavailable_since_;  // absent: the agent answered
    void dispatch(Entry& e, Seconds now);
    // The wait before asking an agent that just answered "unavailable" again.
    std::chrono::seconds agent_backoff(Route route, Seconds now);
    void apply(const spool::QueueId& id, Route route, DeliveryReport report);
    static bool is_due(const spool::Recipient& r, Seconds now, bool flushed);
    // After a pass: queue the notices due, then finish(). `changed`: the
    // envelope changed in memory and must be saved.
    void settle(const spool::QueueId& id, bool changed);
    void notice_done(const spool::QueueId& id, const NoticePlan& plan,
                     Result<spool::QueueId> result);
    // Removes a message whose recipients are all final; saves the others.
    void finish(const spool::QueueId& id, bool changed);

    QueueStore& store_;
    DeliveryAgents& agents_;
    SchedulerConfig config_;
    Clock clock_;
    std::function<void()> on_change_;
    Notifier* notifier_ = nullptr;
};

}  // namespace pbx::qm
