// libFuzzer target: the SMTP client state machine (common/smtp/client.hpp)
// fed arbitrary server bytes in arbitrary pieces, with the glue's answers
// (TLS outcomes, transactions, quit) chosen by the input too.
//
// Input layout: byte 0 picks settings (TLS level, credentials), byte 1 seeds
// the piece sizes and choices, the rest is what the server sends.
//
// Besides the sanitizers it checks the machine's promises: every recipient
// of a transaction gets at most one result; TransactionDone comes only when
// each has one (or the host failed); nothing but Close-time actions follow
// Close; every Send is CRLF-terminated.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/smtp/client.hpp"

using namespace pbx::smtp::client;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    Settings st;
    st.tls = static_cast<TlsLevel>(data[0] & 3);
    if (data[0] & 4) st.credentials = std::make_pair(std::string("u"), std::string("p"));
    st.limits.max_line = 64 + (data[0] >> 3) * 16;
    uint32_t rng = data[1] * 2654435761u + 1;
    auto next = [&] {
        rng = rng * 1103515245u + 12345u;
        return rng >> 8;
    };
    std::string text = ".line\r\nline\n.\r\nx";
    Transaction t;
    t.sender = "a@example.org";
    t.recipients = {{"b@example.net", 6, "rfc822;b@example.net"}, {"c@example.net", 0, ""}};
    t.size = text.size();
    t.text = text;
    t.smtputf8 = next() % 4 == 0;

    Session s(st);
    std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
    std::vector<bool> got(t.recipients.size(), false);
    bool in_tx = false, closed = false;
    int transactions = 0;
    auto pump = [&] {
        for (int round = 0; round < 100; ++round) {
            auto actions = s.take_actions();
            if (actions.empty()) return;
            for (auto& a : actions) {
                if (auto* x = std::get_if<Send>(&a)) {
                    require(!closed);
                    require(x->bytes.size() >= 2 && x->bytes.substr(x->bytes.size() - 2) == "\r\n");
                } else if (std::holds_alternative<SendBody>(a)) {
                    for (std::string p = s.next_body(1 + next() % 9); !p.empty();
                         p = s.next_body(1 + next() % 9)) {
                    }
                } else if (auto* r = std::get_if<RcptDone>(&a)) {
                    require(in_tx && r->index < got.size() && !got[r->index]);
                    got[r->index] = true;
                    require(r->reply.size() >= 3 && r->dsn.size() >= 5);
                } else if (std::holds_alternative<TransactionDone>(a)) {
                    require(in_tx);
                    for (bool g : got) require(g);
                    in_tx = false;
                } else if (std::holds_alternative<HostFailed>(a)) {
                    in_tx = false;
                } else if (std::holds_alternative<StartTls>(a)) {
                    s.tls_done(TlsOutcome{next() % 4 != 0, next() % 2 == 0, "x"});
                } else if (std::holds_alternative<Ready>(a)) {
                    require(!in_tx);
                    if (transactions < 2 && next() % 4 != 0) {
                        ++transactions;
                        got.assign(t.recipients.size(), false);
                        in_tx = true;
                        s.start(t);
                    } else {
                        s.quit();
                    }
                } else if (std::holds_alternative<Close>(a)) {
                    closed = true;
                }
            }
        }
    };
    while (!in.empty()) {
        size_t n = 1 + next() % 64;
        if (n > in.size()) n = in.size();
        s.feed(in.substr(0, n));
        in.remove_prefix(n);
        pump();
        if (next() % 97 == 0) {
            s.timed_out();
            pump();
        }
    }
    s.lost("end of input");
    pump();
    return 0;
}
