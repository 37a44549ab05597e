// The envelope: everything the queue knows about a message except its bytes,
// stored as queue/ID.env, a text file an administrator can read with `cat`
// (DESIGN.md §4, STYLE.md 8). pillarbox-spool(5) documents the format key by
// key; in short:
//
//   pillarbox-envelope 1
//   id: 00060a1b2c3d4e001f2a
//   arrival: 1700000000
//   origin: smtp
//   client-address: 192.0.2.7
//   ...
//   rcpt: to=bob@example.org state=pending attempts=0 next=0 last=0 notify= orcpt= reply=
//   end
//
// Every value is xtext (RFC 3461) in canonical form (escaped exactly when it
// must be), so no field can carry a newline, NUL or space and each envelope
// has exactly one text form: write_envelope(read_envelope(t)) == t.
//
// The reader is strict, for a file that may have been damaged or edited by
// hand: unknown, duplicate or missing keys, a missing end marker, bytes after
// it, NUL, CR, an over-long line or too many recipients are each a typed
// error naming the line. The caller moves such a file to corrupt/.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/spool/queue_id.hpp"

namespace pbx::spool {

inline constexpr int kEnvelopeFormatVersion = 1;
inline constexpr std::string_view kEnvelopeMagic = "pillarbox-envelope";

using Seconds = std::chrono::sys_seconds;

struct EnvelopeLimits {
    size_t max_line_length = 16384;           // octets per line, without the "\n"
    size_t max_value_length = 1024;           // decoded octets per value
    size_t max_recipients = 10000;            // rcpt lines per envelope
    size_t max_file_size = 64 * 1024 * 1024;  // read_envelope_file() only
};

// Dsn: a delivery status notification the queue-manager generated (null
// sender); PostmasterNotice: the one notice to bounce_notice_recipient about a
// Dsn that could not be delivered (never answered by anything).
enum class Origin { Smtp, Submission, Sendmail, Dsn, PostmasterNotice };
enum class BodyType { SevenBit, EightBitMime, BinaryMime };
enum class DsnRet { Unspecified, Full, Headers };
enum class RcptState { Pending, Deferred, Delivered, Failed };

// DSN NOTIFY (RFC 3461 §4.1) as bits; 0 means the client gave no NOTIFY.
// Never is exclusive: it cannot be combined with the others.
enum NotifyFlags : uint8_t {
    kNotifyNever = 1,
    kNotifySuccess = 2,
    kNotifyFailure = 4,
    kNotifyDelay = 8,
};

struct Recipient {
    std::string address;  // the envelope recipient as accepted, without <>
    std::string orcpt;    // ORCPT as given ("rfc822;user@host"), empty if none
    uint8_t notify = 0;   // NotifyFlags
    RcptState state = RcptState::Pending;
    uint32_t attempts = 0;
    Seconds next_attempt{};  // epoch (0) = as soon as possible
    Seconds last_attempt{};  // epoch (0) = never attempted
    std::string last_reply;  // of the last attempt, one line (sanitize_reply)
    // The delivery status notification due for this recipient's final state
    // (delivered or failed) has been queued, or none was due; the optional
    // last rcpt field "notified=yes" (absent: false).
    bool notified = false;

    bool operator==(const Recipient&) const = default;
};

struct Envelope {
    int format_version = kEnvelopeFormatVersion;
    QueueId id;
    Seconds arrival{};
    Origin origin = Origin::Smtp;
    uint32_t origin_uid = 0;      // the submitting uid; written only for Sendmail
    std::string client_address;   // empty for local submission
    std::string client_hostname;  // verified reverse name, empty if none
    std::string helo;             // HELO/EHLO argument, empty if none
    std::string protocol;         // "SMTP", "ESMTPSA", "local"...; never empty
    std::string tls;              // "TLSv1.3 TLS_AES_256_GCM_SHA384", empty: none
    std::string auth_user;        // empty: not authenticated
    std::string sender;           // empty: the null sender <>
    BodyType body = BodyType::SevenBit;
    bool smtputf8 = false;
    uint64_t size = 0;  // octets of queue/ID.msg
    DsnRet ret = DsnRet::Unspecified;
    std::string envid;  // DSN ENVID, decoded; empty if none
    bool delay_notice_sent = false;
    std::vector<Recipient> recipients;  // at least one

    bool operator==(const Envelope&) const = default;
};

enum class EnvelopeErrc {
    BadVersion,          // first line is not "pillarbox-envelope N"
    UnsupportedVersion,  // a version this reader does not know
    LineTooLong,
    NulByte,
    CarriageReturn,
    UnterminatedLine,  // the input ends without "\n"
    BadLine,           // not "key: value", or a malformed rcpt line
    UnknownKey,
    DuplicateKey,
    MissingKey,
    BadValue,  // bad or non-canonical xtext, number, keyword, or a value too long
    TooManyRecipients,
    NoRecipients,
    MissingEnd,
    TrailingData,  // bytes after the end marker
    TooLarge,      // read_envelope_file(): over max_file_size
    Io,            // read_envelope_file(): the file could not be read
};

std::string_view to_string(EnvelopeErrc code);

struct EnvelopeError {
    EnvelopeErrc code;
    int line = 0;                   // 1-based; 0 when not about one line
    std::string detail;             // e.g. the key
    std::string to_string() const;  // "line 7: duplicate key: sender"
};

// The text form. Fails (never writes a file the reader would reject) when the
// envelope breaks a limit or an invariant: no recipients, an empty address or
// protocol, a value over max_value_length or holding NUL/CR/LF, NEVER combined
// with other NOTIFY flags, an invalid id. The error's line is the line the
// bad value would have been on.
Result<std::string, EnvelopeError> write_envelope(const Envelope& env,
                                                  const EnvelopeLimits& limits = {});

// Parses a whole envelope file. The caller checks that env.id matches the
// file name it read.
Result<Envelope, EnvelopeError> read_envelope(std::string_view text,
                                              const EnvelopeLimits& limits = {});

// Reads (O_NOFOLLOW, regular files only, at most max_file_size) and parses.
Result<Envelope, EnvelopeError> read_envelope_file(const std::string& path,
                                                   const EnvelopeLimits& limits = {});

// A remote reply made storable: CR, LF, NUL and other control octets become
// spaces, and the result is cut to max_value_length.
std::string sanitize_reply(std::string_view reply, const EnvelopeLimits& limits = {});

std::string_view to_string(RcptState s);
std::string_view to_string(Origin o);
std::string_view to_string(BodyType b);
// "SUCCESS,FAILURE,DELAY", "NEVER" or "" (not given).
std::string notify_to_string(uint8_t notify);

}  // namespace pbx::spool
