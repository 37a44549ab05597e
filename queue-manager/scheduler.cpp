#include "queue-manager/scheduler.hpp"

#include <fcntl.h>

#include <algorithm>
#include <map>

#include "common/log.hpp"

namespace pbx::qm {
namespace {

bool final_state(spool::RcptState s) {
    return s == spool::RcptState::Delivered || s == spool::RcptState::Failed;
}

std::string_view status_word(spool::RcptState s) {
    switch (s) {
        case spool::RcptState::Delivered:
            return "sent";
        case spool::RcptState::Failed:
            return "bounced";
        default:
            return "deferred";
    }
}

}  // namespace

Scheduler::Scheduler(QueueStore& store, DeliveryAgents& agents, SchedulerConfig config, Clock clock)
    : store_(store), agents_(agents), config_(std::move(config)), clock_(std::move(clock)) {}

Seconds Scheduler::due_of(const spool::Envelope& env) {
    std::optional<Seconds> due;
    for (const auto& r : env.recipients) {
        if (final_state(r.state)) continue;
        if (!due || r.next_attempt < *due) due = r.next_attempt;
    }
    return due.value_or(Seconds::max());
}

Seconds Scheduler::due(const spool::Envelope& env) const {
    Seconds d = due_of(env);
    if (auto warn = delay_notice_due(env, config_.notices); warn && *warn < d) d = *warn;
    return d;
}

bool Scheduler::is_due(const spool::Recipient& r, Seconds now, bool flushed) {
    if (final_state(r.state)) return false;
    return flushed || r.next_attempt <= now;
}

void Scheduler::flush(const spool::QueueId* id) {
    for (auto& [qid, e] : store_.entries()) {
        if (id && qid != *id) continue;
        e.flushed = true;
        e.due = Seconds{};
    }
}

std::optional<Seconds> Scheduler::run() {
    Seconds now = clock_();
    // dispatch() may remove entries (through apply() when an agent answers at
    // once), so walk a list of IDs rather than the map.
    std::vector<spool::QueueId> ids;
    for (const auto& [id, e] : store_.entries())
        if (!e.held && e.in_delivery == 0 && !e.notice_in_flight && e.due <= now) ids.push_back(id);
    for (const auto& id : ids)
        if (Entry* e = store_.find(id)) dispatch(*e, now);
    std::optional<Seconds> next;
    for (const auto& [id, e] : store_.entries()) {
        if (e.held || e.in_delivery > 0 || e.notice_in_flight || e.due == Seconds::max()) continue;
        if (!next || e.due < *next) next = e.due;
    }
    return next;
}

void Scheduler::dispatch(Entry& e, Seconds now) {
    std::map<Route, std::vector<size_t>> by_route;
    const auto& rcpts = e.env.recipients;
    for (size_t i = 0; i < rcpts.size(); ++i)
        if (is_due(rcpts[i], now, e.flushed))
            by_route[route_of(rcpts[i].address, config_.local_domains)].push_back(i);
    e.flushed = false;
    if (by_route.empty()) {
        // Nothing to deliver: notices may be due (a delay notice, or after a
        // restart), or the message may be finished.
        settle(e.env.id, false);
        return;
    }
    e.recovered = false;
    spool::QueueId id = e.env.id;
    std::string msg_path = store_.paths().message_file(id);
    for (auto& [route, indexes] : by_route) {
        Entry* cur = store_.find(id);
        if (!cur) return;
        if (config_.disabled_routes.count(route)) {
            std::string why =
                std::string(to_string(route)) + " delivery is disabled in the configuration";
            // `queue list` shows it; one log line per message would cost more
            // than the message itself where mail is only accepted (benchmarks).
            if (cur->note.empty()) {
                log::debug(id.str(), ": ", why, "; the mail stays queued");
                cur->note = std::move(why);
            }
            // Not later than another route of the message asked for.
            Seconds later = now + config_.agent_retry;
            if (cur->in_delivery == 0 && (cur->due <= now || cur->due > later)) cur->due = later;
            continue;
        }
        UniqueFd fd(::open(msg_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd) {
            log::error(id.str(), ": cannot open ", msg_path, ": ", std::strerror(errno));
            cur->note = "message file unreadable";
            cur->due = now + config_.agent_retry;
            return;
        }
        DeliveryRequest req;
        req.id = id;
        req.route = route;
        req.envelope = cur->env;
        req.recipients = indexes;
        req.message = std::move(fd);
        ++cur->in_delivery;
        Route r = route;
        agents_.deliver(std::move(req),
                        [this, id, r](DeliveryReport report) { apply(id, r, std::move(report)); });
    }
}

std::chrono::seconds Scheduler::agent_backoff(Route route, Seconds now) {
    Seconds since = unavailable_since_.try_emplace(route, now).first->second;
    auto down = std::chrono::duration_cast<std::chrono::seconds>(now - since);
    return std::clamp(down, std::chrono::seconds{1},
                      std::max(config_.agent_retry, std::chrono::seconds{1}));
}

void Scheduler::apply(const spool::QueueId& id, Route route, DeliveryReport report) {
    Entry* e = store_.find(id);
    if (!e) return;  // deleted by the administrator meanwhile
    if (e->in_delivery > 0) --e->in_delivery;
    Seconds now = clock_();
    if (report.unavailable) {
        if (e->note != report.reason)
            log::info(id.str(), ": ", to_string(route), " delivery postponed: ", report.reason);
        e->note = report.reason;
        if (e->in_delivery == 0) e->due = now + agent_backoff(route, now);
        if (on_change_) on_change_();
        return;
    }
    unavailable_since_.erase(route);
    e->note.clear();
    auto& env = e->env;
    for (const RecipientResult& res : report.results) {
        if (res.index >= env.recipients.size()) {
            log::error(id.str(), ": delivery agent answered for an unknown recipient");
            continue;
        }
        spool::Recipient& r = env.recipients[res.index];
        ++r.attempts;
        r.last_attempt = now;
        r.last_reply = spool::sanitize_reply(res.reply);
        if (!res.relay.empty()) e->relays[res.index] = res.relay;
        std::string status_note;
        switch (res.outcome) {
            case Outcome::Delivered:
                r.state = spool::RcptState::Delivered;
                r.next_attempt = Seconds{};
                break;
            case Outcome::Failed:
                r.state = spool::RcptState::Failed;
                r.next_attempt = Seconds{};
                break;
            case Outcome::Deferred: {
                NextAttempt na = next_attempt(env.arrival, r.attempts, now, config_.policy);
                if (na.expired) {
                    r.state = spool::RcptState::Failed;
                    r.last_reply = spool::sanitize_reply("4.4.7 message expired: " + res.reply);
                    r.next_attempt = Seconds{};
                    status_note = " (expired)";
                } else {
                    r.state = spool::RcptState::Deferred;
                    r.next_attempt = na.at;
                }
                break;
            }
        }
        log::info(id.str(), ": to=<", r.address,
                  ">, relay=", res.relay.empty() ? to_string(route) : res.relay,
                  ", delay=", (now - env.arrival).count(), res.tls.empty() ? "" : ", tls=", res.tls,
                  ", status=", status_word(r.state), status_note, " (", r.last_reply, ")");
    }
    if (e->in_delivery > 0 || e->notice_in_flight) {
        if (auto s = store_.save(id); !s)
            log::error(id.str(), ": cannot update the envelope: ", s.error().message);
    } else {
        settle(id, true);
    }
    if (on_change_) on_change_();
}

void Scheduler::settle(const spool::QueueId& id, bool changed) {
    Entry* e = store_.find(id);
    if (!e || e->in_delivery > 0 || e->notice_in_flight) return;
    NoticePlan plan = plan_notices(e->env, clock_(), config_.notices);
    for (const std::string& line : plan.logs) log::info(id.str(), ": ", line);
    if (plan.empty()) {
        for (size_t i : plan.mark) e->env.recipients[i].notified = true;
        finish(id, changed || !plan.mark.empty());
        return;
    }
    if (!notifier_) {
        log::warn(id.str(), ": cannot send the ", plan.kind(), " to <", plan.to, ">: no notifier");
        for (size_t i : plan.mark) e->env.recipients[i].notified = true;
        if (plan.delay) e->env.delay_notice_sent = true;
        finish(id, true);
        return;
    }
    // The states this pass reached are saved now; the marks follow once the
    // notice is queued.
    if (changed)
        if (auto s = store_.save(id); !s)
            log::error(id.str(), ": cannot update the envelope: ", s.error().message);
    e->notice_in_flight = true;
    notifier_->send_notice(e->env, plan, e->relays, [this, id, plan](Result<spool::QueueId> r) {
        notice_done(id, plan, std::move(r));
    });
}

void Scheduler::notice_done(const spool::QueueId& id, const NoticePlan& plan,
                            Result<spool::QueueId> result) {
    Entry* e = store_.find(id);
    if (!e) {
        if (result) log::info(id.str(), ": ", plan.kind(), ": ", result->str());
        return;  // deleted by the administrator meanwhile
    }
    e->notice_in_flight = false;
    if (!result) {
        log::error(id.str(), ": cannot queue the ", plan.kind(), ": ", result.error().message,
                   "; will try again");
        e->due = clock_() + config_.agent_retry;
    } else {
        log::info(id.str(), ": ", plan.kind(), ": ", result->str());
        for (size_t i : plan.mark)
            if (i < e->env.recipients.size()) e->env.recipients[i].notified = true;
        if (plan.delay) e->env.delay_notice_sent = true;
        finish(id, true);
    }
    if (on_change_) on_change_();
}

void Scheduler::finish(const spool::QueueId& id, bool changed) {
    Entry* e = store_.find(id);
    if (!e) return;
    auto& env = e->env;
    bool done = std::all_of(env.recipients.begin(), env.recipients.end(),
                            [](const spool::Recipient& r) { return final_state(r.state); });
    if (done) {
        std::string line =
            id.str() + (e->recovered ? ": removed (finished before the restart)" : ": removed");
        if (auto s = store_.remove_finished(id, std::move(line)); !s)
            log::error(id.str(), ": cannot remove: ", s.error().message);
        return;
    }
    if (changed)
        if (auto s = store_.save(id); !s)
            log::error(id.str(), ": cannot update the envelope: ", s.error().message);
    Seconds now = clock_();
    e->due = due(env);
    if (e->due <= now) e->due = now + config_.agent_retry;  // nothing due after all
}

}  // namespace pbx::qm
