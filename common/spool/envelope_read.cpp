// The strict envelope reader. Anything it does not understand is an error with
// a line number: a damaged envelope goes to corrupt/, it is never guessed at.
#include <cerrno>

#include "common/spool/atomic_write.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/envelope_format.hpp"
#include "common/spool/text_lines.hpp"
#include "common/spool/xtext.hpp"

namespace pbx::spool {
namespace {

using detail::Key;
using detail::kKeyNames;

constexpr size_t kKeyCount = kKeyNames.size();

class Reader {
  public:
    explicit Reader(const EnvelopeLimits& limits) : limits_(limits) {}

    Result<Envelope, EnvelopeError> run(std::string_view text) {
        detail::LineCursor cur(text, limits_.max_line_length);
        std::string_view line;
        for (;;) {
            detail::LineStatus st = cur.next(&line);
            line_ = cur.line_number();
            if (st == detail::LineStatus::Eof) {
                if (line_ == 0) return fail(EnvelopeErrc::BadVersion, "empty file", 1);
                return fail(EnvelopeErrc::MissingEnd, "", line_ + 1);
            }
            if (st != detail::LineStatus::Ok) return fail(status_error(st), "");
            if (line_ == 1) {
                if (!version(line)) return Err{error_};
                continue;
            }
            if (line == detail::kEndMarker) break;
            if (!key_line(line)) return Err{error_};
        }
        if (!cur.rest().empty()) return fail(EnvelopeErrc::TrailingData, "", line_ + 1);
        if (!finish()) return Err{error_};
        return std::move(env_);
    }

  private:
    static EnvelopeErrc status_error(detail::LineStatus st) {
        switch (st) {
            case detail::LineStatus::TooLong:
                return EnvelopeErrc::LineTooLong;
            case detail::LineStatus::Nul:
                return EnvelopeErrc::NulByte;
            case detail::LineStatus::CarriageReturn:
                return EnvelopeErrc::CarriageReturn;
            default:
                return EnvelopeErrc::UnterminatedLine;
        }
    }

    Err<EnvelopeError> fail(EnvelopeErrc code, std::string detail, int line = -1) {
        error_ = EnvelopeError{code, line < 0 ? line_ : line, std::move(detail)};
        return Err{error_};
    }
    bool bad(EnvelopeErrc code, std::string detail, int line = -1) {
        fail(code, std::move(detail), line);
        return false;
    }

    bool version(std::string_view line) {
        std::string_view magic = kEnvelopeMagic;
        if (line.size() <= magic.size() + 1 || line.substr(0, magic.size()) != magic ||
            line[magic.size()] != ' ') {
            return bad(EnvelopeErrc::BadVersion, "");
        }
        uint64_t v = 0;
        if (!detail::parse_decimal(line.substr(magic.size() + 1), 1u << 30, &v)) {
            return bad(EnvelopeErrc::BadVersion, "");
        }
        if (v != kEnvelopeFormatVersion) {
            return bad(EnvelopeErrc::UnsupportedVersion, std::to_string(v));
        }
        return true;
    }

