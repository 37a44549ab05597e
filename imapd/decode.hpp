// The text a person reads in a message, for SEARCH (RFC 3501 §6.4.4): mail
// clients search for words they see, so BODY, TEXT and HEADER match against
// decoded text as Dovecot does, not against the bytes on the wire: text
// parts' Content-Transfer-Encoding (base64, quoted-printable) undone and
// their charset converted to UTF-8, RFC 2047 encoded-words in header fields
// decoded, and matching case-insensitive for all of Unicode's simple case
// mappings, not only ASCII. Non-text parts (attachments) are not searched.
//
// Pure functions over bounded input; nothing here fails: what does not
// decode is kept as it is.
#pragma once

#include <string>
#include <string_view>

#include "imapd/mime.hpp"

namespace pbx::imap {

// Lenient, unlike the strict SASL decoder of common/smtp/sasl.hpp (which
// must refuse what RFC 4648 does not allow): MIME bodies carry line breaks
// and sometimes junk, and a reader still shows the text. Characters outside
// the base64 alphabet are skipped; it stops at '='.
std::string decode_base64(std::string_view in);
// "=XX" → the byte, "=" at the end of a line joins it with the next; a
// malformed "=" is kept.
std::string decode_quoted_printable(std::string_view in);
// `text` in `charset` as UTF-8; US-ASCII, UTF-8, an unknown charset or text
// that does not convert: unchanged.
std::string charset_to_utf8(std::string_view text, std::string_view charset);
// A header field's value with its RFC 2047 encoded-words decoded to UTF-8
// (whitespace between two adjacent encoded-words dropped, as the RFC says).
std::string decode_header_value(std::string_view value);
// Lower case of UTF-8 text by Unicode's simple mappings; bytes that are not
// UTF-8 are kept.
std::string fold_case(std::string_view utf8);

// The message's header with every field decoded (one "Name: value" line
// each, unfolded), and its body text: the decoded text/* parts, and the
// decoded headers and texts of attached messages, each followed by a line
// break.
struct SearchableText {
    std::string header, body;
};
SearchableText searchable_text(std::string_view msg, const MimePart& root);

}  // namespace pbx::imap
