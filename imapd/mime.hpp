// The MIME structure of a message for IMAP FETCH (RFC 3501 §6.4.5, §7.4.2;
// RFC 2045/2046/5322): ENVELOPE, BODY, BODYSTRUCTURE and BODY[section]. Pure
// functions over the message text in its CRLF form; offsets never point past
// it. Depth and part counts are limited; what does not parse is treated as
// text/plain, never as an error, as a mail client would.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pbx::imap {

// "\n" → "\r\n" where a bare LF stands (Maildir files written with LF).
std::string to_crlf(std::string_view text);
// Size of to_crlf(text) without building it.
size_t crlf_size(std::string_view text);

struct MimePart {
    size_t start = 0;  // first byte of the header
    size_t body = 0;   // first byte of the body (after the blank line)
    size_t end = 0;    // one past the last body byte
    std::string type = "TEXT", subtype = "PLAIN";
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<MimePart> children;  // multipart: the parts; message/rfc822: the message
    bool multipart() const { return type == "MULTIPART"; }
    bool message() const { return type == "MESSAGE" && subtype == "RFC822"; }
};

struct MimeLimits {
    size_t max_depth = 20;
    size_t max_parts = 2000;
};

// The structure of a whole message (the root part's header is the message's).
MimePart parse_mime(std::string_view msg, const MimeLimits& limits = {});

// Header access: the value of the first field `name` (unfolded), if any.
std::optional<std::string> header_field(std::string_view header, std::string_view name);
// Every field of `header` in order: its name and its unfolded value.
std::vector<std::pair<std::string_view, std::string>> header_field_list(std::string_view header);

// FETCH items, as IMAP text.
std::string envelope(std::string_view msg, const MimePart& root);
std::string bodystructure(std::string_view msg, const MimePart& root, bool extended);

// BODY[section]: `section` is the text between the brackets, e.g.
// "1.2.HEADER.FIELDS (From To)". nullopt when the section is malformed; an
// empty string when it names a part that does not exist.
std::optional<std::string> body_section(std::string_view msg, const MimePart& root,
                                        std::string_view section);
// Checks a section spec without a message (for BAD before doing work).
bool valid_section(std::string_view section);

// RFC 5322 header-field lines of `header` whose names are (not, when `not_`)
// in `names`, with the blank line after them.
std::string header_fields(std::string_view header, const std::vector<std::string>& names,
                          bool not_);

}  // namespace pbx::imap
