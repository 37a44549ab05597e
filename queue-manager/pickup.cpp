#include "queue-manager/pickup.hpp"

namespace pbx::qm {

std::string to_crlf(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 32);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
        out += text[i];
    }
    return out;
}

Result<PickedUp, Refusal> convert_maildrop(const spool::Maildrop& drop, uid_t file_uid,
                                           const SubmitPolicy& policy) {
    if (drop.uid != file_uid)
        return refuse(false, "5.7.1 the file claims uid " + std::to_string(drop.uid) +
                                 " but belongs to uid " + std::to_string(file_uid));
    PickedUp out;
    spool::Envelope& env = out.env;
    env.origin = spool::Origin::Sendmail;
    env.origin_uid = file_uid;
    env.protocol = "local";
    if (file_uid == 0) {
        env.sender = qualify(drop.sender, policy.myhostname);
    } else {
        auto s = check_local_sender(drop.sender, file_uid, policy);
        if (!s) return Err{s.error()};
        env.sender = std::move(*s);
    }
    for (const std::string& rcpt : drop.recipients) {
        auto r = make_recipient(rcpt, "", 0, policy);
        if (!r) return Err{r.error()};
        env.recipients.push_back(std::move(*r));
    }
    out.message = to_crlf(drop.message);
    return out;
}

}  // namespace pbx::qm
