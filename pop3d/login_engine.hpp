// pop3-login's pre-login state machine (RFC 1939 AUTHORIZATION state, RFC
// 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH): a login::Engine, pure, tested
// by tests/unit/test_pop3.cpp with tables whole and byte by byte.
//
// Before login it knows CAPA, USER, PASS, AUTH (PLAIN, LOGIN), STLS, QUIT;
// every other command gets -ERR. Passwords are refused before TLS unless the
// connection counts as secure (ClientFacts::plaintext_allowed: loopback, or
// login_allow_plaintext). After STLS nothing the client pipelined is read
// (the framework discards it) and everything learned (USER) is forgotten.
// On a successful login the pop3d session writes the "+OK"; this engine
// only writes failures.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/login/engine.hpp"
#include "common/smtp/sasl.hpp"
#include "pop3d/protocol.hpp"

namespace pbx::pop3 {

struct LoginLimits {
    int max_bad_commands = 20;  // -ERR answers before the server hangs up
    int max_auth_failures = 3;  // failed logins before the server hangs up
};

class LoginEngine final : public login::Engine {
  public:
    LoginEngine(login::ClientFacts facts, LoginLimits limits);

    void start() override;
    size_t feed(std::string_view bytes) override;
    std::vector<login::Action> take_actions() override;
    bool waiting() const override { return waiting_; }
    bool closed() const override { return closed_; }
    void tls_started() override;
    void auth_result(login::AuthOutcome outcome) override;
    void timed_out() override;
    void shutting_down() override;

    // The CAPA answer for the current state (also what the session lists).
    std::string capabilities() const;

  private:
    void line(const LineReader::Line& l);
    void command(const Command& c);
    void sasl_line(const std::string& text);
    void reply(std::string text);
    void bad(std::string text);
    void close_with(std::string text);
    void authenticate(std::string user, std::string password);
    bool secure() const { return facts_.tls || facts_.plaintext_allowed; }

    login::ClientFacts facts_;
    LoginLimits limits_;
    LineReader reader_{kMaxAuthLine};
    std::vector<login::Action> actions_;
    std::optional<std::string> user_;
    std::optional<smtp::sasl::Exchange> sasl_;
    bool waiting_ = false;
    bool closed_ = false;
    int bad_ = 0;
    int auth_failures_ = 0;
};

std::unique_ptr<login::Engine> make_login_engine(const login::ClientFacts& facts,
                                                 LoginLimits limits);

}  // namespace pbx::pop3
