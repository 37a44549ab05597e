// imap-login's pre-login state machine (RFC 3501 not-authenticated state,
// RFC 2595/3501 STARTTLS, RFC 4959 SASL-IR, RFC 2971 ID): a login::Engine
// (common/login/engine.hpp), pure, tested by tests/unit/test_imap_login.cpp
// with tables whole and byte by byte.
//
// Before login it knows CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN and
// AUTHENTICATE PLAIN (with an initial response or after "+ "); other
// commands get BAD with a reason. Passwords are refused before TLS unless
// the connection counts as secure (ClientFacts::plaintext_allowed):
// LOGINDISABLED is advertised and LOGIN gets NO [PRIVACYREQUIRED]. After
// STARTTLS nothing pipelined is read (the framework discards it). A failed
// login is NO [AUTHENTICATIONFAILED], whether or not the user exists. On
// success the imapd session writes the tagged OK (PBX_LOGIN_TAG).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/login/engine.hpp"
#include "imapd/parser.hpp"

namespace pbx::imap {

struct LoginLimits {
    int max_bad_commands = 20;  // BAD answers before the server hangs up
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

    // The pre-login CAPABILITY list for the current state.
    std::string capabilities() const;

  private:
    void command(const Command& c);
    void sasl_response(std::string_view line);
    void reply(std::string text);
    void bad(const std::string& tag, std::string text);
    void close_with(std::string text);
    void authenticate(const std::string& tag, std::string user, std::string password);
    bool secure() const { return facts_.tls || facts_.plaintext_allowed; }

    login::ClientFacts facts_;
    LoginLimits limits_;
    CommandReader reader_;
    std::vector<login::Action> actions_;
    std::optional<std::string> sasl_tag_;  // AUTHENTICATE waiting for its response line
    std::string pending_tag_;              // the LOGIN/AUTHENTICATE being checked
    bool waiting_ = false;
    bool closed_ = false;
    int bad_ = 0;
    int auth_failures_ = 0;
};

std::unique_ptr<login::Engine> make_login_engine(const login::ClientFacts& facts,
                                                 LoginLimits limits = {});

}  // namespace pbx::imap
