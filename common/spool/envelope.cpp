// The envelope writer, and the names shared with the reader.
#include "common/spool/envelope.hpp"

#include "common/spool/envelope_format.hpp"
#include "common/spool/xtext.hpp"

namespace pbx::spool {

using detail::Key;
using detail::kKeyNames;

std::string_view to_string(EnvelopeErrc code) {
    switch (code) {
        case EnvelopeErrc::BadVersion:
            return "not an envelope (bad version line)";
        case EnvelopeErrc::UnsupportedVersion:
            return "unsupported envelope version";
        case EnvelopeErrc::LineTooLong:
            return "line too long";
        case EnvelopeErrc::NulByte:
            return "NUL byte";
        case EnvelopeErrc::CarriageReturn:
            return "carriage return";
        case EnvelopeErrc::UnterminatedLine:
            return "last line has no newline";
        case EnvelopeErrc::BadLine:
            return "malformed line";
        case EnvelopeErrc::UnknownKey:
            return "unknown key";
        case EnvelopeErrc::DuplicateKey:
            return "duplicate key";
        case EnvelopeErrc::MissingKey:
            return "missing key";
        case EnvelopeErrc::BadValue:
            return "bad value";
        case EnvelopeErrc::TooManyRecipients:
            return "too many recipients";
        case EnvelopeErrc::NoRecipients:
            return "no recipients";
        case EnvelopeErrc::MissingEnd:
            return "missing end marker";
        case EnvelopeErrc::TrailingData:
            return "data after end marker";
        case EnvelopeErrc::TooLarge:
            return "file too large";
        case EnvelopeErrc::Io:
            return "cannot read";
    }
    return "envelope error";
}

std::string EnvelopeError::to_string() const {
    std::string out;
    if (line > 0) out = "line " + std::to_string(line) + ": ";
    out += spool::to_string(code);
    if (!detail.empty()) out += ": " + detail;
    return out;
}

std::string_view to_string(RcptState s) {
    return detail::kStateWords[static_cast<size_t>(s)];
}
std::string_view to_string(Origin o) {
    return detail::kOriginWords[static_cast<size_t>(o)];
}
std::string_view to_string(BodyType b) {
    return detail::kBodyWords[static_cast<size_t>(b)];
}

std::string notify_to_string(uint8_t notify) {
    if (notify & kNotifyNever) return "NEVER";
    std::string out;
    auto add = [&](uint8_t bit, const char* word) {
        if (!(notify & bit)) return;
        if (!out.empty()) out += ',';
        out += word;
    };
    add(kNotifySuccess, "SUCCESS");
    add(kNotifyFailure, "FAILURE");
    add(kNotifyDelay, "DELAY");
    return out;
}

std::string sanitize_reply(std::string_view reply, const EnvelopeLimits& limits) {
    std::string out(reply.substr(0, limits.max_value_length));
    for (char& c : out) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) c = ' ';
    }
    return out;
}

namespace {

class Writer {
  public:
    explicit Writer(const EnvelopeLimits& limits) : limits_(limits) {}

    bool line(std::string_view text) {
        ++line_;
        if (text.size() > limits_.max_line_length) {
            return fail(EnvelopeErrc::LineTooLong, std::string(text.substr(0, text.find(':'))));
        }
        out_.append(text);
        out_ += '\n';
        return true;
    }

    // Checks a string value and returns its canonical xtext.
    bool value(std::string_view name, std::string_view raw, bool may_be_empty,
               std::string* encoded) {
        if (raw.empty() && !may_be_empty) return fail_next(EnvelopeErrc::BadValue, name, "empty");
        if (raw.size() > limits_.max_value_length) {
            return fail_next(EnvelopeErrc::BadValue, name, "too long");
        }
        if (detail::has_line_breaking_octet(raw)) {
            return fail_next(EnvelopeErrc::BadValue, name, "contains NUL, CR or LF");
        }
        *encoded = xtext_encode(raw);
        return true;
    }

    bool key(Key k, std::string_view raw, bool may_be_empty) {
        std::string_view name = kKeyNames[static_cast<size_t>(k)];
        std::string enc;
        if (!value(name, raw, may_be_empty, &enc)) return false;
        std::string text(name);
        text += ':';
        if (!enc.empty()) {
            text += ' ';
            text += enc;
        }
        return line(text);
    }

    bool fail_next(EnvelopeErrc code, std::string_view name, std::string_view why) {
        error_ = EnvelopeError{code, line_ + 1, std::string(name) + ": " + std::string(why)};
        return false;
    }
    bool fail(EnvelopeErrc code, std::string detail) {
        error_ = EnvelopeError{code, line_, std::move(detail)};
        return false;
    }

    std::string out_;
    EnvelopeError error_{EnvelopeErrc::BadValue, 0, {}};

