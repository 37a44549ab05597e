// libFuzzer target for reply-ahead (pop3d(8), the proxy protocol): the
// twin-engine property of tests/unit/pop3_ahead_twin.hpp with the script,
// the session limits, the splitting of every pipe and the order of events
// all taken from the fuzzer's bytes. The client must receive exactly what
// pop3::SessionEngine alone sends for the same script; a frame pop3d's
// half writes must never be refused by the login's half. Also: arbitrary
// bytes appended to the generated script (any command line at all).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tests/unit/pop3_ahead_twin.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pbx::pop3;
    size_t pos = 0;
    twin::Pick pick = [&](size_t n) -> size_t {
        if (n <= 1 || pos >= size) return 0;
        size_t v = data[pos++];
        if (n > 256 && pos < size) v = v << 8 | data[pos++];
        return v % n;
    };
    const auto texts = twin::mailbox();
    std::string script = twin::make_script(pick, pick(40), texts.size());
    // Raw bytes from the input as more client lines (at most 512).
    const size_t raw = pick(512);
    for (size_t i = 0; i < raw && pos < size; ++i) script.push_back(static_cast<char>(data[pos++]));
    SessionLimits limits{static_cast<int>(2 + pick(30))};
    twin::TwinStore a(texts), b(texts);
    const std::string want = twin::run_plain(a, script, limits);
    const auto got = twin::run_ahead(b, script, limits, pick, pick(4000));
    if (!got.error.empty() || got.client != want || got.answered_by_login != got.skipped_by_pop3d)
        std::abort();
    return 0;
}
