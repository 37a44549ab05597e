// libFuzzer target: the POP3 command parser and both POP3 state machines
// (pop3-login's LoginEngine and pop3d's SessionEngine over an in-memory
// mailbox), fed arbitrary client bytes in arbitrary pieces.
//
// Input layout: byte 0 picks the connection facts (TLS, STLS offered,
// plaintext allowed) and the answers to Authenticate, byte 1 seeds the piece
// sizes, the rest is what the client sends (to the login engine first,
// then, from the first Authenticate that succeeds, to the session engine).
//
// Besides the sanitizers it checks the engines' promises: replies are whole
// CRLF lines starting with "+OK", "-ERR", "+ " or a multi-line body; nothing
// is consumed while waiting or after Close; feed() makes progress otherwise;
// SessionEngine::prefetch() between commands changes no byte of the output.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pop3d/login_engine.hpp"
#include "pop3d/protocol.hpp"
#include "pop3d/session_engine.hpp"

using namespace pbx;
using namespace pbx::pop3;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

struct MemStore : Store {
    std::vector<std::string> texts = {"Subject: a\n\n.hello\n", "b\r\n\r\nx", ""};
    std::vector<MessageInfo> infos;
    MemStore() {
        for (size_t i = 0; i < texts.size(); ++i)
            infos.push_back({crlf_size(texts[i]), "u" + std::to_string(i)});
    }
    const std::vector<MessageInfo>& messages() const override { return infos; }
    Result<std::string> content(size_t i) override { return texts.at(i); }
    Status commit(const std::vector<bool>& d) override {
        require(d.size() == texts.size());
        return {};
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t mode = data[0];
    uint32_t rng = data[1] * 2654435761u + 1;
    std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

    // The parser alone, line by line.
    for (size_t pos = 0; pos < input.size();) {
        size_t lf = input.find('\n', pos);
        size_t end = lf == std::string_view::npos ? input.size() : lf;
        auto r = parse_command(input.substr(pos, end - pos));
        if (r.command) require(r.command->verb.size() >= 3 && r.command->verb.size() <= 4);
        (void)parse_number(input.substr(pos, std::min<size_t>(end - pos, 12)));
        pos = end + 1;
    }

    login::ClientFacts facts;
    facts.tls = mode & 1;
    facts.starttls_offered = mode & 2;
    facts.plaintext_allowed = mode & 4;
    facts.hostname = "fuzz.example";
    LoginEngine login(facts, LoginLimits{});
    MemStore store, twin_store;
    SessionEngine session(store, SessionLimits{});
    // The same session without prefetch(): every byte must be the same.
    SessionEngine twin(twin_store, SessionLimits{});
    std::string got, want;
    bool in_session = false;
    login.start();
    size_t pos = 0;
    int stalls = 0;
    while (pos < input.size() && stalls < 4) {
        rng = rng * 1103515245u + 12345u;
        size_t piece = 1 + (rng >> 16) % 64;
        std::string_view p = input.substr(pos, piece);
        size_t used;
        if (!in_session) {
            const bool was_waiting = login.waiting(), was_closed = login.closed();
            used = login.feed(p);
            if (was_waiting || was_closed) require(used == 0);
            for (auto& a : login.take_actions()) {
                if (auto* r = std::get_if<login::Reply>(&a)) {
                    require(r->text.size() >= 4 && r->text.ends_with("\r\n"));
                    require(r->text.starts_with("+OK") || r->text.starts_with("-ERR") ||
                            r->text.starts_with("+ "));
                } else if (std::holds_alternative<login::StartTls>(a)) {
                    pos += used;
                    used = 0;
                    pos = input.size() > pos ? pos : input.size();
                    login.tls_started();
                } else if (auto* au = std::get_if<login::Authenticate>(&a)) {
                    require(!au->user.empty());
                    if (mode & 8) {
                        in_session = true;
                        session.start();
                        twin.start();
                    } else {
                        login.auth_result((mode & 16) ? login::AuthOutcome::TempFail
                                                      : login::AuthOutcome::Fail);
                    }
                }
            }
            if (login.closed() && !in_session) break;
        } else {
            used = session.feed(p);
            require(twin.feed(p) == used);
            while (session.has_output()) {
                std::string out = session.take_output(1 + (rng >> 8) % 300);
                require(!out.empty());
                got += out;
            }
            while (twin.has_output()) want += twin.take_output(1 << 16);
            if (rng & 0x100) (void)session.prefetch();
            require(got == want);
            if (session.closed()) break;
        }
        stalls = used == 0 ? stalls + 1 : 0;
        pos += used;
    }
    return 0;
}
