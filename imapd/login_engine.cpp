#include "imapd/login_engine.hpp"

#include <utility>

#include "common/smtp/sasl.hpp"

namespace pbx::imap {

namespace sasl = smtp::sasl;

namespace {

constexpr size_t kMaxSaslLine = 8192;

Limits pre_login_limits() {
    Limits l;
    l.max_line = 8192;
    l.max_literal = 4096;
    l.max_append_literal = l.max_literal;  // APPEND is refused as a command
    l.max_command = 16384;
    l.max_depth = 4;
    l.max_values = 64;
    return l;
}

}  // namespace

LoginEngine::LoginEngine(login::ClientFacts facts, LoginLimits limits)
    : facts_(std::move(facts)), limits_(limits), reader_(pre_login_limits()) {}

std::unique_ptr<login::Engine> make_login_engine(const login::ClientFacts& facts,
                                                 LoginLimits limits) {
    return std::make_unique<LoginEngine>(facts, limits);
}

std::string LoginEngine::capabilities() const {
    std::string c = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE";
    if (facts_.starttls_offered && !facts_.tls) c += " STARTTLS";
    c += secure() ? " AUTH=PLAIN" : " LOGINDISABLED";
    return c;
}

void LoginEngine::start() {
    reply("* OK [CAPABILITY " + capabilities() + "] " + facts_.hostname +
          " Pillarbox IMAP ready.\r\n");
}

void LoginEngine::reply(std::string text) {
    actions_.push_back(login::Reply{std::move(text)});
}

void LoginEngine::bad(const std::string& tag, std::string text) {
    if (++bad_ >= limits_.max_bad_commands) {
        close_with("* BYE Too many bad commands, closing.\r\n");
        return;
    }
    reply(tag + " BAD " + text + "\r\n");
}

void LoginEngine::close_with(std::string text) {
    reply(std::move(text));
    actions_.push_back(login::Close{});
    closed_ = true;
    sasl_tag_.reset();
}

std::vector<login::Action> LoginEngine::take_actions() {
    return std::exchange(actions_, {});
}

size_t LoginEngine::feed(std::string_view bytes) {
    size_t used = 0;
    while (used < bytes.size() && !waiting_ && !closed_) {
        if (sasl_tag_) {
            size_t lf = bytes.find('\n', used);
            if (lf == std::string_view::npos) {
                if (bytes.size() - used > kMaxSaslLine) {
                    std::string tag = std::move(*sasl_tag_);
                    sasl_tag_.reset();
                    bad(tag, "Authentication response too long");
                    // Drop what came; the client is out of step anyway.
                    return bytes.size();
                }
                return used;
            }
            std::string_view line = bytes.substr(used, lf - used);
            used = lf + 1;
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            sasl_response(line);
            continue;
        }
        Event ev;
        used += reader_.feed(bytes.substr(used), ev);
        switch (ev.kind) {
            case Event::Kind::None:
                return used;
            case Event::Kind::Continue:
                reply("+ Ready for literal data\r\n");
                break;
            case Event::Kind::Error:
                if (ev.reply_no)
                    reply(ev.tag + " NO [" + ev.code + "] " + ev.text + "\r\n");
                else
                    bad(ev.tag, ev.code.empty() ? ev.text : "[" + ev.code + "] " + ev.text);
                break;
            case Event::Kind::Command:
                command(ev.command);
                break;
        }
    }
    return used;
}

void LoginEngine::command(const Command& c) {
    const std::string& n = c.name;
    if (n == "CAPABILITY") {
        if (!c.args.empty()) return bad(c.tag, "CAPABILITY takes no arguments");
        return reply("* CAPABILITY " + capabilities() + "\r\n" + c.tag +
                     " OK Capability completed\r\n");
    }
    if (n == "NOOP") {
        if (!c.args.empty()) return bad(c.tag, "NOOP takes no arguments");
        return reply(c.tag + " OK NOOP completed\r\n");
    }
    if (n == "LOGOUT") {
        if (!c.args.empty()) return bad(c.tag, "LOGOUT takes no arguments");
        return close_with("* BYE Logging out\r\n" + c.tag + " OK Logout completed\r\n");
    }
    if (n == "ID") {
        if (c.args.size() != 1 || !(c.args[0].is_list() || c.args[0].is_nil()))
            return bad(c.tag, "Usage: ID (field value ...) or ID NIL");
        return reply("* ID (\"name\" \"Pillarbox\")\r\n" + c.tag + " OK ID completed\r\n");
    }
    if (n == "STARTTLS") {
        if (facts_.tls) return bad(c.tag, "TLS is already active");
        if (!facts_.starttls_offered) return bad(c.tag, "STARTTLS is not available here");
        if (!c.args.empty()) return bad(c.tag, "STARTTLS takes no arguments");
        reply(c.tag + " OK Begin TLS negotiation now\r\n");
        actions_.push_back(login::StartTls{});
        waiting_ = true;
        return;
    }
    if (n == "LOGIN") {
        if (!secure())
            return reply(c.tag +
                         " NO [PRIVACYREQUIRED] Plaintext login is not allowed without TLS: "
                         "use STARTTLS first\r\n");
        if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_astring())
            return bad(c.tag, "Usage: LOGIN user password");
        return authenticate(c.tag, c.args[0].text, c.args[1].text);
    }
    if (n == "AUTHENTICATE") {
        if (c.args.empty() || c.args.size() > 2 || !c.args[0].is_atom())
            return bad(c.tag, "Usage: AUTHENTICATE mechanism [initial-response]");
        if (!iequals(c.args[0].text, "PLAIN"))
            return reply(c.tag + " NO Unsupported authentication mechanism\r\n");
        if (!secure())
            return reply(c.tag +
                         " NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without "
                         "TLS: use STARTTLS first\r\n");
        if (c.args.size() == 2) {
            if (!c.args[1].is_atom()) return bad(c.tag, "Invalid initial response");
            pending_tag_ = c.tag;
            sasl_tag_ = c.tag;
            sasl_response(c.args[1].text);
            return;
        }
        sasl_tag_ = c.tag;
        reply("+ \r\n");
        return;
    }
    static const char* kAfterLogin[] = {
        "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST",
        "LSUB",   "STATUS",  "APPEND", "CHECK",  "CLOSE",  "EXPUNGE",   "SEARCH",      "FETCH",
        "STORE",  "COPY",    "MOVE",   "UID",    "IDLE",   "NAMESPACE", "ENABLE",      "UNSELECT"};
    for (const char* a : kAfterLogin)
        if (n == a) return bad(c.tag, n + " is not allowed before login");
    bad(c.tag, "Unknown command " + n);
}

