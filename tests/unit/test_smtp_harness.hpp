// A scripted client and glue around smtp::Engine for the session tests: it
// feeds packets (whole or one byte at a time), answers every action the way
// a small fake authd/queue would, and records the outputs as text.
#pragma once

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "common/smtp/engine.hpp"

namespace smtp_test {

using namespace pbx::smtp;

enum class Setup {
    Mta,       // port 25: example.com is ours, STARTTLS offered, no AUTH
    MtaAuth,   // port 25 with AUTH offered (only after TLS)
    Msa,       // submission on 465: TLS active, AUTH required
    MsaPlain,  // submission on 587 before STARTTLS: TLS and AUTH required
    Trusted,   // port 25, client in trusted_networks
    Submit,    // submitd on 465: TLS, AUTH required, senders and relays vetted
};

struct Fixture {
    Limits limits;
    Policy policy;
    SessionInfo session;

    explicit Fixture(Setup setup = Setup::Mta) {
        policy.local_domains = {"example.com", "Example.NET", "[192.0.2.25]"};
        session.client_ip = "198.51.100.7";
        session.client_host = "client.example.org";
        session.hostname = "mx.example.com";
        switch (setup) {
            case Setup::Mta:
                policy.starttls_offered = true;
                break;
            case Setup::MtaAuth:
                policy.starttls_offered = true;
                policy.auth_offered = true;
                break;
            case Setup::Msa:
                session.tls_active = true;
                session.tls = TlsInfo{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256};
                policy.auth_offered = true;
                policy.auth_required = true;
                policy.tls_required = true;
                break;
            case Setup::MsaPlain:
                policy.starttls_offered = true;
                policy.auth_offered = true;
                policy.auth_required = true;
                policy.tls_required = true;
                break;
            case Setup::Trusted:
                policy.starttls_offered = true;
                policy.client_trusted = true;
                break;
            case Setup::Submit:
                session.tls_active = true;
                session.tls = TlsInfo{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256};
                policy.auth_offered = true;
                policy.auth_required = true;
                policy.tls_required = true;
                policy.check_sender = true;
                policy.check_relay = true;
                break;
        }
    }
};

inline std::string render(const Output& o) {
    struct V {
        std::string operator()(const Reply& r) { return "R:" + r.text; }
        std::string operator()(const LookupRecipient& l) {
            return (l.relay ? "V:" : "L:") + l.address.str();
        }
        std::string operator()(const CheckSender& c) { return "S:" + c.address; }
        std::string operator()(const BeginMessage& b) {
            std::string s = "B:<" + b.envelope.mail_from + "> " + b.envelope.protocol;
            for (const auto& r : b.envelope.recipients) s += " " + r.address + "=" + r.canonical;
            return s;
        }
        std::string operator()(const MessageChunk& c) { return "C:" + c.bytes; }
        std::string operator()(const EndMessage&) { return "E"; }
        std::string operator()(const AbortMessage&) { return "A"; }
        std::string operator()(const StartTls&) { return "T"; }
        std::string operator()(const InputDiscarded& d) { return "D:" + std::to_string(d.bytes); }
        std::string operator()(const Authenticate& a) {
            return "U:" + std::string(sasl::to_string(a.mechanism)) + ":" + a.credentials.authzid +
                   ":" + a.credentials.authcid + ":" + a.credentials.password;
        }
        std::string operator()(const Close&) { return "X"; }
    };
    return std::visit(V{}, o);
}

struct Run {
    std::vector<std::string> events;  // render() of every output, in order
    std::vector<Output> outputs;
    bool stuck = false;

    // "250 2.1.0" per reply (code and enhanced code of its last line), and
    // "close" for Close.
    std::vector<std::string> codes() const {
        std::vector<std::string> out;
        for (const auto& o : outputs) {
            if (std::holds_alternative<Close>(o)) {
                out.push_back("close");
                continue;
            }
            const auto* r = std::get_if<Reply>(&o);
            if (r == nullptr) continue;
            std::string text = r->text;
            size_t start = text.rfind("\r\n", text.size() - 3);
            std::string last = start == std::string::npos ? text : text.substr(start + 2);
            std::string code = last.substr(0, 3);
            if (last.size() > 4 && last[3] == ' ' && last[4] >= '2' && last[4] <= '5' &&
                last.size() > 5 && last[5] == '.') {
                size_t sp = last.find(' ', 4);
                code += " " + last.substr(4, sp - 4);
            }
            out.push_back(code);
        }
        return out;
    }

    // The message text the glue would have queued (chunks of the last
    // message that ended with EndMessage).
    std::string last_message() const {
        std::string body, current;
        for (const auto& o : outputs) {
            if (std::holds_alternative<BeginMessage>(o)) current.clear();
            if (const auto* c = std::get_if<MessageChunk>(&o)) current += c->bytes;
            if (std::holds_alternative<EndMessage>(o)) body = current;
        }
        return body;
    }

    template <class T>
    size_t count() const {
        size_t n = 0;
        for (const auto& o : outputs) n += std::holds_alternative<T>(o) ? 1 : 0;
        return n;
    }

