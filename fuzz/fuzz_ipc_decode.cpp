// libFuzzer target for the IPC frame decoder (common/ipc/frame.hpp). The
// first input byte steers the run: bits 0-1 are the number of fds handed in
// with the frame, bit 2 asks the stream decoder to expect a hello first, and
// bits 3-7 (+1) are the chunk size the stream decoder is fed in. The rest is
// the wire data, decoded both as one whole frame and as a stream.
//
// Properties checked besides "no crash, no sanitizer report": a frame that
// decodes re-encodes to the very same bytes, and to_text() is one printable
// line.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "common/ipc/frame.hpp"

namespace {

using namespace pbx::ipc;

constexpr FieldSpec kDeliverFields[] = {
    {"id", Kind::U64, kRequired},
    {"sender", Kind::Str, kRequired},
    {"rcpt", Kind::Str, kRequired, kRepeated},
    {"note", Kind::Str},
    {"blob", Kind::Bytes},
    {"file", Kind::Fd},
    {"extra", Kind::Fd, kOptional, kRepeated},
};
constexpr FieldSpec kPingFields[] = {{"seq", Kind::U64, kRequired}};
constexpr MessageSpec kMessages[] = {
    {1, "deliver", kDeliverFields},
    {2, "ping", kPingFields},
    {3, "bye", {}},
};
constexpr Protocol kFuzz{"fuzz", 1, kMessages, 64 * 1024};
static_assert(well_formed(kFuzz));

std::vector<pbx::UniqueFd> some_fds(size_t n) {
    static const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    std::vector<pbx::UniqueFd> fds;
    for (size_t i = 0; i < n; ++i) {
        fds.emplace_back(::fcntl(null_fd, F_DUPFD_CLOEXEC, 0));
        if (!fds.back().valid()) std::abort();  // an fd leaked somewhere
    }
    return fds;
}

void check_text(const Message& m) {
    for (char c : to_text(kFuzz, m))
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t ctl = data[0];
    // UNSAFE: libFuzzer hands raw bytes; view them as chars.
    const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    const size_t nfds = ctl & 3;

    // One whole frame.
    auto fds = some_fds(nfds);
    auto whole = decode_frame(kFuzz, in, fds);
    if (whole.ok()) {
        check_text(*whole);
        auto again = encode(*whole);
        if (!again.ok() || again->bytes != in || again->fds.size() != nfds) std::abort();
    }

    // The same bytes as a stream, in chunks, fds arriving with the first one.
    Decoder dec(kFuzz, (ctl & 4) != 0);
    const size_t chunk = (ctl >> 3) + 1;
    for (size_t at = 0; at < in.size(); at += chunk) {
        dec.feed(in.substr(at, chunk));
        if (at == 0)
            for (auto& fd : some_fds(nfds)) dec.add_fd(std::move(fd));
        for (;;) {
            auto r = dec.next();
            if (!r.ok() || !r->has_value()) break;
            check_text(**r);
        }
    }
    (void)dec.finish();
    return 0;
}
