// The maildrop file: how `sendmail` hands a message to the queue when the
// queue-manager is not running (DESIGN.md §4 maildrop/). The setgid drop
// helper writes it with atomic_write() into maildrop/ (options: mode
// kMaildropFileMode, sync_dir false: the helper may not open the directory);
// the queue-manager picks it up later, which makes the file UNTRUSTED input:
// any local user can put arbitrary bytes through the helper. Hence a strict
// format with a fixed order, named limits, an exact message size and an end
// marker, parsed without ever reading past the input:
//
//   pillarbox-maildrop 1
//   uid: 1000                     the submitting uid, as the helper saw it
//   time: 1700000000              when it was written (seconds since epoch)
//   sender: alice@example.org     xtext; "sender:" alone is the null sender
//   rcpt: bob@example.org         xtext; one line per recipient, at least one
//   size: 1234                    octets of message that follow
//   <exactly `size` octets of message, as given to sendmail>
//   end
//
// The uid in the file is only a claim: the queue-manager also compares it
// with the owner of the file (the helper is setgid, not setuid, so the file
// belongs to the submitting user) and rejects a mismatch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/spool/envelope.hpp"

namespace pbx::spool {

inline constexpr int kMaildropFormatVersion = 1;
inline constexpr std::string_view kMaildropMagic = "pillarbox-maildrop";

struct MaildropLimits {
    size_t max_line_length = 4096;   // header line octets, without "\n"
    size_t max_value_length = 1024;  // decoded sender or recipient
    size_t max_recipients = 1000;
    uint64_t max_message_size = 50 * 1024 * 1024;  // set from message_size_limit
    // Whole file; read_maildrop_file() only. Header room on top of the message.
    uint64_t max_header_size = 4 * 1024 * 1024;
};

struct Maildrop {
    uint32_t uid = 0;
    Seconds time{};
    std::string sender;  // empty: the null sender
    std::vector<std::string> recipients;
    // The message. After read_maildrop() it points into the parsed buffer,
    // which must outlive it.
    std::string_view message;
};

enum class MaildropErrc {
    BadVersion,
    UnsupportedVersion,
    LineTooLong,
    NulByte,
    CarriageReturn,
    UnterminatedLine,
    BadLine,  // not "key: value"
    UnknownKey,
    DuplicateKey,
    MissingKey,  // a key is missing where the fixed order wants it
    BadValue,
    TooManyRecipients,
    NoRecipients,
    MessageTooLarge,
    Truncated,  // fewer message octets than size says
    MissingEnd,
    TrailingData,
    TooLarge,  // read_maildrop_file(): the file is larger than the limits allow
    Io,
};

std::string_view to_string(MaildropErrc code);

struct MaildropError {
    MaildropErrc code;
    int line = 0;
    std::string detail;
    std::string to_string() const;
};

Result<std::string, MaildropError> write_maildrop(const Maildrop& drop,
                                                  const MaildropLimits& limits = {});

Result<Maildrop, MaildropError> read_maildrop(std::string_view data,
                                              const MaildropLimits& limits = {});

// Reads the file into *buffer (which the result's message points into) and
// parses it. Also returns the file owner's uid in *file_uid for the check
// above.
Result<Maildrop, MaildropError> read_maildrop_file(const std::string& path,
                                                   const MaildropLimits& limits,
                                                   std::string* buffer, uid_t* file_uid);

}  // namespace pbx::spool
