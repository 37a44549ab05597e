// The maildrop writer and its strict reader (the input is untrusted).
#include "common/spool/maildrop.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "common/spool/atomic_write.hpp"
#include "common/spool/envelope_format.hpp"
#include "common/spool/text_lines.hpp"
#include "common/spool/xtext.hpp"

namespace pbx::spool {
namespace {

constexpr std::string_view kEndLine = "end\n";

// The header keys, in their required order ("rcpt" repeats).
enum class MKey { Uid, Time, Sender, Rcpt, Size };
constexpr std::array<std::string_view, 5> kMKeyNames = {"uid", "time", "sender", "rcpt", "size"};

bool value_ok(std::string_view v, const MaildropLimits& limits) {
    return v.size() <= limits.max_value_length && !detail::has_line_breaking_octet(v);
}

class Reader {
  public:
    explicit Reader(const MaildropLimits& limits) : limits_(limits) {}

    Result<Maildrop, MaildropError> run(std::string_view data) {
        detail::LineCursor cur(data, limits_.max_line_length);
        std::string_view line;
        MKey expect = MKey::Uid;
        bool seen[kMKeyNames.size()] = {};
        for (;;) {
            detail::LineStatus st = cur.next(&line);
            line_ = cur.line_number();
            if (st == detail::LineStatus::Eof) {
                if (line_ == 0) return fail(MaildropErrc::BadVersion, "empty file", 1);
                if (expect == MKey::Rcpt && !drop_.recipients.empty()) expect = MKey::Size;
                return fail(MaildropErrc::MissingKey,
                            std::string(kMKeyNames[static_cast<size_t>(expect)]), line_ + 1);
            }
            if (st != detail::LineStatus::Ok) return fail(status_error(st), "");
            if (line_ == 1) {
                if (!version(line)) return Err{error_};
                continue;
            }
            std::string_view key, value;
            if (!split(line, &key, &value)) return Err{error_};
            int k = detail::find_word(kMKeyNames, key);
            if (k < 0) return fail(MaildropErrc::UnknownKey, std::string(key.substr(0, 64)));
            MKey got = static_cast<MKey>(k);
            if (expect == MKey::Rcpt && got == MKey::Size && !drop_.recipients.empty()) {
                expect = MKey::Size;
            }
            if (got != expect) {
                if (seen[k] && got != MKey::Rcpt) {
                    return fail(MaildropErrc::DuplicateKey, std::string(key));
                }
                if (got == MKey::Size && expect == MKey::Rcpt) {
                    return fail(MaildropErrc::NoRecipients, "");
                }
                return fail(MaildropErrc::MissingKey,
                            std::string(kMKeyNames[static_cast<size_t>(expect)]));
            }
            seen[k] = true;
            if (!field(got, value)) return Err{error_};
            if (got == MKey::Size) break;
            if (got != MKey::Rcpt) expect = static_cast<MKey>(k + 1);
        }
        // The message: exactly size_ octets, then the end line, then nothing.
        std::string_view rest = cur.rest();
        if (rest.size() < size_) {
            return fail(MaildropErrc::Truncated,
                        std::to_string(rest.size()) + " of " + std::to_string(size_) + " octets",
                        line_ + 1);
        }
        drop_.message = rest.substr(0, size_);
        std::string_view after = rest.substr(size_);
        int end_line = line_ + 1 + static_cast<int>(count_newlines(drop_.message));
        if (after.substr(0, kEndLine.size()) != kEndLine) {
            if (after == kEndLine.substr(0, 3)) {
                return fail(MaildropErrc::UnterminatedLine, "end", end_line);
            }
            return fail(MaildropErrc::MissingEnd, "", end_line);
        }
        if (after.size() > kEndLine.size()) {
            return fail(MaildropErrc::TrailingData, "", end_line + 1);
        }
        return std::move(drop_);
    }

  private:
    static size_t count_newlines(std::string_view s) {
        size_t n = 0;
        for (char c : s) n += c == '\n';
        return n;
    }

    static MaildropErrc status_error(detail::LineStatus st) {
        switch (st) {
            case detail::LineStatus::TooLong:
                return MaildropErrc::LineTooLong;
            case detail::LineStatus::Nul:
                return MaildropErrc::NulByte;
            case detail::LineStatus::CarriageReturn:
                return MaildropErrc::CarriageReturn;
            default:
                return MaildropErrc::UnterminatedLine;
        }
    }

