#include "pop3d/login_engine.hpp"

namespace pbx::pop3 {

namespace sasl = smtp::sasl;

namespace {

constexpr std::string_view kAuthFailed = "-ERR [AUTH] Authentication failed.\r\n";
constexpr std::string_view kTempFail =
    "-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n";
constexpr std::string_view kPlaintextRefused =
    "-ERR [AUTH] Plaintext authentication is not allowed without TLS: use STLS first.\r\n";

}  // namespace

LoginEngine::LoginEngine(login::ClientFacts facts, LoginLimits limits)
    : facts_(std::move(facts)), limits_(limits) {}

std::unique_ptr<login::Engine> make_login_engine(const login::ClientFacts& facts,
                                                 LoginLimits limits) {
    return std::make_unique<LoginEngine>(facts, limits);
}

void LoginEngine::start() {
    reply("+OK " + facts_.hostname + " POP3 server ready.\r\n");
}

std::string LoginEngine::capabilities() const {
    std::string c =
        "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
        "AUTH-RESP-CODE\r\nPIPELINING\r\n";
    if (secure()) c += "USER\r\nSASL PLAIN LOGIN\r\n";
    if (facts_.starttls_offered && !facts_.tls) c += "STLS\r\n";
    c += "IMPLEMENTATION Pillarbox\r\n.\r\n";
    return c;
}

void LoginEngine::reply(std::string text) {
    actions_.push_back(login::Reply{std::move(text)});
}

void LoginEngine::bad(std::string text) {
    if (++bad_ >= limits_.max_bad_commands) {
        close_with("-ERR Too many bad commands, closing.\r\n");
        return;
    }
    reply(std::move(text));
}

void LoginEngine::close_with(std::string text) {
    reply(std::move(text));
    actions_.push_back(login::Close{});
    closed_ = true;
    sasl_.reset();
}

std::vector<login::Action> LoginEngine::take_actions() {
    return std::exchange(actions_, {});
}

size_t LoginEngine::feed(std::string_view bytes) {
    size_t used = 0;
    while (used < bytes.size() && !waiting_ && !closed_) {
        std::optional<LineReader::Line> l;
        used += reader_.feed(bytes.substr(used), l);
        if (l) line(*l);
    }
    return used;
}

void LoginEngine::line(const LineReader::Line& l) {
    if (sasl_) {
        if (l.too_long) {
            sasl_.reset();
            return bad("-ERR [AUTH] Authentication response too long.\r\n");
        }
        return sasl_line(l.text);
    }
    if (l.too_long || l.text.size() + 2 > kMaxCommandLine)
        return bad("-ERR Command line too long (255 octets at most).\r\n");
    ParseResult p = parse_command(l.text);
    if (!p.command) return bad("-ERR " + std::string(to_string(p.error)) + ".\r\n");
    command(*p.command);
}

void LoginEngine::command(const Command& c) {
    const std::string& v = c.verb;
    if (v == "CAPA") {
        if (!c.args.empty()) return bad("-ERR CAPA takes no arguments.\r\n");
        return reply(capabilities());
    }
    if (v == "QUIT") return close_with("+OK Logging out.\r\n");
    if (v == "STLS") {
        if (facts_.tls) return bad("-ERR TLS is already active.\r\n");
        if (!facts_.starttls_offered) return bad("-ERR STLS is not available here.\r\n");
        if (!c.args.empty()) return bad("-ERR STLS takes no arguments.\r\n");
        reply("+OK Begin TLS negotiation now.\r\n");
        actions_.push_back(login::StartTls{});
        waiting_ = true;
        return;
    }
    if (v == "USER") {
        if (!secure()) return bad(std::string(kPlaintextRefused));
        if (c.args.size() != 1) return bad("-ERR Usage: USER name\r\n");
        user_ = c.args[0];
        return reply("+OK Send your password.\r\n");
    }
    if (v == "PASS") {
        if (!secure()) return bad(std::string(kPlaintextRefused));
        if (!user_) return bad("-ERR No user name given: send USER first.\r\n");
        if (c.rest.empty()) return bad("-ERR Usage: PASS password\r\n");
        std::string user = std::move(*user_);
        user_.reset();
        return authenticate(std::move(user), c.rest);
    }
    if (v == "AUTH") {
        if (c.args.empty()) return reply("+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n");
        if (!secure()) return bad(std::string(kPlaintextRefused));
        if (c.args.size() > 2) return bad("-ERR Usage: AUTH mechanism [initial-response]\r\n");
        auto mech = sasl::parse_mechanism(c.args[0]);
        if (!mech) return bad("-ERR Unsupported authentication mechanism.\r\n");
        user_.reset();
        sasl_.emplace(*mech);
        std::optional<std::string_view> initial;
        if (c.args.size() == 2) initial = c.args[1];
        auto step = sasl_->start(initial);
        switch (step.kind) {
            case sasl::Exchange::Step::Kind::Challenge:
                return reply("+ " + step.challenge + "\r\n");
            case sasl::Exchange::Step::Kind::Done: {
                sasl::Credentials cr = sasl_->credentials();
                sasl_.reset();
                if (!cr.authzid.empty() && cr.authzid != cr.authcid) {
                    ++auth_failures_;
                    return bad("-ERR [AUTH] Logging in as another user is not allowed.\r\n");
                }
                return authenticate(std::move(cr.authcid), std::move(cr.password));
            }
            case sasl::Exchange::Step::Kind::Failed:
                sasl_.reset();
                return bad(step.error == sasl::SaslError::Cancelled
                               ? "-ERR [AUTH] Authentication cancelled.\r\n"
                               : "-ERR [AUTH] Malformed authentication data.\r\n");
        }
        return;
    }
    if (v == "APOP") return bad("-ERR APOP is not supported: use USER/PASS or AUTH.\r\n");
    if (v == "STAT" || v == "LIST" || v == "RETR" || v == "DELE" || v == "NOOP" || v == "RSET" ||
        v == "TOP" || v == "UIDL")
        return bad("-ERR Log in first.\r\n");
    bad("-ERR Unknown command.\r\n");
}

void LoginEngine::sasl_line(const std::string& text) {
    auto step = sasl_->respond(text);
    switch (step.kind) {
        case sasl::Exchange::Step::Kind::Challenge:
            return reply("+ " + step.challenge + "\r\n");
        case sasl::Exchange::Step::Kind::Done: {
            sasl::Credentials cr = sasl_->credentials();
            sasl_.reset();
            if (!cr.authzid.empty() && cr.authzid != cr.authcid)
                return bad("-ERR [AUTH] Logging in as another user is not allowed.\r\n");
            return authenticate(std::move(cr.authcid), std::move(cr.password));
        }
        case sasl::Exchange::Step::Kind::Failed:
            sasl_.reset();
            return bad(step.error == sasl::SaslError::Cancelled
                           ? "-ERR [AUTH] Authentication cancelled.\r\n"
                           : "-ERR [AUTH] Malformed authentication data.\r\n");
    }
}

void LoginEngine::authenticate(std::string user, std::string password) {
    if (user.empty() || user.find('\0') != std::string::npos) {
        ++auth_failures_;
        return bad(std::string(kAuthFailed));
    }
    actions_.push_back(login::Authenticate{std::move(user), std::move(password), {}});
    waiting_ = true;
}

void LoginEngine::tls_started() {
    waiting_ = false;
    facts_.tls = true;
    user_.reset();
    sasl_.reset();
    reader_ = LineReader(kMaxAuthLine);
}

void LoginEngine::auth_result(login::AuthOutcome outcome) {
    waiting_ = false;
    if (outcome == login::AuthOutcome::TempFail) return reply(std::string(kTempFail));
    if (++auth_failures_ >= limits_.max_auth_failures)
        return close_with("-ERR [AUTH] Authentication failed; too many attempts, closing.\r\n");
    reply(std::string(kAuthFailed));
}

void LoginEngine::timed_out() {
    if (closed_) return;
    close_with("-ERR Disconnected for inactivity.\r\n");
}

void LoginEngine::shutting_down() {
    if (closed_) return;
    close_with("-ERR [SYS/TEMP] Server shutting down.\r\n");
}

}  // namespace pbx::pop3