void LoginEngine::sasl_response(std::string_view line) {
    std::string tag = std::move(*sasl_tag_);
    sasl_tag_.reset();
    if (line == "*") return bad(tag, "Authentication cancelled");
    // SASL-IR: "=" is an empty initial response (RFC 4959).
    std::string_view data = line == "=" ? std::string_view() : line;
    auto decoded = sasl::base64_decode(data);
    if (!decoded) return bad(tag, "Invalid base64 in the authentication data");
    auto cr = sasl::decode_plain(*decoded);
    if (!cr) return bad(tag, "Malformed PLAIN authentication data");
    if (!cr->authzid.empty() && cr->authzid != cr->authcid) {
        ++auth_failures_;
        return reply(tag +
                     " NO [AUTHORIZATIONFAILED] Logging in as another user is not allowed\r\n");
    }
    authenticate(tag, cr->authcid, cr->password);
}

void LoginEngine::authenticate(const std::string& tag, std::string user, std::string password) {
    if (user.empty() || user.find('\0') != std::string::npos || password.empty()) {
        ++auth_failures_;
        return reply(tag + " NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    }
    pending_tag_ = tag;
    actions_.push_back(login::Authenticate{std::move(user), std::move(password), tag});
    waiting_ = true;
}

void LoginEngine::tls_started() {
    waiting_ = false;
    facts_.tls = true;
    sasl_tag_.reset();
    reader_ = CommandReader(pre_login_limits());
}

void LoginEngine::auth_result(login::AuthOutcome outcome) {
    waiting_ = false;
    std::string tag = std::exchange(pending_tag_, {});
    if (outcome == login::AuthOutcome::TempFail)
        return reply(tag +
                     " NO [UNAVAILABLE] Temporary authentication failure, try again later\r\n");
    if (++auth_failures_ >= limits_.max_auth_failures)
        return close_with(tag +
                          " NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
                          "* BYE Too many failed logins, closing\r\n");
    reply(tag + " NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
}

void LoginEngine::timed_out() {
    close_with("* BYE Autologout; idle for too long\r\n");
}

void LoginEngine::shutting_down() {
    close_with("* BYE Server shutting down\r\n");
}

}  // namespace pbx::imap