    const Envelope* last_envelope() const {
        const Envelope* e = nullptr;
        for (const auto& o : outputs) {
            if (const auto* b = std::get_if<BeginMessage>(&o)) e = &b->envelope;
        }
        return e;
    }
};

// The fake glue: users that exist, a queue that always succeeds, one password.
class Driver {
  public:
    explicit Driver(const Fixture& f) : engine_(f.limits, f.policy, f.session) {}

    Engine& engine() { return engine_; }

    Run run(const std::vector<std::string>& packets, bool bytewise) {
        for (const auto& packet : packets) {
            if (bytewise) {
                for (char c : packet) feed(std::string_view(&c, 1));
            } else {
                feed(packet);
            }
            // The TLS handshake completes after the packet, so bytes in the
            // same packet as STARTTLS were pipelined before it.
            if (tls_pending_) {
                tls_pending_ = false;
                engine_.tls_started(TlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128});
                drain();
            }
        }
        return std::move(run_);
    }

  private:
    void feed(std::string_view bytes) {
        size_t off = 0;
        while (off < bytes.size()) {
            size_t n = engine_.feed(bytes.substr(off));
            off += n;
            bool answered = drain();
            if (n == 0 && !answered) {
                run_.stuck = true;
                return;
            }
        }
        drain();
    }

    // Records outputs and answers actions until the engine is quiet.
    bool drain() {
        bool answered = false;
        while (true) {
            auto outs = engine_.take_output();
            if (outs.empty()) return answered;
            for (auto& o : outs) {
                run_.events.push_back(render(o));
                run_.outputs.push_back(o);
            }
            for (auto& o : outs) {
                if (const auto* l = std::get_if<LookupRecipient>(&o)) {
                    answered = true;
                    if (l->relay)
                        answer_relay(l->address);
                    else
                        answer_lookup(l->address);
                } else if (const auto* c = std::get_if<CheckSender>(&o)) {
                    answered = true;
                    answer_sender(c->address);
                } else if (std::holds_alternative<EndMessage>(o)) {
                    answered = true;
                    engine_.message_result(MessageResult::queued("Q" + std::to_string(++queued_)));
                } else if (const auto* a = std::get_if<Authenticate>(&o)) {
                    answered = true;
                    answer_auth(a->credentials);
                } else if (std::holds_alternative<StartTls>(o)) {
                    tls_pending_ = true;
                }
            }
        }
    }

    void answer_lookup(const Address& a) {
        std::string lower;
        for (char c : a.str())
            lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        static const std::set<std::string> kUsers = {"alice@example.com", "bob@example.com",
                                                     "postmaster",        "postmaster@example.com",
                                                     "carol@example.net", "dave@[192.0.2.25]"};
        if (a.local == "tempfail") {
            engine_.recipient_result(RecipientResult::temp_fail());
        } else if (kUsers.count(lower) != 0) {
            engine_.recipient_result(RecipientResult::found(lower));
        } else {
            engine_.recipient_result(RecipientResult::unknown());
        }
    }

    // The submission glue's vetting: "user" owns user@example.com and the
    // null sender; "tempfail@" senders fail for now; "ratelimited@"
    // recipients are over the hourly limit.
    void answer_sender(const std::string& address) {
        if (address.rfind("tempfail@", 0) == 0) {
            engine_.sender_result(SenderResult::temp_fail());
        } else if (address.empty() || address == "user@example.com") {
            engine_.sender_result(SenderResult::accept());
        } else if (address == "busy@example.com") {
            engine_.sender_result(SenderResult::refused(
                {450, "4.7.1", "Error: too many messages per hour, try again later"}));
        } else {
            engine_.sender_result(SenderResult::refused(
                {553, "5.7.1", "<" + address + ">: Sender address not owned by user"}));
        }
    }

    void answer_relay(const Address& a) {
        if (a.local == "ratelimited") {
            engine_.recipient_result(RecipientResult::refused(
                {450, "4.7.1", "Error: too many recipients per hour, try again later"}));
        } else {
            engine_.recipient_result(RecipientResult::found(a.str()));
        }
    }

    void answer_auth(const sasl::Credentials& c) {
        if (c.authcid == "tempuser") {
            engine_.auth_result(AuthResult::temp_fail());
        } else if (c.authcid == "user" && c.password == "pass") {
            engine_.auth_result(AuthResult::success("user"));
        } else {
            engine_.auth_result(AuthResult::failed());
        }
    }

    Engine engine_;
    Run run_;
    bool tls_pending_ = false;
    int queued_ = 0;
};

// Runs the packets whole and one byte at a time; both must give the same
// outputs. Returns the whole-packet run.
inline Run run_both(const Fixture& f, const std::vector<std::string>& packets) {
    Driver whole(f);
    Run a = whole.run(packets, false);
    Driver bytes(f);
    Run b = bytes.run(packets, true);
    CHECK_FALSE(a.stuck);
    CHECK_FALSE(b.stuck);
    CHECK(a.events == b.events);
    return a;
}

struct SessionCase {
    const char* name;
    Setup setup;
    std::vector<std::string> packets;
    std::vector<std::string> codes;  // expected Run::codes()
};

inline void check_sessions(const std::vector<SessionCase>& cases) {
    for (const auto& c : cases) {
        INFO("case: " << c.name);
        Run r = run_both(Fixture(c.setup), c.packets);
        CHECK(r.codes() == c.codes);
    }
}

}  // namespace smtp_test
