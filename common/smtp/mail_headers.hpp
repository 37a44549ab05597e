// The RFC 5322 message side of sendmail(1) and submitd: the header section, address
// lists (To:, Cc:, Bcc: for -t, and the recipient arguments), and the fix-ups
// of a locally submitted message (missing From:, Date:, Message-ID:; Bcc:
// removed). Pure functions over std::string_view with named limits: they
// never read past their input and never modify it.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace pbx::mail {

// ---- header section ------------------------------------------------------

struct HeaderLimits {
    size_t max_field_size = 64 * 1024;         // one field with its folded lines
    size_t max_header_size = 4 * 1024 * 1024;  // the whole header section
    size_t max_fields = 10000;
};

struct HeaderField {
    std::string_view name;   // as written, without the colon
    std::string_view text;   // the whole field, folded lines and final CRLF included
    std::string_view value;  // after the colon, folded lines included, final CRLF not
};

struct HeaderSection {
    std::vector<HeaderField> fields;
    size_t end = 0;              // offset just after the last field
    bool has_separator = false;  // an empty line follows the fields
    size_t body = 0;             // offset of the body (after the empty line, if any)
};

enum class HeaderErrc { FieldTooLong, HeaderTooLarge, TooManyFields };

struct HeaderError {
    HeaderErrc code;
    size_t line = 0;  // 1-based line of the message where it happened
    std::string to_string() const;
};

// Parses the header section of a CRLF message. A field is a name of printable
// ASCII without ':' (white space before the colon is tolerated, as RFC 5322's
// obsolete syntax allows), then ':'; a line starting with SP or HTAB
// continues it. The first line that is neither (an empty line, or a body line
// when the message has no separating empty line) ends the section: what
// follows is the body. Only the limits can make it fail.
Result<HeaderSection, HeaderError> parse_headers(std::string_view message,
                                                 const HeaderLimits& limits = {});

// The value with line folding removed (each CRLF before white space dropped).
std::string unfold(std::string_view value);

bool iequals(std::string_view a, std::string_view b);

// ---- address lists ----------------------------------------------------------

struct AddressLimits {
    size_t max_addresses = 1000;       // in one list, and recipients of one message
    size_t max_address_length = 1024;  // an addr-spec (the envelope's value limit)
    size_t max_comment_depth = 32;     // nested (comments (like (this)))
};

enum class AddressErrc {
    BadCharacter,         // a control character, or a stray ')' ']' '\'
    UnterminatedQuote,    // "...
    UnterminatedComment,  // (...
    UnterminatedLiteral,  // [...
    UnterminatedAngle,    // <... without '>'
    CommentTooDeep,       // more than max_comment_depth levels
    NestedGroup,          // a group inside a group
    BadSyntax,            // tokens that do not form an address
    AddressTooLong,       // over max_address_length
    TooManyAddresses,     // over max_addresses
};

struct AddressError {
    AddressErrc code;
    size_t offset = 0;  // into the parsed text
    std::string to_string() const;
};

// The addr-specs of an RFC 5322 address-list: "a@b, Name <c@d>, (comment)
// e@f, \"quoted name\" <\"odd local\"@g>, group: h@i, j@k;, undisclosed:;".
// Each address comes out without comments, white space or display name, its
// local part as written (quotes kept) and an obsolete source route
// (<@x,@y:u@z>) dropped. A bare local part ("root", what cron writes) is
// accepted; the queue-manager qualifies it. Empty list elements (",,") and
// empty groups contribute nothing, and a group left open at the end of the
// text is closed, as real mailers write them.
Result<std::vector<std::string>, AddressError> parse_address_list(std::string_view text,
                                                                  const AddressLimits& limits = {});

// ---- the local submission fix-ups ----------------------------------------

struct PrepareInput {
    bool extract_recipients = false;          // -t
    std::vector<std::string> arg_recipients;  // the operands, each an address list
    std::string from_address;                 // user@myhostname, for a missing From:
    std::string full_name;                    // -F (may be empty)
    std::string date;                         // for a missing Date: (format_date)
    std::string message_id;                   // for a missing Message-ID: ("<...>")
    HeaderLimits header_limits;
    AddressLimits address_limits;
};

struct Prepared {
    std::string message;                  // CRLF
    std::vector<std::string> recipients;  // in order, duplicates removed
};

enum class PrepareErrc { Header, Address, NoRecipients, TooManyRecipients };

struct PrepareError {
    PrepareErrc code;
    std::string text;  // for the user: "To: header: unterminated quoted string ..."
};

// Turns the CRLF message read from stdin into the message to queue:
//  - a leading mbox "From " line is dropped (it is not a header);
//  - recipients: the arguments, plus with -t those of the Resent-To:,
//    Resent-Cc: and Resent-Bcc: fields when the message has any (a resent
//    message), else of To:, Cc: and Bcc: (Postfix adds the arguments to the
//    header recipients likewise; sendmail 8 would remove them instead);
//  - Bcc: and Resent-Bcc: fields are removed, with -t or without (sendmail
//    8 does the same: the field would show every blind recipient);
//  - a missing From:, Date: or Message-ID: is added at the end of the
//    header section (RFC 5322 3.6 requires the first two);
//  - a body that follows the header fields without an empty line gets one.
Result<Prepared, PrepareError> prepare_message(std::string_view message, const PrepareInput& in);

// The header part of prepare_message() alone (no "From " line handling, no
// recipients): Bcc: removed, From:/Date:/Message-ID: added when missing, the
// empty line before the body ensured. sendmail -bs uses it on what arrived
// by SMTP.
Result<std::string, PrepareError> fix_up_headers(std::string_view message, const PrepareInput& in);

// "Fri, 21 Nov 1997 09:55:06 -0600" (RFC 5322 3.3) for `t` seen at UTC offset
// `offset_minutes`.
std::string format_date(std::time_t t, int offset_minutes);

// "<20250102030405.4f2a1b3c9d8e7f60.1234@host>": time, 64 random bits, pid.
std::string make_message_id(std::time_t t, uint64_t random, int pid, std::string_view host);

// The From: value for a missing From: field: "addr", or "\"Full Name\" <addr>"
// with the name quoted (RFC 5322 quoted-string), or RFC 2047 encoded words
// when it holds non-ASCII. Control characters are dropped.
std::string format_from(std::string_view full_name, std::string_view address);

}  // namespace pbx::mail
