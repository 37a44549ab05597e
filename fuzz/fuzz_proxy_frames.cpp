// libFuzzer target for the login process's decoding of the session's proxy
// frames (common/login/reply_ahead.hpp, common/ipc/proxy_msgs.hpp): the
// session runs as the mail user, so to the login process its frames are
// untrusted. The first input byte steers: bits 0-5 (+1) the chunk size the
// frames are fed in, bit 6 whether a valid hello is put first (so that the
// fuzzer reaches the messages), bit 7 whether client bytes are interleaved.
// Checked besides "no crash, no sanitizer report": the held client bytes
// never exceed kMaxHeld, nothing is accepted after a refusal, and bytes go
// to the session only up to what the client sent.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/ipc/proxy_msgs.hpp"
#include "common/login/reply_ahead.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pbx;
    if (size == 0) return 0;
    const uint8_t ctl = data[0];
    const size_t chunk = (ctl & 0x3f) + 1;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    login::ReplyAhead a;
    if (ctl & 0x40) {
        auto e = ipc::encode(ipc::make_hello(ipc::proxy::kProtocol));
        if (!e || !a.from_session(e->bytes)) std::abort();
    }
    static const std::string kClient = "RETR 1\r\nRETR 2\r\nNOOP\r\nRET";
    uint64_t sent = 0, to_session = 0, client_pos = 0;
    while (!in.empty()) {
        const size_t n = std::min(chunk, in.size());
        const bool ok = a.from_session(in.substr(0, n));
        in.remove_prefix(n);
        if (ok == a.failed()) std::abort();
        if (ctl & 0x80) {
            const size_t k =
                a.from_client(std::string_view(kClient).substr(client_pos % kClient.size(), 3));
            if (a.failed() && k != 0) std::abort();
            client_pos += k;
            sent += k;
            if (client_pos % 5 == 0) a.release_taken();  // the login's timer
        }
        if (a.held() > login::ReplyAhead::kMaxHeld) std::abort();
        to_session += a.to_session().size();
        a.to_session().clear();
        a.to_client().clear();
        if (to_session > sent || a.forwarded() != to_session) std::abort();
        if (!ok) break;
    }
    return 0;
}