    // Decodes one xtext value, which must be in canonical form.
    bool decode(std::string_view name, std::string_view raw, bool may_be_empty, std::string* out) {
        size_t off = 0;
        auto r = xtext_decode(raw, &off);
        if (!r.ok()) {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": " +
                                                   std::string(to_string(r.error())) +
                                                   " at offset " + std::to_string(off));
        }
        if (r->size() > limits_.max_value_length) {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": too long");
        }
        if (r->empty() && !may_be_empty) {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": empty");
        }
        if (detail::has_line_breaking_octet(*r)) {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": contains NUL, CR or LF");
        }
        if (xtext_encode(*r) != raw) {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": non-canonical xtext");
        }
        *out = std::move(*r);
        return true;
    }

    template <size_t N>
    bool word(std::string_view name, std::string_view raw,
              const std::array<std::string_view, N>& words, int* out) {
        int i = detail::find_word(words, raw);
        if (i < 0) return bad(EnvelopeErrc::BadValue, std::string(name) + ": unknown keyword");
        *out = i;
        return true;
    }

    bool yes_no(std::string_view name, std::string_view raw, bool* out) {
        if (raw == "yes") {
            *out = true;
        } else if (raw == "no") {
            *out = false;
        } else {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": expected yes or no");
        }
        return true;
    }

    bool number(std::string_view name, std::string_view raw, uint64_t max, uint64_t* out) {
        if (!detail::parse_decimal(raw, max, out)) {
            return bad(EnvelopeErrc::BadValue, std::string(name) + ": expected a number");
        }
        return true;
    }

    bool time(std::string_view name, std::string_view raw, Seconds* out) {
        uint64_t v = 0;
        if (!number(name, raw, detail::kMaxTimeValue, &v)) return false;
        *out = Seconds(std::chrono::seconds(static_cast<int64_t>(v)));
        return true;
    }

    bool key_line(std::string_view line) {
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            return bad(EnvelopeErrc::BadLine, "expected 'key: value'");
        }
        std::string_view key = line.substr(0, colon);
        std::string_view rest = line.substr(colon + 1);
        std::string_view value;
        if (!rest.empty()) {
            if (rest[0] != ' ' || rest.size() == 1) {
                return bad(EnvelopeErrc::BadLine, "expected 'key: value'");
            }
            value = rest.substr(1);
        }
        if (key == detail::kRcptKey) return rcpt(value);
        int k = detail::find_word(kKeyNames, key);
        if (k < 0) return bad(EnvelopeErrc::UnknownKey, std::string(key.substr(0, 64)));
        if (seen_[k]) return bad(EnvelopeErrc::DuplicateKey, std::string(key));
        seen_[k] = line_;
        return header(static_cast<Key>(k), key, value);
    }

    bool header(Key k, std::string_view name, std::string_view v) {
        int w = 0;
        uint64_t n = 0;
        std::string s;
        switch (k) {
            case Key::Id: {
                if (!decode(name, v, false, &s)) return false;
                auto id = QueueId::parse(s);
                if (!id.ok()) return bad(EnvelopeErrc::BadValue, "id: not a queue ID");
                env_.id = std::move(*id);
                return true;
            }
            case Key::Arrival:
                return time(name, v, &env_.arrival);
            case Key::Origin:
                if (!word(name, v, detail::kOriginWords, &w)) return false;
                env_.origin = static_cast<Origin>(w);
                return true;
            case Key::Uid:
                if (!number(name, v, UINT32_MAX, &n)) return false;
                env_.origin_uid = static_cast<uint32_t>(n);
                return true;
            case Key::ClientAddress:
                return decode(name, v, true, &env_.client_address);
            case Key::ClientHostname:
                return decode(name, v, true, &env_.client_hostname);
            case Key::Helo:
                return decode(name, v, true, &env_.helo);
            case Key::Protocol:
                return decode(name, v, false, &env_.protocol);
            case Key::Tls:
                return decode(name, v, true, &env_.tls);
            case Key::AuthUser:
                return decode(name, v, true, &env_.auth_user);
            case Key::Sender:
                return decode(name, v, true, &env_.sender);
            case Key::Body:
                if (!word(name, v, detail::kBodyWords, &w)) return false;
                env_.body = static_cast<BodyType>(w);
                return true;
            case Key::Smtputf8:
                return yes_no(name, v, &env_.smtputf8);
            case Key::Size:
                return number(name, v, INT64_MAX, &env_.size);
            case Key::Ret:
                if (!word(name, v, detail::kRetWords, &w)) return false;
                env_.ret = static_cast<DsnRet>(w);
                return true;
            case Key::Envid:
                return decode(name, v, true, &env_.envid);
            case Key::DelayNoticeSent:
                return yes_no(name, v, &env_.delay_notice_sent);
        }
        return bad(EnvelopeErrc::UnknownKey, std::string(name));
    }

    bool notify(std::string_view raw, uint8_t* out) {
        uint8_t flags = 0;
        std::string_view rest = raw;
        while (!rest.empty()) {
            size_t comma = rest.find(',');
            std::string_view w = rest.substr(0, comma);
            uint8_t bit = w == "NEVER"     ? kNotifyNever
                          : w == "SUCCESS" ? kNotifySuccess
                          : w == "FAILURE" ? kNotifyFailure
                          : w == "DELAY"   ? kNotifyDelay
                                           : 0;
            if (bit == 0 || (flags & bit)) {
                return bad(EnvelopeErrc::BadValue, "notify: unknown or repeated keyword");
            }
            flags |= bit;
            if (comma == std::string_view::npos) break;
            rest = rest.substr(comma + 1);
            if (rest.empty()) return bad(EnvelopeErrc::BadValue, "notify: trailing comma");
        }
        if ((flags & kNotifyNever) && flags != kNotifyNever) {
            return bad(EnvelopeErrc::BadValue, "notify: NEVER combined with other keywords");
        }
        if (notify_to_string(flags) != raw) {
            return bad(EnvelopeErrc::BadValue, "notify: not in canonical order");
        }
        *out = flags;
        return true;
    }

    bool rcpt(std::string_view value) {
        if (env_.recipients.size() >= limits_.max_recipients) {
            return bad(EnvelopeErrc::TooManyRecipients,
                       "limit " + std::to_string(limits_.max_recipients));
        }
        constexpr size_t kFields = detail::kRcptFields.size();
        std::string_view values[kFields];
        bool have[kFields] = {};
        size_t expect = 0;
        std::string_view rest = value;
        while (!rest.empty()) {
            size_t sp = rest.find(' ');
            std::string_view tok = rest.substr(0, sp);
            rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
            if (sp != std::string_view::npos && rest.empty()) {
                return bad(EnvelopeErrc::BadLine, "rcpt: trailing space");
            }
            size_t eq = tok.find('=');
            if (eq == std::string_view::npos) {
                return bad(EnvelopeErrc::BadLine, "rcpt: expected field=value");
            }
            std::string_view name = tok.substr(0, eq);
            int f = detail::find_word(detail::kRcptFields, name);
            if (f < 0) {
                return bad(EnvelopeErrc::UnknownKey,
                           "rcpt field " + std::string(name.substr(0, 64)));
            }
            if (have[f]) return bad(EnvelopeErrc::DuplicateKey, "rcpt field " + std::string(name));
            if (static_cast<size_t>(f) != expect) {
                return bad(EnvelopeErrc::BadLine,
                           "rcpt field " + std::string(name) + " out of order");
            }
            have[f] = true;
            values[f] = tok.substr(eq + 1);
            ++expect;
        }
        if (expect < detail::kRcptRequiredFields) {
            return bad(EnvelopeErrc::MissingKey,
                       "rcpt field " + std::string(detail::kRcptFields[expect]));
        }
        Recipient r;
        int w = 0;
        uint64_t n = 0;
        if (!decode("to", values[0], false, &r.address)) return false;
        if (!word("state", values[1], detail::kStateWords, &w)) return false;
        r.state = static_cast<RcptState>(w);
        if (!number("attempts", values[2], UINT32_MAX, &n)) return false;
        r.attempts = static_cast<uint32_t>(n);
        if (!time("next", values[3], &r.next_attempt) ||
            !time("last", values[4], &r.last_attempt) || !notify(values[5], &r.notify) ||
            !decode("orcpt", values[6], true, &r.orcpt) ||
            !decode("reply", values[7], true, &r.last_reply)) {
            return false;
        }
        if (have[8]) {
            if (values[8] != "yes") {
                return bad(EnvelopeErrc::BadValue, "notified: expected yes (or no field)");
            }
            r.notified = true;
        }
        env_.recipients.push_back(std::move(r));
        return true;
    }

    bool finish() {
        for (size_t k = 0; k < kKeyCount; ++k) {
            if (seen_[k] || static_cast<Key>(k) == Key::Uid) continue;
            return bad(EnvelopeErrc::MissingKey, std::string(kKeyNames[k]));
        }
        int uid_line = seen_[static_cast<size_t>(Key::Uid)];
        if (env_.origin == Origin::Sendmail && uid_line == 0) {
            return bad(EnvelopeErrc::MissingKey, "uid (required with origin sendmail)");
        }
        if (env_.origin != Origin::Sendmail && uid_line != 0) {
            return bad(EnvelopeErrc::BadValue, "uid: only with origin sendmail", uid_line);
        }
        if (env_.recipients.empty()) return bad(EnvelopeErrc::NoRecipients, "");
        return true;
    }

    const EnvelopeLimits& limits_;
    Envelope env_;
    int line_ = 0;
    int seen_[kKeyCount] = {};  // line where each key was seen, 0 = not yet
    EnvelopeError error_{EnvelopeErrc::BadLine, 0, {}};
};

}  // namespace

Result<Envelope, EnvelopeError> read_envelope(std::string_view text, const EnvelopeLimits& limits) {
    Reader reader(limits);
    return reader.run(text);
}

Result<Envelope, EnvelopeError> read_envelope_file(const std::string& path,
                                                   const EnvelopeLimits& limits) {
    auto data = read_file_limited(path, limits.max_file_size);
    if (!data.ok()) {
        EnvelopeErrc code =
            data.error().sys_errno == EFBIG ? EnvelopeErrc::TooLarge : EnvelopeErrc::Io;
        return Err{EnvelopeError{code, 0, data.error().message}};
    }
    return read_envelope(*data, limits);
}

}  // namespace pbx::spool