    Err<MaildropError> fail(MaildropErrc code, std::string detail, int line = -1) {
        error_ = MaildropError{code, line < 0 ? line_ : line, std::move(detail)};
        return Err{error_};
    }
    bool bad(MaildropErrc code, std::string detail) {
        fail(code, std::move(detail));
        return false;
    }

    bool version(std::string_view line) {
        std::string_view magic = kMaildropMagic;
        if (line.size() <= magic.size() + 1 || line.substr(0, magic.size()) != magic ||
            line[magic.size()] != ' ') {
            return bad(MaildropErrc::BadVersion, "");
        }
        uint64_t v = 0;
        if (!detail::parse_decimal(line.substr(magic.size() + 1), 1u << 30, &v)) {
            return bad(MaildropErrc::BadVersion, "");
        }
        if (v != kMaildropFormatVersion) {
            return bad(MaildropErrc::UnsupportedVersion, std::to_string(v));
        }
        return true;
    }

    bool split(std::string_view line, std::string_view* key, std::string_view* value) {
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            return bad(MaildropErrc::BadLine, "expected 'key: value'");
        }
        *key = line.substr(0, colon);
        std::string_view rest = line.substr(colon + 1);
        *value = {};
        if (!rest.empty()) {
            if (rest[0] != ' ' || rest.size() == 1) {
                return bad(MaildropErrc::BadLine, "expected 'key: value'");
            }
            *value = rest.substr(1);
        }
        return true;
    }

    bool decode(std::string_view name, std::string_view raw, bool may_be_empty, std::string* out) {
        auto r = xtext_decode(raw);
        if (!r.ok()) {
            return bad(MaildropErrc::BadValue,
                       std::string(name) + ": " + std::string(to_string(r.error())));
        }
        if (r->empty() && !may_be_empty) {
            return bad(MaildropErrc::BadValue, std::string(name) + ": empty");
        }
        if (!value_ok(*r, limits_)) {
            return bad(MaildropErrc::BadValue,
                       std::string(name) + ": too long or contains NUL, CR or LF");
        }
        if (xtext_encode(*r) != raw) {
            return bad(MaildropErrc::BadValue, std::string(name) + ": non-canonical xtext");
        }
        *out = std::move(*r);
        return true;
    }

    bool number(std::string_view name, std::string_view raw, uint64_t max, uint64_t* out) {
        if (!detail::parse_decimal(raw, max, out)) {
            return bad(MaildropErrc::BadValue, std::string(name) + ": expected a number");
        }
        return true;
    }

    bool field(MKey k, std::string_view v) {
        uint64_t n = 0;
        switch (k) {
            case MKey::Uid:
                if (!number("uid", v, UINT32_MAX, &n)) return false;
                drop_.uid = static_cast<uint32_t>(n);
                return true;
            case MKey::Time:
                if (!number("time", v, detail::kMaxTimeValue, &n)) return false;
                drop_.time = Seconds(std::chrono::seconds(static_cast<int64_t>(n)));
                return true;
            case MKey::Sender:
                return decode("sender", v, true, &drop_.sender);
            case MKey::Rcpt: {
                if (drop_.recipients.size() >= limits_.max_recipients) {
                    return bad(MaildropErrc::TooManyRecipients,
                               "limit " + std::to_string(limits_.max_recipients));
                }
                std::string r;
                if (!decode("rcpt", v, false, &r)) return false;
                drop_.recipients.push_back(std::move(r));
                return true;
            }
            case MKey::Size:
                // Parse with a wide bound first so "too large" is told apart
                // from "not a number".
                if (!number("size", v, UINT64_MAX, &n)) return false;
                if (n > limits_.max_message_size) {
                    return bad(MaildropErrc::MessageTooLarge,
                               "limit " + std::to_string(limits_.max_message_size));
                }
                size_ = n;
                return true;
        }
        return bad(MaildropErrc::UnknownKey, "");
    }

    const MaildropLimits& limits_;
    Maildrop drop_;
    uint64_t size_ = 0;
    int line_ = 0;
    MaildropError error_{MaildropErrc::BadLine, 0, {}};
};

}  // namespace

