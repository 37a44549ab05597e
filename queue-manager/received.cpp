#include "queue-manager/received.hpp"

#include "common/smtp/received.hpp"

namespace pbx::qm {

std::string received_line(const spool::Envelope& env, const ReceivedContext& ctx) {
    if (env.origin == spool::Origin::Sendmail) {
        std::string h = "Received: by ";
        h += ctx.myhostname;
        h += " (Pillarbox, from userid ";
        h += std::to_string(env.origin_uid);
        h += ")\r\n\tid ";
        h += env.id.str();
        h += "; ";
        h += smtp::rfc5322_date(ctx.when, ctx.utc_offset_minutes);
        h += "\r\n";
        return h;
    }
    if (env.origin == spool::Origin::Dsn || env.origin == spool::Origin::PostmasterNotice) {
        std::string h = "Received: by ";
        h += ctx.myhostname;
        h += " (Pillarbox)\r\n\tid ";
        h += env.id.str();
        h += "; ";
        h += smtp::rfc5322_date(ctx.when, ctx.utc_offset_minutes);
        h += "\r\n";
        return h;
    }
    smtp::ReceivedInfo info;
    info.helo = env.helo;
    info.client_host = env.client_hostname;
    info.client_ip = env.client_address;
    info.by_host = ctx.myhostname;
    info.protocol = env.protocol;
    info.tls_details = env.tls;
    info.queue_id = env.id.str();
    info.auth_user = env.auth_user;  // submitd sends it only when configured
    if (env.recipients.size() == 1) info.recipient = env.recipients.front().address;
    info.when = ctx.when;
    info.utc_offset_minutes = ctx.utc_offset_minutes;
    return smtp::received_header(info);
}

int local_utc_offset_minutes(std::time_t when) {
    std::tm tm{};
    if (localtime_r(&when, &tm) == nullptr) return 0;
    return static_cast<int>(tm.tm_gmtoff / 60);
}

}  // namespace pbx::qm
