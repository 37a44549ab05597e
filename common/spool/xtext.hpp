// xtext (RFC 3461 §4): the encoding of every value in an envelope or maildrop
// file, so that no field can carry a newline, a NUL or a space.
//
//   xtext   = *( xchar / hexchar )
//   xchar   = any octet from 33 ("!") to 126 ("~") except "+" and "="
//   hexchar = "+" two UPPERCASE hex digits
//
// encode() escapes every octet outside 33..126 and "+" and "=". decode() is
// strict: a "+" not followed by two uppercase hex digits, "=", or any octet
// outside 33..126 is an error. Non-canonical escapes of printable octets
// ("+41" for "A") are valid xtext and decode normally.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace pbx::spool {

enum class XtextError {
    BadChar,  // an octet outside 33..126, or "="
    BadHex,   // "+" not followed by two uppercase hex digits
};

std::string_view to_string(XtextError e);

std::string xtext_encode(std::string_view raw);

// On error, `*error_offset` (when given) is the offset of the bad octet.
Result<std::string, XtextError> xtext_decode(std::string_view text, size_t* error_offset = nullptr);

// Size of xtext_encode(raw) without building it.
size_t xtext_encoded_size(std::string_view raw);

}  // namespace pbx::spool
