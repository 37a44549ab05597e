// libFuzzer target for the spool's two readers of possibly hostile text: the
// envelope reader (queue/ID.env, after damage or a hand edit) and the
// maildrop reader (maildrop/ID, written through sendmail by any local user).
// The first input byte steers the run: bit 0 picks tight limits (short
// lines, few recipients, a small message) so the limit paths are reached;
// the rest is the file, fed to both readers.
//
// Properties checked besides "no crash, no sanitizer report":
// - an envelope that reads writes back, and reading that gives the same
//   envelope (keys may come in any order, so the bytes may differ);
// - a maildrop file that reads writes back to the very same bytes (its format
//   has one order and canonical values, so there is one text per file).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/spool/envelope.hpp"
#include "common/spool/maildrop.hpp"
#include "common/spool/xtext.hpp"

using namespace pbx::spool;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    bool tight = data[0] & 1;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

    EnvelopeLimits el;
    MaildropLimits ml;
    if (tight) {
        el.max_line_length = 120;
        el.max_value_length = 24;
        el.max_recipients = 3;
        ml.max_line_length = 64;
        ml.max_value_length = 24;
        ml.max_recipients = 3;
        ml.max_message_size = 64;
    }

    if (auto env = read_envelope(in, el); env.ok()) {
        auto text = write_envelope(*env, el);
        if (!text.ok()) std::abort();  // the writer must accept what the reader accepts
        auto again = read_envelope(*text, el);
        if (!again.ok() || !(*again == *env)) std::abort();
    } else if (env.error().to_string().empty()) {
        std::abort();
    }

    if (auto drop = read_maildrop(in, ml); drop.ok()) {
        auto text = write_maildrop(*drop, ml);
        if (!text.ok() || *text != in) std::abort();
    }

    // xtext alone: decode, and encode∘decode is the identity on canonical input.
    if (auto raw = xtext_decode(in); raw.ok()) {
        auto back = xtext_decode(xtext_encode(*raw));
        if (!back.ok() || *back != *raw) std::abort();
    }
    return 0;
}
