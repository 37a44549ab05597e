// libFuzzer target: the MIME parser of imapd (imapd/mime) on arbitrary
// message text: structure, ENVELOPE, BODYSTRUCTURE and every section that
// the structure names, plus some malformed sections. Checks that offsets
// stay inside the message and sections are substrings of it (or built from
// its header lines). Also SEARCH's decoded text of the message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "imapd/decode.hpp"
#include "imapd/mime.hpp"

using namespace pbx::imap;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

void walk(std::string_view msg, const MimePart& root, const MimePart& p, const std::string& path,
          int budget) {
    require(p.start <= p.body && p.body <= p.end && p.end <= msg.size());
    if (budget <= 0) return;
    for (const char* suffix : {"", ".MIME", ".HEADER", ".TEXT", ".HEADER.FIELDS (From Subject)"}) {
        std::string s = path + suffix;
        if (path.empty() && (s.empty() || s[0] == '.')) s = s.empty() ? "" : s.substr(1);
        if (path.empty() && std::string_view(suffix) == ".MIME") continue;
        auto r = body_section(msg, root, s);
        if (r && std::string_view(suffix).empty() && !path.empty())
            require(msg.find(*r) != std::string_view::npos || r->empty());
    }
    for (size_t i = 0; i < p.children.size() && i < 8; ++i)
        walk(msg, root, p.children[i],
             path.empty() ? std::to_string(i + 1) : path + "." + std::to_string(i + 1), budget - 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string raw(reinterpret_cast<const char*>(data), size);
    std::string msg = to_crlf(raw);
    require(msg.size() == crlf_size(raw));
    MimePart root = parse_mime(msg);
    (void)envelope(msg, root);
    (void)bodystructure(msg, root, true);
    (void)bodystructure(msg, root, false);
    walk(msg, root, root, "", 6);
    // SEARCH's decoding (base64, quoted-printable, charsets, RFC 2047) and
    // case folding of whatever the parts hold.
    SearchableText text = searchable_text(msg, root);
    (void)fold_case(text.header);
    (void)fold_case(text.body);
    (void)decode_header_value(raw);
    for (const char* bad : {"0", "1.", ".1", "1..2", "HEADER.FIELDS", "HEADER.FIELDS ()", "X"})
        require(!body_section(msg, root, bad).has_value());
    return 0;
}
