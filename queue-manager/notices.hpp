// Which delivery status notifications a message needs (RFC 3461 §4.1,
// RFC 3464): a pure function of the envelope, the clock and the
// configuration, so that every NOTIFY decision is a table in a unit test.
// The scheduler calls it after each delivery pass (scheduler.hpp) and the
// queue-manager composes and queues what it plans (common/dsn/dsn.hpp).
//
// Per recipient whose final state has not been handled yet (notified=no):
//   failed     NOTIFY=NEVER → nothing; otherwise (FAILURE, or no NOTIFY:
//              the default is FAILURE,DELAY) → Action: failed
//   delivered  NOTIFY has SUCCESS → Action: delivered (local delivery) or
//              relayed (passed to another server, which may not report
//              further); otherwise nothing
// and, once per message (delay-notice-sent), when delay_warning_time has
// passed since arrival (0 = never): every deferred recipient whose NOTIFY
// allows DELAY (DELAY given, or no NOTIFY at all) → Action: delayed.
// Everything due goes into ONE notice per pass, to the sender.
//
// The null sender never gets a notice ("no notice: null sender" is
// logged), with one exception: a failed recipient of a notice we generated
// (origin dsn) makes one notice to bounce_notice_recipient (origin
// postmaster-notice); a failed postmaster notice is only logged. So no
// notice can ever cause a second one about itself: no loops.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/dsn/dsn.hpp"
#include "common/spool/envelope.hpp"
#include "queue-manager/delivery.hpp"
#include "queue-manager/schedule.hpp"

namespace pbx::qm {

struct NoticeConfig {
    std::chrono::seconds delay_warning{4 * 3600};  // delay_warning_time; 0 = never
    std::chrono::seconds lifetime{5 * 24 * 3600};  // maximal_queue_lifetime
    std::string postmaster = "postmaster";         // bounce_notice_recipient, qualified
    std::vector<std::string> local_domains;        // delivered vs relayed
};

struct PlannedRecipient {
    size_t index = 0;  // into envelope.recipients
    dsn::Action action = dsn::Action::Failed;
};

struct NoticePlan {
    std::vector<PlannedRecipient> report;  // in the notice; empty: no notice
    std::vector<size_t> mark;       // set `notified` on these once the notice (if any) is queued
    bool delay = false;             // the notice reports delays: set delay-notice-sent
    bool postmaster = false;        // to bounce_notice_recipient, about a failed notice
    std::string to;                 // the notice's recipient
    Seconds will_retry_until{};     // arrival + lifetime
    std::vector<std::string> logs;  // lines to log after "ID: "

    bool empty() const { return report.empty(); }
    // The words of the log line "ID: sender non-delivery notification: NEWID".
    std::string kind() const;
};

// NOTIFY allows this kind of notice (kNotifyFailure, kNotifyDelay or
// kNotifySuccess); no NOTIFY at all means FAILURE,DELAY.
bool notify_allows(uint8_t notify, uint8_t bit);

// When the message's delay notice becomes due; nullopt when it never will
// (sent already, disabled, null sender, or no deferred recipient allows it).
std::optional<Seconds> delay_notice_due(const spool::Envelope& env, const NoticeConfig& cfg);

NoticePlan plan_notices(const spool::Envelope& env, Seconds now, const NoticeConfig& cfg);

// Whether the notice returns the whole original: only a failure notice, only
// when RET is not HDRS, and only up to bounce_size_limit octets.
bool return_full_message(const spool::Envelope& env, const NoticePlan& plan, uint64_t size_limit);

}  // namespace pbx::qm
