// The command table (STYLE.md 10): each command names the states it is
// allowed in, a check that validates syntax and preconditions without
// changing anything, and an act that changes state and replies. The
// dispatcher answers 500 for an unknown verb and 503 for the wrong state
// before the check runs.
#include <variant>

#include "common/smtp/engine.hpp"
#include "common/smtp/received.hpp"

namespace pbx::smtp {

struct Engine::Parsed {
    std::string_view verb;
    std::string_view args;
    std::variant<std::monostate, MailArgs, RcptArgs, BdatArgs, AuthArgs> value;
};

struct Engine::Command {
    std::string_view verb;
    uint8_t allowed;  // State bits
    std::optional<Refusal> (Engine::*check)(std::string_view args, Parsed& p) const;
    void (Engine::*act)(Parsed& p);
};

namespace {
constexpr uint8_t kAnyState = 0xFF;
}  // namespace

const Engine::Command* Engine::find_command(std::string_view verb) {
    // BDAT is allowed everywhere because a refused BDAT must still have its
    // chunk consumed; act_bdat decides whether the chunk is accepted.
    static const Command kCommands[] = {
        {"EHLO", kAnyState, &Engine::check_helo, &Engine::act_ehlo},
        {"HELO", kAnyState, &Engine::check_helo, &Engine::act_helo},
        {"MAIL", kReady, &Engine::check_mail, &Engine::act_mail},
        {"RCPT", kMail, &Engine::check_rcpt, &Engine::act_rcpt},
        {"DATA", kMail, &Engine::check_data, &Engine::act_data},
        {"BDAT", kAnyState, &Engine::check_bdat, &Engine::act_bdat},
        {"RSET", kAnyState, &Engine::check_no_args, &Engine::act_rset},
        {"NOOP", kAnyState, &Engine::check_any, &Engine::act_noop},
        {"QUIT", kAnyState, &Engine::check_no_args, &Engine::act_quit},
        {"VRFY", kAnyState, &Engine::check_vrfy, &Engine::act_vrfy},
        {"EXPN", kAnyState, &Engine::check_any, &Engine::act_expn},
        {"HELP", kAnyState, &Engine::check_any, &Engine::act_help},
        {"STARTTLS", kReady, &Engine::check_starttls, &Engine::act_starttls},
        {"AUTH", kReady, &Engine::check_auth, &Engine::act_auth},
    };
    for (const auto& c : kCommands) {
        if (iequals(c.verb, verb)) return &c;
    }
    return nullptr;
}

void Engine::handle_line(std::string_view line) {
    if (has_control_characters(line)) {
        bad(500, "5.5.2", "Error: bad characters in command");
        return;
    }
    CommandLine cl = split_command(line);
    if (cl.verb.empty()) {
        bad(500, "5.5.2", "Error: bad syntax");
        return;
    }
    const Command* cmd = find_command(cl.verb);
    if (cmd == nullptr) {
        bad(500, "5.5.2", "Error: command not recognized");
        return;
    }
    if ((cmd->allowed & state_) == 0) {
        bad(503, "5.5.1", sequence_error(cmd->verb));
        return;
    }
    Parsed p{cmd->verb, cl.args, {}};
    if (auto refusal = (this->*cmd->check)(cl.args, p)) {
        refuse(*refusal);
        return;
    }
    (this->*cmd->act)(p);
}

std::string_view Engine::sequence_error(std::string_view verb) const {
    if (state_ == kInit) return "Error: send HELO/EHLO first";
    if (verb == "MAIL")
        return state_ == kBdat ? "Error: BDAT transfer in progress" : "Error: nested MAIL command";
    if (verb == "RCPT" || verb == "DATA") {
        if (state_ == kBdat) {
            return verb == "DATA" ? "Error: DATA not allowed after BDAT"
                                  : "Error: BDAT transfer in progress";
        }
        return "Error: need MAIL command";
    }
    return "Error: MAIL transaction in progress";  // STARTTLS, AUTH
}

// ---- checks -------------------------------------------------------------

std::optional<Engine::Refusal> Engine::check_helo(std::string_view args, Parsed& p) const {
    if (args.empty()) return Refusal{501, "5.5.4", "Syntax: " + std::string(p.verb) + " hostname"};
    if (!valid_helo(args)) {
        return Refusal{501, "5.5.4", "Error: invalid " + std::string(p.verb) + " hostname"};
    }
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_no_args(std::string_view args, Parsed& p) const {
    if (!args.empty()) return Refusal{501, "5.5.4", "Syntax: " + std::string(p.verb)};
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_any(std::string_view, Parsed&) const {
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_vrfy(std::string_view args, Parsed&) const {
    if (args.empty()) return Refusal{501, "5.5.4", "Syntax: VRFY address"};
    return std::nullopt;
}

Engine::Refusal Engine::argument_refusal(const ArgProblem& problem, bool sender) const {
    const std::string_view addr_code = sender ? "5.1.7" : "5.1.3";
    const std::string who = sender ? "sender" : "recipient";
    switch (problem.kind) {
        case ArgError::Syntax:
            return {501, "5.5.4",
                    sender ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>"};
        case ArgError::BadAddress:
            return {501, addr_code, "Error: bad " + who + " address syntax"};
        case ArgError::PathTooLong:
            return {501, addr_code, "Error: " + who + " path too long"};
        case ArgError::LocalPartTooLong:
            return {553, addr_code, "Error: " + who + " local part too long"};
        case ArgError::DomainTooLong:
            return {553, addr_code, "Error: " + who + " domain too long"};
        case ArgError::Utf8NotAllowed:
            return {553, "5.6.7", "Error: non-ASCII " + who + " address needs SMTPUTF8"};
        case ArgError::BadParameter:
            return {555, "5.5.4", "Error: unsupported or invalid parameter " + problem.detail};
    }
    return {501, "5.5.4", "Error: bad syntax"};
}

std::optional<Engine::Refusal> Engine::check_mail(std::string_view args, Parsed& p) const {
    if (policy_.tls_required && !session_.tls_active) {
        return Refusal{530, "5.7.0", "Must issue a STARTTLS command first"};
    }
    if (policy_.auth_required && !policy_.authenticated) {
        return Refusal{530, "5.7.0", "Authentication required"};
    }
    auto parsed = parse_mail(args, MailOptions{esmtp_, policy_.auth_offered});
    if (!parsed) return argument_refusal(parsed.error(), true);
    if (parsed->size && limits_.message_size_limit != 0 &&
        *parsed->size > limits_.message_size_limit) {
        return Refusal{552, "5.3.4", "Error: message size exceeds fixed limit", false};
    }
    p.value = std::move(*parsed);
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_rcpt(std::string_view args, Parsed& p) const {
    auto parsed = parse_rcpt(args, RcptOptions{esmtp_, envelope_.smtputf8});
    if (!parsed) return argument_refusal(parsed.error(), false);
    if (envelope_.recipients.size() >= limits_.max_recipients) {
        return Refusal{452, "4.5.3", "Error: too many recipients", false};
    }
    p.value = std::move(*parsed);
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_data(std::string_view args, Parsed&) const {
    if (!args.empty()) return Refusal{501, "5.5.4", "Syntax: DATA"};
    if (envelope_.recipients.empty()) return Refusal{554, "5.5.1", "Error: no valid recipients"};
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_bdat(std::string_view args, Parsed& p) const {
    auto parsed = parse_bdat(args);
    // Without a size the chunk cannot be skipped: the stream is lost.
    if (!parsed) return Refusal{501, "5.5.4", "Syntax: BDAT size [LAST]", true, true};
    p.value = *parsed;
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_starttls(std::string_view args, Parsed&) const {
    if (!policy_.starttls_offered)
        return Refusal{502, "5.5.1", "Error: STARTTLS is not offered in this session"};
    if (session_.tls_active) return Refusal{503, "5.5.1", "Error: TLS already active"};
    if (!args.empty()) return Refusal{501, "5.5.4", "Syntax: STARTTLS"};
    return std::nullopt;
}

std::optional<Engine::Refusal> Engine::check_auth(std::string_view args, Parsed& p) const {
    if (!policy_.auth_offered) return Refusal{503, "5.5.1", "Error: authentication not enabled"};
    if (!esmtp_) return Refusal{503, "5.5.1", "Error: send EHLO first"};
    if (policy_.authenticated) return Refusal{503, "5.5.1", "Error: already authenticated"};
    if (policy_.auth_requires_tls && !session_.tls_active) {
        return Refusal{538, "5.7.11", "Encryption required for requested authentication mechanism"};
    }
    auto parsed = parse_auth(args);
    if (!parsed) return Refusal{501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"};
    if (!sasl::parse_mechanism(parsed->mechanism)) {
        return Refusal{504, "5.5.4", "Error: unsupported authentication mechanism"};
    }
    p.value = *parsed;
    return std::nullopt;
}

// ---- acts ---------------------------------------------------------------

std::string Engine::ehlo_reply() const {
    std::vector<std::string> lines;
    lines.push_back(session_.hostname);
    lines.push_back("PIPELINING");
    lines.push_back(limits_.message_size_limit == 0
                        ? std::string("SIZE")
                        : "SIZE " + std::to_string(limits_.message_size_limit));
    lines.push_back("8BITMIME");
    lines.push_back("ENHANCEDSTATUSCODES");
    if (policy_.starttls_offered && !session_.tls_active) lines.push_back("STARTTLS");
    if (policy_.auth_offered && (session_.tls_active || !policy_.auth_requires_tls)) {
        lines.push_back("AUTH " + std::string(sasl::kAdvertised));
    }
    lines.push_back("SMTPUTF8");
    lines.push_back("DSN");
    lines.push_back("CHUNKING");
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
        out += i + 1 < lines.size() ? "250-" : "250 ";
        for (unsigned char c : lines[i])
            out += (c < 0x20 || c == 0x7F) ? '?' : static_cast<char>(c);
        out += "\r\n";
    }
    return out;
}

void Engine::act_ehlo(Parsed& p) {
    reset_transaction();  // RFC 5321 4.1.4: EHLO implies RSET
    helo_ = std::string(p.args);
    esmtp_ = true;
    state_ = kReady;
    out_.push_back(Reply{ehlo_reply()});
}

void Engine::act_helo(Parsed& p) {
    reset_transaction();
    helo_ = std::string(p.args);
    esmtp_ = false;
    state_ = kReady;
    reply(250, "", session_.hostname);
}

void Engine::act_mail(Parsed& p) {
    auto& args = std::get<MailArgs>(p.value);
    envelope_ = Envelope{};
    envelope_.helo = helo_;
    envelope_.client_ip = session_.client_ip;
    envelope_.client_host = session_.client_host;
    envelope_.tls = session_.tls_active;
    if (session_.tls_active) envelope_.tls_details = session_.tls.describe();
    envelope_.auth_user = auth_user_;
    envelope_.mail_from = args.from.str();
    envelope_.body = args.body;
    envelope_.smtputf8 = args.smtputf8;
    envelope_.size_declared = args.size;
    envelope_.ret = args.ret;
    envelope_.envid = std::move(args.envid);
    envelope_.protocol =
        protocol_name(esmtp_, envelope_.smtputf8, session_.tls_active, policy_.authenticated);
    if (policy_.check_sender) {
        out_.push_back(CheckSender{envelope_.mail_from});
        wait_ = Wait::Sender;
        return;
    }
    accept_sender();
}

void Engine::accept_sender() {
    state_ = kMail;
    reply(250, "2.1.0", "Ok");
}

void Engine::accept_recipient(const RcptArgs& args, std::string canonical) {
    EnvelopeRecipient r;
    r.address = args.to.str();
    r.canonical = std::move(canonical);
    r.notify = args.notify;
    r.orcpt_type = args.orcpt_type;
    r.orcpt = args.orcpt;
    envelope_.recipients.push_back(std::move(r));
    reply(250, "2.1.5", "Ok");
}

void Engine::act_rcpt(Parsed& p) {
    auto& args = std::get<RcptArgs>(p.value);
    switch (classify_recipient(args.to, policy_)) {
        case RelayDecision::Denied:
            bad(554, "5.7.1", "<" + args.to.str() + ">: Relay access denied");
            return;
        case RelayDecision::Relay:
            if (policy_.check_relay) {
                out_.push_back(LookupRecipient{args.to, true});
                pending_rcpt_ = std::move(args);
                wait_ = Wait::Recipient;
                return;
            }
            accept_recipient(args, args.to.str());
            return;
        case RelayDecision::Local:
            out_.push_back(LookupRecipient{args.to});
            pending_rcpt_ = std::move(args);
            wait_ = Wait::Recipient;
            return;
    }
}

void Engine::act_data(Parsed&) {
    data_ = DataReader(DataReader::Mode::Dot, limits_.text_line_limit, limits_.message_size_limit);
    begin_message();
    mode_ = Mode::Data;
    out_.push_back(Reply{"354 End data with <CR><LF>.<CR><LF>\r\n"});
}

void Engine::act_bdat(Parsed& p) {
    const auto& args = std::get<BdatArgs>(p.value);
    bdat_remaining_ = args.size;
    bdat_last_ = args.last;
    mode_ = Mode::BdatChunk;
    if (state_ == kInit) {
        bdat_refusal_ = Refusal{503, "5.5.1", "Error: send HELO/EHLO first"};
    } else if (!esmtp_) {
        bdat_refusal_ = Refusal{503, "5.5.1", "Error: BDAT needs EHLO"};
    } else if (state_ == kReady) {
        bdat_refusal_ = Refusal{503, "5.5.1", "Error: need MAIL command"};
    } else if (envelope_.recipients.empty()) {
        bdat_refusal_ = Refusal{554, "5.5.1", "Error: no valid recipients"};
    } else if (state_ == kMail) {
        data_ =
            DataReader(DataReader::Mode::Raw, limits_.text_line_limit, limits_.message_size_limit);
        begin_message();
        state_ = kBdat;
    }
}

void Engine::act_rset(Parsed&) {
    reset_transaction();
    reply(250, "2.0.0", "Ok");
}

void Engine::act_noop(Parsed&) {
    reply(250, "2.0.0", "Ok");
}

void Engine::act_quit(Parsed&) {
    reply(221, "2.0.0", "Bye");
    close_session();
}

void Engine::act_vrfy(Parsed&) {
    // Never confirms or denies a user (no address harvesting).
    reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

void Engine::act_expn(Parsed&) {
    reply(502, "5.5.1", "Error: EXPN command disabled");
}

void Engine::act_help(Parsed&) {
    std::string text = "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP";
    if (policy_.starttls_offered && !session_.tls_active) text += " STARTTLS";
    if (policy_.auth_offered) text += " AUTH";
    reply(214, "2.0.0", text);
}

void Engine::act_starttls(Parsed&) {
    reply(220, "2.0.0", "Ready to start TLS");
    out_.push_back(StartTls{});
    // Whatever the client pipelined after STARTTLS arrived in plaintext and
    // must not be executed inside the TLS session (RFC 3207 5, CVE-2011-0411).
    tls_discarded_ += pending().size();
    in_.clear();
    in_pos_ = 0;
    lines_.reset();
    wait_ = Wait::Tls;
}

void Engine::act_auth(Parsed& p) {
    const auto& args = std::get<AuthArgs>(p.value);
    sasl_.emplace(*sasl::parse_mechanism(args.mechanism));
    sasl_step(sasl_->start(args.initial_response));
}

}  // namespace pbx::smtp
