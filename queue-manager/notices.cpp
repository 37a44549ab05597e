#include "queue-manager/notices.hpp"

#include <algorithm>

namespace pbx::qm {

std::string NoticePlan::kind() const {
    if (postmaster) return "postmaster non-delivery notification";
    bool failed = std::any_of(report.begin(), report.end(), [](const PlannedRecipient& p) {
        return p.action == dsn::Action::Failed;
    });
    if (failed) return "sender non-delivery notification";
    if (delay) return "sender delay notification";
    return "sender delivery status notification";
}

bool notify_allows(uint8_t notify, uint8_t bit) {
    if (notify & spool::kNotifyNever) return false;
    if (notify == 0) return bit == spool::kNotifyFailure || bit == spool::kNotifyDelay;
    return (notify & bit) != 0;
}

std::optional<Seconds> delay_notice_due(const spool::Envelope& env, const NoticeConfig& cfg) {
    if (env.delay_notice_sent || cfg.delay_warning.count() <= 0 || env.sender.empty())
        return std::nullopt;
    bool any = std::any_of(env.recipients.begin(), env.recipients.end(), [](const auto& r) {
        return r.state == spool::RcptState::Deferred &&
               notify_allows(r.notify, spool::kNotifyDelay);
    });
    if (!any) return std::nullopt;
    return env.arrival + cfg.delay_warning;
}

NoticePlan plan_notices(const spool::Envelope& env, Seconds now, const NoticeConfig& cfg) {
    NoticePlan plan;
    plan.will_retry_until = env.arrival + cfg.lifetime;
    bool null_sender = env.sender.empty();
    for (size_t i = 0; i < env.recipients.size(); ++i) {
        const spool::Recipient& r = env.recipients[i];
        bool final_state =
            r.state == spool::RcptState::Delivered || r.state == spool::RcptState::Failed;
        if (!final_state || r.notified) continue;
        plan.mark.push_back(i);
        std::string who = "to=<" + r.address + ">, ";
        if (r.state == spool::RcptState::Delivered) {
            if (null_sender || !notify_allows(r.notify, spool::kNotifySuccess)) continue;
            bool local = route_of(r.address, cfg.local_domains) == Route::Local;
            plan.report.push_back({i, local ? dsn::Action::Delivered : dsn::Action::Relayed});
            continue;
        }
        if (null_sender) {
            if (env.origin == spool::Origin::Dsn) {
                plan.postmaster = true;
                plan.report.push_back({i, dsn::Action::Failed});
            } else if (env.origin == spool::Origin::PostmasterNotice) {
                plan.logs.push_back(who +
                                    "status=bounced, no notice: undeliverable postmaster "
                                    "notice dropped");
            } else {
                plan.logs.push_back(who + "status=bounced, no notice: null sender");
            }
            continue;
        }
        if (!notify_allows(r.notify, spool::kNotifyFailure)) {
            plan.logs.push_back(
                who + "status=bounced, no notice: NOTIFY=" + spool::notify_to_string(r.notify));
            continue;
        }
        plan.report.push_back({i, dsn::Action::Failed});
    }
    if (auto due = delay_notice_due(env, cfg); due && now >= *due) {
        for (size_t i = 0; i < env.recipients.size(); ++i) {
            const spool::Recipient& r = env.recipients[i];
            if (r.state == spool::RcptState::Deferred &&
                notify_allows(r.notify, spool::kNotifyDelay)) {
                plan.report.push_back({i, dsn::Action::Delayed});
                plan.delay = true;
            }
        }
    }
    plan.to = plan.postmaster ? cfg.postmaster : env.sender;
    return plan;
}

bool return_full_message(const spool::Envelope& env, const NoticePlan& plan, uint64_t size_limit) {
    bool failed = std::any_of(plan.report.begin(), plan.report.end(),
                              [](const auto& p) { return p.action == dsn::Action::Failed; });
    return failed && env.ret != spool::DsnRet::Headers && env.size <= size_limit;
}

}  // namespace pbx::qm
