#include "queue-manager/submission.hpp"

#include <algorithm>

namespace pbx::qm {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

bool iequal(std::string_view a, std::string_view b) {
    return lower(a) == lower(b);
}

// Values end up in the envelope, whose writer refuses line breaks; refusing
// them here gives the client a reason instead of a failed commit.
Result<Unit, Refusal> check_value(std::string_view field, std::string_view value,
                                  const spool::EnvelopeLimits& limits) {
    if (value.size() > limits.max_value_length)
        return refuse(false, "5.5.4 " + std::string(field) + " is too long");
    if (value.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos)
        return refuse(false, "5.5.4 " + std::string(field) + " contains a line break");
    return Unit{};
}

// Copies an optional Str field after checking it.
Result<Unit, Refusal> take(const ipc::Message& m, std::string_view field, std::string* out,
                           const spool::EnvelopeLimits& limits) {
    auto v = m.get_str(field);
    if (!v) return Unit{};
    if (auto c = check_value(field, *v, limits); !c) return Err{c.error()};
    *out = std::string(*v);
    return Unit{};
}

}  // namespace

bool Submitter::trusted_fields() const {
    return program == ipc::Program::Root || program == ipc::Program::Smtpd ||
           program == ipc::Program::Submitd;
}

std::string qualify(std::string_view address, std::string_view myhostname) {
    if (address.empty() || address.find('@') != std::string_view::npos) return std::string(address);
    return std::string(address) + "@" + std::string(myhostname);
}

std::string domain_of(std::string_view address) {
    size_t at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    return lower(address.substr(at + 1));
}

Result<std::string, Refusal> check_local_sender(std::string_view sender, uid_t uid,
                                                const SubmitPolicy& policy) {
    std::optional<std::string> user = policy.user_name ? policy.user_name(uid) : std::nullopt;
    if (!user) return refuse(false, "5.7.1 uid " + std::to_string(uid) + " has no user name");
    bool trusted = std::find(policy.trusted_users.begin(), policy.trusted_users.end(), *user) !=
                   policy.trusted_users.end();
    std::string qualified = qualify(sender, policy.myhostname);
    if (trusted) return qualified;
    if (!sender.empty()) {
        size_t at = qualified.rfind('@');
        std::string_view local = std::string_view(qualified).substr(0, at);
        std::string_view domain = std::string_view(qualified).substr(at + 1);
        bool own_domain = iequal(domain, policy.myhostname) ||
                          (!policy.domains.empty() && iequal(domain, policy.domains.front()));
        if (local == *user && own_domain) return qualified;
    }
    std::string shown = sender.empty() ? "<>" : "<" + std::string(sender) + ">";
    return refuse(false, "5.7.1 " + *user + " (uid " + std::to_string(uid) +
                             ") may not use the sender " + shown + "; use " + *user + "@" +
                             policy.myhostname);
}

Result<spool::Envelope, Refusal> envelope_from_begin(const ipc::Message& begin,
                                                     const Submitter& who,
                                                     const SubmitPolicy& policy) {
    const auto& limits = policy.limits;
    spool::Envelope env;
    std::string_view sender = begin.get_str("sender").value_or("");
    if (auto c = check_value("sender", sender, limits); !c) return Err{c.error()};

    if (who.trusted_fields()) {
        std::string_view origin = begin.get_str("origin").value_or("");
        if (origin == "smtp")
            env.origin = spool::Origin::Smtp;
        else if (origin == "submission")
            env.origin = spool::Origin::Submission;
        else if (origin == "sendmail")
            env.origin = spool::Origin::Sendmail;
        else
            return refuse(false, "5.5.4 unknown origin '" + std::string(origin) + "'");
        env.origin_uid = env.origin == spool::Origin::Sendmail ? who.uid : 0;
        if (auto r = take(begin, "protocol", &env.protocol, limits); !r) return Err{r.error()};
        for (auto [field, out] :
             {std::pair{"client_address", &env.client_address},
              std::pair{"client_hostname", &env.client_hostname}, std::pair{"helo", &env.helo},
              std::pair{"tls", &env.tls}, std::pair{"auth_user", &env.auth_user}}) {
            if (auto r = take(begin, field, out, limits); !r) return Err{r.error()};
        }
        if (env.protocol.empty()) env.protocol = "local";
        env.sender = env.origin == spool::Origin::Sendmail ? qualify(sender, policy.myhostname)
                                                           : std::string(sender);
    } else {
        env.origin = spool::Origin::Sendmail;
        env.origin_uid = who.uid;
        env.protocol = "local";
        auto s = check_local_sender(sender, who.uid, policy);
        if (!s) return Err{s.error()};
        env.sender = std::move(*s);
    }
    if (auto c = check_value("sender", env.sender, limits); !c) return Err{c.error()};

    std::string body = lower(begin.get_str("body").value_or("7bit"));
    if (body == "7bit")
        env.body = spool::BodyType::SevenBit;
    else if (body == "8bitmime")
        env.body = spool::BodyType::EightBitMime;
    else if (body == "binarymime")
        env.body = spool::BodyType::BinaryMime;
    else
        return refuse(false, "5.5.4 unknown body type");
    env.smtputf8 = begin.get_u64("smtputf8").value_or(0) != 0;
    std::string ret = lower(begin.get_str("ret").value_or(""));
    if (ret.empty())
        env.ret = spool::DsnRet::Unspecified;
    else if (ret == "full")
        env.ret = spool::DsnRet::Full;
    else if (ret == "hdrs")
        env.ret = spool::DsnRet::Headers;
    else
        return refuse(false, "5.5.4 unknown RET value");
    if (auto r = take(begin, "envid", &env.envid, limits); !r) return Err{r.error()};
    return env;
}

Result<spool::Recipient, Refusal> make_recipient(std::string_view address, std::string_view orcpt,
                                                 uint64_t notify, const SubmitPolicy& policy) {
    const auto& limits = policy.limits;
    spool::Recipient r;
    if (address.empty()) return refuse(false, "5.1.3 empty recipient address");
    r.address = qualify(address, policy.myhostname);
    if (auto c = check_value("recipient", r.address, limits); !c) return Err{c.error()};
    if (auto c = check_value("orcpt", orcpt, limits); !c) return Err{c.error()};
    r.orcpt = std::string(orcpt);
    constexpr uint64_t kAll =
        spool::kNotifyNever | spool::kNotifySuccess | spool::kNotifyFailure | spool::kNotifyDelay;
    if ((notify & ~kAll) != 0 || ((notify & spool::kNotifyNever) && notify != spool::kNotifyNever))
        return refuse(false, "5.5.4 bad NOTIFY value");
    r.notify = static_cast<uint8_t>(notify);
    return r;
}

Result<spool::Recipient, Refusal> recipient_from_rcpt(const ipc::Message& rcpt,
                                                      const SubmitPolicy& policy) {
    return make_recipient(rcpt.get_str("address").value_or(""), rcpt.get_str("orcpt").value_or(""),
                          rcpt.get_u64("notify").value_or(0), policy);
}

}  // namespace pbx::qm