  private:
    const EnvelopeLimits& limits_;
    int line_ = 0;
};

std::string seconds_text(Seconds t) {
    return std::to_string(t.time_since_epoch().count());
}

bool time_ok(Seconds t) {
    auto v = t.time_since_epoch().count();
    return v >= 0 && static_cast<uint64_t>(v) <= detail::kMaxTimeValue;
}

bool write_recipient(Writer& w, const Recipient& r) {
    if (!time_ok(r.next_attempt) || !time_ok(r.last_attempt)) {
        return w.fail_next(EnvelopeErrc::BadValue, "rcpt", "time out of range");
    }
    if ((r.notify & kNotifyNever) && r.notify != kNotifyNever) {
        return w.fail_next(EnvelopeErrc::BadValue, "rcpt", "NEVER combined with other NOTIFY");
    }
    if (r.notify & ~(kNotifyNever | kNotifySuccess | kNotifyFailure | kNotifyDelay)) {
        return w.fail_next(EnvelopeErrc::BadValue, "rcpt", "unknown NOTIFY bit");
    }
    std::string to, orcpt, reply;
    if (!w.value("to", r.address, false, &to) || !w.value("orcpt", r.orcpt, true, &orcpt) ||
        !w.value("reply", r.last_reply, true, &reply)) {
        return false;
    }
    std::string text = "rcpt: to=" + to;
    text += " state=";
    text += to_string(r.state);
    text += " attempts=" + std::to_string(r.attempts);
    text += " next=" + seconds_text(r.next_attempt);
    text += " last=" + seconds_text(r.last_attempt);
    text += " notify=" + notify_to_string(r.notify);
    text += " orcpt=" + orcpt;
    text += " reply=" + reply;
    if (r.notified) text += " notified=yes";
    return w.line(text);
}

}  // namespace

Result<std::string, EnvelopeError> write_envelope(const Envelope& env,
                                                  const EnvelopeLimits& limits) {
    Writer w(limits);
    auto failed = [&]() { return Err{w.error_}; };

    if (env.format_version != kEnvelopeFormatVersion) {
        w.fail_next(EnvelopeErrc::UnsupportedVersion, "version",
                    std::to_string(env.format_version));
        return failed();
    }
    if (!w.line(std::string(kEnvelopeMagic) + " " + std::to_string(kEnvelopeFormatVersion))) {
        return failed();
    }
    if (!env.id.valid() || !QueueId::validate(env.id.str())) {
        w.fail_next(EnvelopeErrc::BadValue, "id", "not a queue ID");
        return failed();
    }
    if (!time_ok(env.arrival)) {
        w.fail_next(EnvelopeErrc::BadValue, "arrival", "out of range");
        return failed();
    }
    if (env.size > static_cast<uint64_t>(INT64_MAX)) {
        w.fail_next(EnvelopeErrc::BadValue, "size", "out of range");
        return failed();
    }
    if (env.recipients.empty()) {
        w.fail_next(EnvelopeErrc::NoRecipients, "", "");
        return failed();
    }
    if (env.recipients.size() > limits.max_recipients) {
        w.fail_next(EnvelopeErrc::TooManyRecipients, "rcpt", std::to_string(env.recipients.size()));
        return failed();
    }
    bool ok = w.key(Key::Id, env.id.str(), false) &&
              w.key(Key::Arrival, seconds_text(env.arrival), false) &&
              w.key(Key::Origin, to_string(env.origin), false) &&
              (env.origin != Origin::Sendmail ||
               w.key(Key::Uid, std::to_string(env.origin_uid), false)) &&
              w.key(Key::ClientAddress, env.client_address, true) &&
              w.key(Key::ClientHostname, env.client_hostname, true) &&
              w.key(Key::Helo, env.helo, true) && w.key(Key::Protocol, env.protocol, false) &&
              w.key(Key::Tls, env.tls, true) && w.key(Key::AuthUser, env.auth_user, true) &&
              w.key(Key::Sender, env.sender, true) &&
              w.key(Key::Body, to_string(env.body), false) &&
              w.key(Key::Smtputf8, env.smtputf8 ? "yes" : "no", false) &&
              w.key(Key::Size, std::to_string(env.size), false) &&
              w.key(Key::Ret, detail::kRetWords[static_cast<size_t>(env.ret)], true) &&
              w.key(Key::Envid, env.envid, true) &&
              w.key(Key::DelayNoticeSent, env.delay_notice_sent ? "yes" : "no", false);
    if (!ok) return failed();
    for (const Recipient& r : env.recipients)
        if (!write_recipient(w, r)) return failed();
    if (!w.line(detail::kEndMarker)) return failed();
    return std::move(w.out_);
}

}  // namespace pbx::spool
