// libFuzzer target: the IMAP command reader (imapd/parser) fed arbitrary
// client bytes in pieces whose sizes the input chooses; then the sequence-set
// parser on every atom of every command.
//
// Input layout: byte 0 picks the limits and byte 1 seeds the piece sizes; the
// rest is what the client sends. It checks the reader's promises and aborts
// when one is broken: feed() never consumes more than it is given, makes
// progress unless it reports an event, and no command exceeds the limits.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "imapd/parser.hpp"

using namespace pbx::imap;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

size_t depth_of(const Value& v) {
    size_t d = 0;
    if (v.is_list())
        for (const auto& c : v.list) d = std::max(d, depth_of(c));
    return v.is_list() ? d + 1 : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    Limits limits;
    if (data[0] & 1) {
        limits.max_line = 64;
        limits.max_literal = 16;
        limits.max_append_literal = 32;
        limits.max_command = 256;
        limits.max_depth = 1 + (data[0] >> 5);
    }
    uint32_t rng = data[1] * 2654435761u + 1;
    std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
    CommandReader reader(limits);
    std::string pending;
    size_t pos = 0;
    while (pos < input.size() || !pending.empty()) {
        rng = rng * 1103515245u + 12345u;
        size_t n = 1 + (rng >> 8) % 64;
        n = std::min(n, input.size() - pos);
        pending.append(input.substr(pos, n));
        pos += n;
        for (;;) {
            Event ev;
            size_t used = reader.feed(pending, ev);
            require(used <= pending.size());
            pending.erase(0, used);
            if (ev.kind == Event::Kind::None) {
                require(pending.empty());
                break;
            }
            if (ev.kind == Event::Kind::Command) {
                require(!ev.command.tag.empty() && !ev.command.name.empty());
                for (const auto& a : ev.command.args) {
                    require(depth_of(a) <= limits.max_depth);
                    if (a.is_atom()) {
                        if (auto s = parse_sequence_set(a.text)) (void)s->contains(5, 7);
                    }
                }
            }
        }
        if (n == 0) break;
    }
    return 0;
}
