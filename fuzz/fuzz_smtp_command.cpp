// libFuzzer target: the whole SMTP engine fed arbitrary client bytes in
// arbitrary pieces, with the glue's asynchronous answers (recipient lookups,
// queue results, authentication, TLS handshakes) chosen by the input too.
//
// Input layout: byte 0 picks the policy and limits, byte 1 seeds the choice
// of piece sizes and answers, the rest is what the client sends.
//
// Besides the sanitizers, it checks the engine's promises and aborts when
// one is broken: replies are whole CRLF lines with a reply code; nothing
// follows Close; message chunks only flow inside Begin..End/Abort, are
// CRLF-clean and never exceed the size limit; feed() takes everything unless
// an answer is pending.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/smtp/engine.hpp"

using namespace pbx::smtp;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

struct Rng {
    uint32_t state;
    uint32_t next() {
        state = state * 1103515245u + 12345u;
        return state >> 8;
    }
};

class Checker {
  public:
    explicit Checker(const Limits& limits) : limits_(limits) {}

    void check(const Output& o) {
        require(!closed_);
        if (const auto* r = std::get_if<Reply>(&o)) {
            check_reply(r->text);
        } else if (std::holds_alternative<BeginMessage>(o)) {
            require(!open_);
            open_ = true;
            message_size_ = 0;
            last_ = '\n';
        } else if (const auto* c = std::get_if<MessageChunk>(&o)) {
            require(open_);
            require(!c->bytes.empty());
            for (char ch : c->bytes) {
                require(ch != '\n' || last_ == '\r');
                require(last_ != '\r' || ch == '\n');
                last_ = ch;
            }
            message_size_ += c->bytes.size();
            require(limits_.message_size_limit == 0 || message_size_ <= limits_.message_size_limit);
        } else if (std::holds_alternative<EndMessage>(o)) {
            require(open_);
            require(last_ == '\n');  // a queued message ends with CRLF (or is empty)
            open_ = false;
        } else if (std::holds_alternative<AbortMessage>(o)) {
            require(open_);
            open_ = false;
        } else if (std::holds_alternative<Close>(o)) {
            require(!open_);
            closed_ = true;
        }
    }

  private:
    static void check_reply(const std::string& text) {
        require(text.size() >= 5);
        require(text.compare(text.size() - 2, 2, "\r\n") == 0);
        size_t line_start = 0;
        for (size_t i = 0; i < text.size(); ++i) {
            if (text[i] == '\r') require(i + 1 < text.size() && text[i + 1] == '\n');
            if (text[i] == '\n') {
                require(i > 0 && text[i - 1] == '\r');
                std::string_view line(text.data() + line_start, i - 1 - line_start);
                require(line.size() >= 3);
                for (int k = 0; k < 3; ++k) require(line[k] >= '0' && line[k] <= '9');
                require(line.size() == 3 || line[3] == ' ' || line[3] == '-');
                line_start = i + 1;
            }
        }
    }

    Limits limits_;
    bool open_ = false;
    bool closed_ = false;
    uint64_t message_size_ = 0;
    char last_ = '\n';
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t cfg = data[0];
    Rng rng{data[1] * 2654435761u + 1};
    std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

    Limits limits;
    limits.line_limit = (cfg & 1) ? 512 : 40;
    limits.max_pending_input = (cfg & 2) ? 64 * 1024 : 50;
    limits.chunk_size = (cfg & 4) ? 64 * 1024 : 7;
    limits.message_size_limit = (cfg & 8) ? 0 : 300;
    limits.text_line_limit = (cfg & 16) ? 64 * 1024 : 60;
    limits.max_recipients = 3;
    limits.max_bad_commands = 40;
    limits.sasl_line_limit = 200;

    Policy policy;
    policy.local_domains = {"example.com", "[192.0.2.1]"};
    policy.client_trusted = (cfg & 32) != 0;
    policy.starttls_offered = true;
    policy.auth_offered = (cfg & 64) != 0;
    policy.auth_required = (cfg & 128) != 0;
    policy.tls_required = (cfg & 0xC0) == 0xC0;
    policy.auth_requires_tls = (cfg & 3) == 3;

    SessionInfo session{"192.0.2.9", "client.example", (cfg & 0x24) == 0x24, {}, "mx.example.com"};
    Engine engine(limits, policy, session);
    Checker checker(limits);
    bool tls_pending = false;

    auto drain = [&]() {
        bool answered = false;
        while (true) {
            auto outs = engine.take_output();
            if (outs.empty()) return answered;
            for (const auto& o : outs) checker.check(o);
            for (const auto& o : outs) {
                uint32_t r = rng.next() % 3;
                if (std::holds_alternative<LookupRecipient>(o)) {
                    answered = true;
                    require(engine.recipient_result(r == 0
                                                        ? RecipientResult::found("user@example.com")
                                                    : r == 1 ? RecipientResult::unknown()
                                                             : RecipientResult::temp_fail()));
                } else if (std::holds_alternative<EndMessage>(o)) {
                    answered = true;
                    require(engine.message_result(r == 0   ? MessageResult::queued("Q1")
                                                  : r == 1 ? MessageResult::temp_fail("busy")
                                                           : MessageResult::perm_fail("no")));
                } else if (std::holds_alternative<Authenticate>(o)) {
                    answered = true;
                    require(engine.auth_result(r == 0   ? AuthResult::success("user")
                                               : r == 1 ? AuthResult::failed()
                                                        : AuthResult::temp_fail()));
                } else if (std::holds_alternative<StartTls>(o)) {
                    tls_pending = true;
                }
            }
        }
    };

    size_t pos = 0;
    while (pos < input.size() && !engine.closed()) {
        if (tls_pending && rng.next() % 2 == 0) {
            tls_pending = false;
            require(engine.tls_started(TlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128}));
            drain();
        }
        size_t n = 1 + rng.next() % 80;
        if (n > input.size() - pos) n = input.size() - pos;
        const bool wanted = engine.wants_input();
        size_t took = engine.feed(input.substr(pos, n));
        require(took <= n);
        if (wanted) require(took > 0);
        pos += took;
        bool answered = drain();
        if (took == 0 && !answered) {
            if (!tls_pending) break;  // nothing can make progress (cannot happen)
        }
        require(engine.phase() == Phase::Waiting || engine.closed() || engine.wants_input());
    }
    if (tls_pending && !engine.closed()) {
        require(engine.tls_started(TlsInfo{}));
        drain();
    }
    engine.timed_out();
    drain();
    require(engine.closed());
    return 0;
}