std::string_view to_string(MaildropErrc code) {
    switch (code) {
        case MaildropErrc::BadVersion:
            return "not a maildrop file (bad version line)";
        case MaildropErrc::UnsupportedVersion:
            return "unsupported maildrop version";
        case MaildropErrc::LineTooLong:
            return "line too long";
        case MaildropErrc::NulByte:
            return "NUL byte";
        case MaildropErrc::CarriageReturn:
            return "carriage return";
        case MaildropErrc::UnterminatedLine:
            return "line has no newline";
        case MaildropErrc::BadLine:
            return "malformed line";
        case MaildropErrc::UnknownKey:
            return "unknown key";
        case MaildropErrc::DuplicateKey:
            return "duplicate key";
        case MaildropErrc::MissingKey:
            return "missing key";
        case MaildropErrc::BadValue:
            return "bad value";
        case MaildropErrc::TooManyRecipients:
            return "too many recipients";
        case MaildropErrc::NoRecipients:
            return "no recipients";
        case MaildropErrc::MessageTooLarge:
            return "message too large";
        case MaildropErrc::Truncated:
            return "message truncated";
        case MaildropErrc::MissingEnd:
            return "missing end marker";
        case MaildropErrc::TrailingData:
            return "data after end marker";
        case MaildropErrc::TooLarge:
            return "file too large";
        case MaildropErrc::Io:
            return "cannot read";
    }
    return "maildrop error";
}

std::string MaildropError::to_string() const {
    std::string out;
    if (line > 0) out = "line " + std::to_string(line) + ": ";
    out += spool::to_string(code);
    if (!detail.empty()) out += ": " + detail;
    return out;
}

Result<std::string, MaildropError> write_maildrop(const Maildrop& drop,
                                                  const MaildropLimits& limits) {
    auto error = [](MaildropErrc c, std::string d) {
        return Err{MaildropError{c, 0, std::move(d)}};
    };
    if (drop.recipients.empty()) return error(MaildropErrc::NoRecipients, "");
    if (drop.recipients.size() > limits.max_recipients) {
        return error(MaildropErrc::TooManyRecipients, std::to_string(drop.recipients.size()));
    }
    if (drop.message.size() > limits.max_message_size) {
        return error(MaildropErrc::MessageTooLarge, std::to_string(drop.message.size()));
    }
    auto t = drop.time.time_since_epoch().count();
    if (t < 0 || static_cast<uint64_t>(t) > detail::kMaxTimeValue) {
        return error(MaildropErrc::BadValue, "time out of range");
    }
    if (!value_ok(drop.sender, limits)) return error(MaildropErrc::BadValue, "sender");

    std::string out;
    auto line = [&](std::string text) -> bool {
        if (text.size() > limits.max_line_length) return false;
        out += text;
        out += '\n';
        return true;
    };
    std::string sender = xtext_encode(drop.sender);
    bool ok = line(std::string(kMaildropMagic) + " " + std::to_string(kMaildropFormatVersion)) &&
              line("uid: " + std::to_string(drop.uid)) && line("time: " + std::to_string(t)) &&
              line(sender.empty() ? "sender:" : "sender: " + sender);
    if (!ok) return error(MaildropErrc::LineTooLong, "sender");
    for (const std::string& r : drop.recipients) {
        if (r.empty() || !value_ok(r, limits)) return error(MaildropErrc::BadValue, "rcpt");
        if (!line("rcpt: " + xtext_encode(r))) return error(MaildropErrc::LineTooLong, "rcpt");
    }
    (void)line("size: " + std::to_string(drop.message.size()));
    out.append(drop.message);
    out.append(kEndLine);
    return out;
}

Result<Maildrop, MaildropError> read_maildrop(std::string_view data, const MaildropLimits& limits) {
    Reader reader(limits);
    return reader.run(data);
}

Result<Maildrop, MaildropError> read_maildrop_file(const std::string& path,
                                                   const MaildropLimits& limits,
                                                   std::string* buffer, uid_t* file_uid) {
    struct stat st {};
    uint64_t max = limits.max_message_size + limits.max_header_size;
    auto data = read_file_limited(path, static_cast<size_t>(max), sys::real(), &st);
    if (!data.ok()) {
        MaildropErrc code =
            data.error().sys_errno == EFBIG ? MaildropErrc::TooLarge : MaildropErrc::Io;
        return Err{MaildropError{code, 0, data.error().message}};
    }
    *buffer = std::move(*data);
    if (file_uid) *file_uid = st.st_uid;
    return read_maildrop(*buffer, limits);
}

}  // namespace pbx::spool
