// The engine's input loop, message text handling and answers from the glue.
// The commands themselves are in commands.cpp.
#include "common/smtp/engine.hpp"

#include <algorithm>

#include "common/config/config.hpp"
#include "common/smtp/received.hpp"

namespace pbx::smtp {
namespace {

// Reply text may quote client input (addresses, queue IDs from the glue);
// nothing in it may end the reply line early.
void append_sanitized(std::string& out, std::string_view text) {
    for (unsigned char c : text) out += (c < 0x20 || c == 0x7F) ? '?' : static_cast<char>(c);
}

// A refusal code from the glue: 4xx or 5xx.
bool valid_code(int code) {
    return code >= 400 && code <= 599;
}

}  // namespace

Limits limits_from_config(const config::Config& config) {
    Limits l;
    l.line_limit = config.size("smtpd_line_limit");
    l.text_line_limit = config.size("smtpd_text_line_limit");
    l.max_recipients = static_cast<size_t>(config.integer("smtpd_max_recipients"));
    l.message_size_limit = config.size("message_size_limit");
    l.max_bad_commands = static_cast<unsigned>(config.integer("smtpd_max_bad_commands"));
    return l;
}

std::string TlsInfo::describe() const {
    std::string s = version;
    if (!cipher.empty()) {
        s += " with cipher ";
        s += cipher;
    }
    if (bits > 0) {
        s += " (" + std::to_string(bits) + "/" + std::to_string(bits) + " bits)";
    }
    return s;
}

Engine::Engine(const Limits& limits, const Policy& policy, SessionInfo session)
    : limits_(limits), policy_(policy), session_(std::move(session)) {
    // Floors that keep the engine meaningful with odd settings: a line must
    // hold at least a short command, AUTH lines are never shorter than others.
    limits_.line_limit = std::max<size_t>(limits_.line_limit, 16);
    limits_.sasl_line_limit = std::max(limits_.sasl_line_limit, limits_.line_limit);
    limits_.text_line_limit = std::max<size_t>(limits_.text_line_limit, 3);
    limits_.chunk_size = std::max<size_t>(limits_.chunk_size, 1);
    limits_.max_bad_commands = std::max(limits_.max_bad_commands, 1u);
    // Authentication is a property of this session, never of the policy
    // the glue passes in.
    policy_.authenticated = false;
}

std::string Engine::greeting() const {
    std::string s = "220 ";
    append_sanitized(s, session_.hostname);
    s += " ESMTP Pillarbox\r\n";
    return s;
}

void Engine::client_spoke_early() {
    if (closed_) return;
    reply(554, "5.7.1", session_.hostname + " Error: client sent data before greeting");
    close_session();
}

void Engine::timed_out() {
    if (closed_) return;
    reply(421, "4.4.2", session_.hostname + " Error: timeout exceeded");
    close_session();
}

void Engine::shutting_down() {
    if (closed_) return;
    reply(421, "4.3.2", session_.hostname + " Service shutting down, closing transmission channel");
    close_session();
}

Phase Engine::phase() const {
    if (wait_ != Wait::None) return Phase::Waiting;
    if (mode_ == Mode::Data || mode_ == Mode::BdatChunk) return Phase::Data;
    return Phase::Command;
}

bool Engine::wants_input() const {
    if (closed_ || wait_ == Wait::Tls) return false;
    return wait_ == Wait::None || pending().size() < limits_.max_pending_input;
}

size_t Engine::feed(std::string_view bytes) {
    if (closed_) return bytes.size();
    if (wait_ == Wait::Tls) {
        // Plaintext after STARTTLS: never executed (CVE-2011-0411 and kin).
        tls_discarded_ += bytes.size();
        return bytes.size();
    }
    size_t take = bytes.size();
    if (wait_ != Wait::None) {
        size_t held = pending().size();
        take = held >= limits_.max_pending_input ? 0
                                                 : std::min(take, limits_.max_pending_input - held);
    }
    in_.append(bytes.substr(0, take));
    process();
    return take;
}

std::vector<Output> Engine::take_output() {
    std::vector<Output> out;
    out.swap(out_);
    return out;
}

void Engine::consume(size_t n) {
    in_pos_ += n;
    if (in_pos_ >= in_.size()) {
        in_.clear();
        in_pos_ = 0;
    } else if (in_pos_ > 4096 && in_pos_ > in_.size() / 2) {
        in_.erase(0, in_pos_);
        in_pos_ = 0;
    }
}

void Engine::process() {
    while (!closed_ && wait_ == Wait::None) {
        bool progress = false;
        switch (mode_) {
            case Mode::Command:
                progress = process_command_input();
                break;
            case Mode::Data:
                progress = process_data_input();
                break;
            case Mode::BdatChunk:
                progress = process_bdat_input();
                break;
            case Mode::Sasl:
                progress = process_sasl_input();
                break;
        }
        if (!progress) break;
    }
}

bool Engine::process_command_input() {
    std::string_view view = pending();
    // RFC 4954 4: an AUTH line may carry an initial response up to 12288 octets.
    size_t limit = istarts_with(view, "AUTH ") ? limits_.sasl_line_limit : limits_.line_limit;
    LineResult r = lines_.next(view, limit);
    switch (r.status) {
        case LineStatus::NeedMore:
            return false;
        case LineStatus::Line: {
            std::string line(r.line);  // the buffer may change under the command
            consume(r.consumed);
            handle_line(line);
            return true;
        }
        case LineStatus::TooLong:
            consume(r.consumed);
            bad(500, "5.5.2", "Error: line too long");
            return true;
        case LineStatus::BareLf:
            consume(r.consumed);
            bad(500, "5.5.2", "Error: bare <LF> received");
            return true;
        case LineStatus::BareCr:
            consume(r.consumed);
            bad(500, "5.5.2", "Error: bare <CR> received");
            return true;
        case LineStatus::Discarded:
            consume(r.consumed);
            return true;
    }
    return false;
}

bool Engine::process_sasl_input() {
    LineResult r = lines_.next(pending(), limits_.sasl_line_limit);
    if (r.status == LineStatus::NeedMore) return false;
    if (r.status == LineStatus::Line) {
        std::string line(r.line);
        consume(r.consumed);
        sasl_step(sasl_->respond(line));
        return true;
    }
    consume(r.consumed);
    if (r.status == LineStatus::Discarded) return true;
    mode_ = Mode::Command;
    sasl_.reset();
    if (r.status == LineStatus::TooLong) {
        bad(500, "5.5.6", "Error: authentication exchange line is too long");
    } else if (r.status == LineStatus::BareLf) {
        bad(500, "5.5.2", "Error: bare <LF> received");
    } else {
        bad(500, "5.5.2", "Error: bare <CR> received");
    }
    return true;
}

void Engine::sasl_step(const sasl::Exchange::Step& step) {
    using Kind = sasl::Exchange::Step::Kind;
    switch (step.kind) {
        case Kind::Challenge:
            mode_ = Mode::Sasl;
            out_.push_back(Reply{"334 " + step.challenge + "\r\n"});
            return;
        case Kind::Done:
            mode_ = Mode::Command;
            wait_ = Wait::Auth;
            out_.push_back(Authenticate{sasl_->mechanism(), sasl_->credentials()});
            return;
        case Kind::Failed:
            mode_ = Mode::Command;
            sasl_.reset();
            switch (step.error) {
                case sasl::SaslError::Cancelled:
                    bad(501, "5.0.0", "Authentication cancelled");
                    return;
                case sasl::SaslError::BadBase64:
                    bad(501, "5.5.2", "Error: cannot decode response");
                    return;
                case sasl::SaslError::Malformed:
                    bad(501, "5.5.2", "Error: malformed authentication response");
                    return;
            }
    }
}

bool Engine::process_data_input() {
    std::string_view view = pending();
    size_t n = data_.feed(view, chunk_);
    consume(n);
    flush_chunks(false);
    if (data_.problems() != 0 && !aborted_) abort_message(problem_refusal(data_.problems()).text);
    if (data_.done()) {
        finish_data();
        return true;
    }
    return n > 0;
}

bool Engine::process_bdat_input() {
    if (bdat_remaining_ == 0) {
        finish_bdat_chunk();
        return true;
    }
    std::string_view view = pending();
    if (view.empty()) return false;
    size_t n = static_cast<size_t>(std::min<uint64_t>(view.size(), bdat_remaining_));
    if (!bdat_refusal_ && !aborted_) {
        (void)data_.feed(view.substr(0, n), chunk_);  // raw mode takes everything
        flush_chunks(false);
        if (data_.problems() != 0) abort_message(problem_refusal(data_.problems()).text);
    }
    consume(n);
    bdat_remaining_ -= n;
    if (bdat_remaining_ == 0) finish_bdat_chunk();
    return true;
}

void Engine::finish_data() {
    mode_ = Mode::Command;
    if (data_.problems() != 0) {
        refuse(problem_refusal(data_.problems()));
        reset_transaction();
        return;
    }
    end_message();
}

void Engine::finish_bdat_chunk() {
    mode_ = Mode::Command;
    if (bdat_refusal_) {
        Refusal r = std::move(*bdat_refusal_);
        bdat_refusal_.reset();
        refuse(r);
        return;
    }
    if (!aborted_ && bdat_last_) {
        data_.finish_raw();
        // The queue keeps messages ending in CRLF, whatever the last chunk
        // ended with, so that they can be sent on with DATA.
        if (data_.problems() == 0 && data_.mid_line()) (void)data_.feed("\r\n", chunk_);
        flush_chunks(false);
        if (data_.problems() != 0) abort_message(problem_refusal(data_.problems()).text);
    }
    if (aborted_) {
        // RFC 3030 4.2: a failed chunk fails the transaction.
        refuse(problem_refusal(data_.problems()));
        reset_transaction();
        return;
    }
    if (!bdat_last_) {
        reply(250, "2.0.0", "Ok: " + std::to_string(data_.size()) + " octets received");
        return;
    }
    end_message();
}

Engine::Refusal Engine::problem_refusal(uint8_t problems) const {
    // The most useful reason first: size is what the client can fix.
    if (problems & kProblemTooBig) {
        return {552, "5.3.4", "Error: message size exceeds fixed limit", false};
    }
    if (problems & kProblemBareLf) {
        return {550, "5.6.0", "Error: message contains bare <LF>", false};
    }
    if (problems & kProblemBareCr) {
        return {550, "5.6.0", "Error: message contains bare <CR>", false};
    }
    return {
        550, "5.6.0",
        "Error: message line longer than " + std::to_string(limits_.text_line_limit) + " octets",
        false};
}

void Engine::begin_message() {
    envelope_.protocol =
        protocol_name(esmtp_, envelope_.smtputf8, session_.tls_active, policy_.authenticated);
    out_.push_back(BeginMessage{envelope_});
    message_open_ = true;
    aborted_ = false;
    chunk_.clear();
}

void Engine::end_message() {
    flush_chunks(true);
    out_.push_back(EndMessage{});
    message_open_ = false;
    wait_ = Wait::Message;
}

void Engine::flush_chunks(bool all) {
    // Fixed-size chunks: the output does not depend on how the client's
    // bytes were split into reads.
    size_t pos = 0;
    while (chunk_.size() - pos >= limits_.chunk_size) {
        out_.push_back(MessageChunk{chunk_.substr(pos, limits_.chunk_size)});
        pos += limits_.chunk_size;
    }
    if (all && pos < chunk_.size()) {
        out_.push_back(MessageChunk{chunk_.substr(pos)});
        pos = chunk_.size();
    }
    chunk_.erase(0, pos);
}

void Engine::abort_message(std::string_view reason) {
    if (message_open_) {
        out_.push_back(AbortMessage{std::string(reason)});
        message_open_ = false;
    }
    aborted_ = true;
    chunk_.clear();
}

void Engine::reset_transaction() {
    if (message_open_) abort_message("transaction reset");
    envelope_ = Envelope{};
    aborted_ = false;
    chunk_.clear();
    pending_rcpt_.reset();
    if (state_ != kInit) state_ = kReady;
}

void Engine::reply(int code, std::string_view enhanced, std::string_view text) {
    std::string line = std::to_string(code);
    line += ' ';
    if (!enhanced.empty()) {
        line += enhanced;
        line += ' ';
    }
    append_sanitized(line, text);
    line += "\r\n";
    out_.push_back(Reply{std::move(line)});
}

void Engine::bad(int code, std::string_view enhanced, std::string_view text) {
    reply(code, enhanced, text);
    if (closed_) return;
    if (++bad_commands_ >= limits_.max_bad_commands) {
        reply(421, "4.7.0", session_.hostname + " Error: too many errors");
        close_session();
    }
}

void Engine::refuse(const Refusal& r) {
    if (r.counts) {
        bad(r.code, r.enhanced, r.text);
    } else {
        reply(r.code, r.enhanced, r.text);
    }
    if (r.close && !closed_) close_session();
}

void Engine::close_session() {
    if (message_open_) abort_message("session closed");
    out_.push_back(Close{});
    closed_ = true;
    wait_ = Wait::None;
    mode_ = Mode::Command;
    in_.clear();
    in_pos_ = 0;
    sasl_.reset();
}

bool Engine::recipient_result(const RecipientResult& result) {
    if (closed_ || wait_ != Wait::Recipient || !pending_rcpt_) return false;
    wait_ = Wait::None;
    RcptArgs args = std::move(*pending_rcpt_);
    pending_rcpt_.reset();
    const std::string addr = args.to.str();
    switch (result.kind) {
        case RecipientResult::Kind::Found:
            accept_recipient(args, result.canonical.empty() ? addr : result.canonical);
            break;
        case RecipientResult::Kind::Unknown:
            bad(550, "5.1.1", "<" + addr + ">: Recipient address rejected: User unknown");
            break;
        case RecipientResult::Kind::TempFail:
            reply(451, "4.3.0", "<" + addr + ">: Temporary lookup failure, try again later");
            break;
        case RecipientResult::Kind::Refused:
            reply(valid_code(result.refusal.code) ? result.refusal.code : 550,
                  result.refusal.enhanced, result.refusal.text);
            break;
    }
    process();
    return true;
}

bool Engine::sender_result(const SenderResult& result) {
    if (closed_ || wait_ != Wait::Sender) return false;
    wait_ = Wait::None;
    switch (result.kind) {
        case SenderResult::Kind::Accept:
            accept_sender();
            break;
        case SenderResult::Kind::Refused:
            reply(valid_code(result.refusal.code) ? result.refusal.code : 550,
                  result.refusal.enhanced, result.refusal.text);
            envelope_ = Envelope{};
            break;
        case SenderResult::Kind::TempFail:
            reply(451, "4.3.0", "Temporary sender check failure, try again later");
            envelope_ = Envelope{};
            break;
    }
    process();
    return true;
}

bool Engine::message_result(const MessageResult& result) {
    if (closed_ || wait_ != Wait::Message) return false;
    wait_ = Wait::None;
    switch (result.kind) {
        case MessageResult::Kind::Queued:
            reply(250, "2.0.0", "Ok: queued as " + result.text);
            break;
        case MessageResult::Kind::TempFail:
            reply(451, "4.3.0",
                  result.text.empty() ? "Error: queue file write error, try again later"
                                      : result.text);
            break;
        case MessageResult::Kind::PermFail: {
            bool valid = result.enhanced.size() >= 5 && result.enhanced[0] == '5' &&
                         result.enhanced[1] == '.';
            const bool code_ok = result.code >= 550 && result.code <= 559;
            reply(code_ok ? result.code : 554, valid ? std::string_view(result.enhanced) : "5.3.0",
                  result.text.empty() ? "Error: message refused" : result.text);
            break;
        }
    }
    reset_transaction();
    process();
    return true;
}

bool Engine::auth_result(const AuthResult& result) {
    if (closed_ || wait_ != Wait::Auth) return false;
    wait_ = Wait::None;
    sasl_.reset();
    switch (result.kind) {
        case AuthResult::Kind::Success:
            policy_.authenticated = true;
            auth_user_ = result.user;
            reply(235, "2.7.0", "Authentication successful");
            break;
        case AuthResult::Kind::Failed:
            bad(535, "5.7.8", "Error: authentication credentials invalid");
            break;
        case AuthResult::Kind::TempFail:
            reply(454, "4.7.0", "Temporary authentication failure, try again later");
            break;
    }
    process();
    return true;
}

bool Engine::tls_started(const TlsInfo& info) {
    if (closed_ || wait_ != Wait::Tls) return false;
    wait_ = Wait::None;
    session_.tls_active = true;
    session_.tls = info;
    // RFC 3207 4.2: forget everything the client said before TLS.
    state_ = kInit;
    esmtp_ = false;
    helo_.clear();
    policy_.authenticated = false;
    auth_user_.clear();
    envelope_ = Envelope{};
    lines_.reset();
    in_.clear();
    in_pos_ = 0;
    if (tls_discarded_ > 0) {
        out_.push_back(InputDiscarded{tls_discarded_});
        tls_discarded_ = 0;
    }
    process();
    return true;
}

}  // namespace pbx::smtp
