// sendmail -bs: the SMTP server engine of smtpd (common/smtp/engine.hpp)
// over stdin/stdout, for programs that speak SMTP to a local sendmail. Each
// message the engine accepts goes the same way as the normal path: header
// fix-ups, then the queue-manager or postdrop. The same trust as ever: the
// session runs as the invoking user, and MAIL FROM is only a request the
// queue-manager checks against SO_PEERCRED.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <variant>

#include "common/smtp/engine.hpp"
#include "tools/sendmail_run.hpp"

namespace pbx::mail {
namespace {

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// "5.7.1 text" → {"5.7.1", "text"}; no code → {"", text}.
std::pair<std::string, std::string> split_enhanced(std::string_view text) {
    size_t sp = text.find(' ');
    std::string_view code = text.substr(0, sp);
    bool looks = code.size() >= 5 && (code[0] == '4' || code[0] == '5') && code[1] == '.';
    if (!looks || sp == std::string_view::npos) return {"", std::string(text)};
    return {std::string(code), std::string(text.substr(sp + 1))};
}

class StdioSession {
  public:
    StdioSession(const Context& ctx, const Options& o)
        : ctx_(ctx), opts_(o), engine_(limits(ctx), policy(ctx), session(ctx)) {}

    int run() {
        if (!write_all(1, engine_.greeting())) return kExIoErr;
        std::string input;
        for (;;) {
            if (int rc = handle_outputs(); rc >= 0) return rc;
            if (engine_.closed()) return kExOk;
            if (!input.empty() && engine_.wants_input()) {
                input.erase(0, engine_.feed(input));
                continue;
            }
            if (!engine_.wants_input()) return kExSoftware;  // nothing can make progress
            auto r = read_some();
            if (!r) return kExOk;  // end of input: the client went away
            if (r->empty()) {
                engine_.timed_out();
                continue;
            }
            input += filter_.convert(*r);
        }
    }

  private:
    static smtp::Limits limits(const Context& ctx) {
        smtp::Limits l = smtp::limits_from_config(ctx.config);
        l.message_size_limit = ctx.size_limit;
        return l;
    }
    static smtp::Policy policy(const Context& ctx) {
        smtp::Policy p;
        p.local_domains = ctx.config.list("domains");
        p.local_domains.push_back(ctx.myhostname);
        // A local user may send to any address through sendmail anyway, so
        // the session may "relay" too; the queue-manager still decides.
        p.client_trusted = true;
        return p;
    }
    static smtp::SessionInfo session(const Context& ctx) {
        smtp::SessionInfo s;
        s.hostname = ctx.myhostname;
        return s;
    }

    // One read from stdin: nullopt at end of input (or on an error), an
    // empty string when the phase's timeout expired.
    std::optional<std::string> read_some() {
        std::chrono::seconds timeout{-1};
        switch (engine_.phase()) {
            case smtp::Phase::Command:
                timeout = ctx_.config.duration("smtpd_command_timeout");
                break;
            case smtp::Phase::Data:
                timeout = ctx_.config.duration("smtpd_data_timeout");
                break;
            case smtp::Phase::Waiting:
                break;
        }
        pollfd p{0, POLLIN, 0};
        int ms = timeout.count() < 0 ? -1 : static_cast<int>(timeout.count() * 1000);
        int n;
        do {
            n = ::poll(&p, 1, ms);
        } while (n < 0 && errno == EINTR);
        if (n == 0) return std::string();
        if (n < 0) return std::nullopt;
        char buf[16384];
        ssize_t got;
        do {
            got = ::read(0, buf, sizeof buf);
        } while (got < 0 && errno == EINTR);
        if (got <= 0) return std::nullopt;
        return std::string(buf, static_cast<size_t>(got));
    }

    // Returns an exit code when the session must end, else -1.
    int handle_outputs() {
        for (;;) {
            auto outputs = engine_.take_output();
            if (outputs.empty()) return -1;
            for (auto& o : outputs) {
                if (auto* reply = std::get_if<smtp::Reply>(&o)) {
                    if (!write_all(1, reply->text)) return kExIoErr;
                } else if (auto* look = std::get_if<smtp::LookupRecipient>(&o)) {
                    // No user lookup here: local-delivery bounces an unknown
                    // user, exactly as for `sendmail user`.
                    engine_.recipient_result(smtp::RecipientResult::found(look->address.str()));
                } else if (auto* begin = std::get_if<smtp::BeginMessage>(&o)) {
                    envelope_ = begin->envelope;
                    data_.clear();
                } else if (auto* chunk = std::get_if<smtp::MessageChunk>(&o)) {
                    data_ += chunk->bytes;  // bounded by the engine's message_size_limit
                } else if (std::holds_alternative<smtp::EndMessage>(o)) {
                    engine_.message_result(finish_message());
                } else if (std::holds_alternative<smtp::AbortMessage>(o)) {
                    data_.clear();
                } else if (std::holds_alternative<smtp::Close>(o)) {
                    return kExOk;
                }
                // StartTls and Authenticate are never offered; InputDiscarded
                // needs no action.
            }
        }
    }

    smtp::MessageResult finish_message() {
        PrepareInput in = prepare_input(ctx_, opts_);
        auto fixed = fix_up_headers(data_, in);
        data_.clear();
        if (!fixed) return smtp::MessageResult::perm_fail(fixed.error().text, "5.6.0");
        Submission s;
        s.sender = envelope_.mail_from;
        for (const auto& r : envelope_.recipients) {
            Recipient rc{r.address, r.notify, {}};
            if (!r.orcpt_type.empty()) rc.orcpt = r.orcpt_type + ";" + r.orcpt;
            s.recipients.push_back(std::move(rc));
        }
        s.ret = envelope_.ret == smtp::DsnRet::Full   ? "FULL"
                : envelope_.ret == smtp::DsnRet::Hdrs ? "HDRS"
                                                      : "";
        s.envid = envelope_.envid;
        s.body = envelope_.body == smtp::BodyType::EightBitMime ? "8BITMIME" : "7BIT";
        s.smtputf8 = envelope_.smtputf8;
        s.message = std::move(*fixed);
        if (s.message.size() > ctx_.size_limit)
            return smtp::MessageResult::perm_fail("Error: message size exceeds fixed limit",
                                                  "5.3.4");
        Delivery d = deliver(ctx_, s);
        if (d.exit_code == kExOk)
            return smtp::MessageResult::queued(d.dropped ? "maildrop (the queue-manager picks"
                                                           " it up when it runs)"
                                                         : d.queue_id);
        auto [code, text] = split_enhanced(d.refusal.empty() ? d.text : d.refusal);
        if (d.exit_code == kExTempFail || code.starts_with("4"))
            return smtp::MessageResult::temp_fail(text);
        return smtp::MessageResult::perm_fail(text, code.empty() ? "5.3.0" : code);
    }

    const Context& ctx_;
    const Options& opts_;
    smtp::Engine engine_;
    CrlfFilter filter_;
    smtp::Envelope envelope_;
    std::string data_;
};

}  // namespace

int run_smtp_session(const Context& ctx, const Options& o) {
    StdioSession s(ctx, o);
    return s.run();
}

}  // namespace pbx::mail
