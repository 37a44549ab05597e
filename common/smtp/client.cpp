#include "common/smtp/client.hpp"

#include <algorithm>
#include <charconv>

#include "common/smtp/address.hpp"
#include "common/smtp/sasl.hpp"

namespace pbx::smtp::client {

namespace {

constexpr size_t kMaxOneLine = 512;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Printable ASCII, for error texts that quote what a server sent.
std::string printable(std::string_view s, size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) {
        auto u = static_cast<unsigned char>(c);
        out += (u >= 32 && u < 127) ? c : '?';
    }
    if (s.size() > max) out += "...";
    return out;
}

// "5.1.1" at the start of `text` whose class is `klass`; its length, or 0.
size_t enhanced_length(std::string_view text, int klass) {
    if (text.size() < 5 || text[0] != static_cast<char>('0' + klass) || text[1] != '.') return 0;
    size_t i = 2;
    size_t digits = 0;
    while (i < text.size() && is_digit(text[i]) && digits < 3) ++i, ++digits;
    if (digits == 0 || i >= text.size() || text[i] != '.') return 0;
    ++i;
    digits = 0;
    while (i < text.size() && is_digit(text[i]) && digits < 3) ++i, ++digits;
    if (digits == 0) return 0;
    if (i < text.size() && text[i] != ' ') return 0;
    return i;
}

}  // namespace

// ---- replies ------------------------------------------------------------

std::string Reply::enhanced() const {
    if (lines.empty()) return {};
    size_t n = enhanced_length(lines.front(), klass());
    return lines.front().substr(0, n);
}

std::string Reply::dsn() const {
    std::string e = enhanced();
    if (!e.empty()) return e;
    return std::to_string(klass()) + ".0.0";
}

std::string Reply::one_line() const {
    std::string out = std::to_string(code);
    std::string first_code = enhanced();
    for (size_t i = 0; i < lines.size(); ++i) {
        std::string_view text = lines[i];
        if (i > 0 && !first_code.empty() && text.substr(0, first_code.size()) == first_code) {
            text.remove_prefix(first_code.size());
            while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
        }
        if (text.empty()) continue;
        out += ' ';
        out += printable(text, kMaxOneLine);
        if (out.size() >= kMaxOneLine) break;
    }
    if (out.size() > kMaxOneLine) {
        out.resize(kMaxOneLine - 3);
        out += "...";
    }
    return out;
}

ReplyReader::Step ReplyReader::next(std::string_view input) {
    Step st;
    if (failed_) {
        st.status = Status::Error;
        st.consumed = input.size();
        st.error = "the reply stream is broken";
        return st;
    }
    size_t pos = 0;
    while (pos < input.size()) {
        size_t nl = input.find('\n', pos);
        if (nl == std::string_view::npos) {
            std::string_view rest = input.substr(pos);
            if (partial_.size() + rest.size() >= limits_.max_line) {
                failed_ = true;
                st.status = Status::Error;
                st.consumed = input.size();
                st.error = "reply line longer than " + std::to_string(limits_.max_line) + " bytes";
                return st;
            }
            partial_.append(rest);
            st.consumed = input.size();
            return st;
        }
        std::string_view piece = input.substr(pos, nl - pos);
        pos = nl + 1;
        if (partial_.size() + piece.size() + 1 > limits_.max_line) {
            failed_ = true;
            st.status = Status::Error;
            st.consumed = pos;
            st.error = "reply line longer than " + std::to_string(limits_.max_line) + " bytes";
            return st;
        }
        std::string line;
        if (!partial_.empty()) {
            line = std::move(partial_);
            partial_.clear();
            line.append(piece);
            piece = line;
        }
        if (!piece.empty() && piece.back() == '\r') piece.remove_suffix(1);
        bool complete = false;
        if (auto err = take_line(piece)) {
            failed_ = true;
            st.status = Status::Error;
            st.consumed = pos;
            st.error = std::move(*err);
            return st;
        }
        complete = !in_reply_;
        if (complete) {
            st.status = Status::Reply;
            st.consumed = pos;
            st.reply = std::move(building_);
            building_ = Reply{};
            return st;
        }
    }
    st.consumed = input.size();
    return st;
}

// Adds one line (without its line end) to the reply being built; in_reply_
// turns false when it was the last line. The error text when it is bad.
std::optional<std::string> ReplyReader::take_line(std::string_view line) {
    if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
        !is_digit(line[2]))
        return "bad reply code in \"" + printable(line, 40) + "\"";
    if (line.size() > 3 && line[3] != ' ' && line[3] != '-')
        return "malformed reply line \"" + printable(line, 40) + "\"";
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (in_reply_ && code != building_.code)
        return "reply line with code " + std::to_string(code) + " inside a " +
               std::to_string(building_.code) + " reply";
    if (building_.lines.size() >= limits_.max_lines)
        return "reply longer than " + std::to_string(limits_.max_lines) + " lines";
    building_.code = code;
    building_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view{});
    in_reply_ = line.size() > 3 && line[3] == '-';
    return std::nullopt;
}

std::string_view to_string(TlsLevel l) {
    switch (l) {
        case TlsLevel::None:
            return "none";
        case TlsLevel::May:
            return "may";
        case TlsLevel::Encrypt:
            return "encrypt";
        case TlsLevel::Verify:
            return "verify";
    }
    return "may";
}

std::optional<TlsLevel> parse_tls_level(std::string_view s) {
    for (TlsLevel l : {TlsLevel::None, TlsLevel::May, TlsLevel::Encrypt, TlsLevel::Verify})
        if (iequals(s, to_string(l))) return l;
    return std::nullopt;
}

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::Sent:
            return "sent";
        case Verdict::Deferred:
            return "deferred";
        case Verdict::Failed:
            return "failed";
    }
    return "deferred";
}

Extensions parse_ehlo(const Reply& reply) {
    Extensions ext;
    ext.esmtp = true;
    for (size_t i = 1; i < reply.lines.size(); ++i) {
        std::string_view line = reply.lines[i];
        size_t sp = line.find_first_of(" =");
        std::string_view kw = line.substr(0, sp);
        std::string_view params = sp == std::string_view::npos ? "" : line.substr(sp + 1);
        if (iequals(kw, "PIPELINING")) {
            ext.pipelining = true;
        } else if (iequals(kw, "STARTTLS")) {
            ext.starttls = true;
        } else if (iequals(kw, "8BITMIME")) {
            ext.eightbitmime = true;
        } else if (iequals(kw, "SMTPUTF8")) {
            ext.smtputf8 = true;
        } else if (iequals(kw, "DSN")) {
            ext.dsn = true;
        } else if (iequals(kw, "CHUNKING")) {
            ext.chunking = true;
        } else if (iequals(kw, "SIZE")) {
            ext.size = true;
            uint64_t n = 0;
            auto [p, ec] = std::from_chars(params.data(), params.data() + params.size(), n);
            if (ec == std::errc() && p == params.data() + params.size()) ext.size_limit = n;
        } else if (iequals(kw, "AUTH")) {
            size_t start = 0;
            while (start < params.size()) {
                size_t end = params.find(' ', start);
                if (end == std::string_view::npos) end = params.size();
                std::string_view mech = params.substr(start, end - start);
                if (iequals(mech, "PLAIN")) ext.auth_plain = true;
                if (iequals(mech, "LOGIN")) ext.auth_login = true;
                start = end + 1;
            }
        }
    }
    return ext;
}

// ---- the body -----------------------------------------------------------

std::string BodyWriter::next(size_t max) {
    if (finished_) return {};
    if (max == 0) max = 1;
    std::string out;
    out.reserve(std::min(max, text_.size() - pos_) + 8);
    while (pos_ < text_.size() && out.size() < max) {
        char c = text_[pos_];
        if (c == '\n') {
            if (!prev_cr_) out += '\r';
            out += '\n';
            line_start_ = true;
            prev_cr_ = false;
            ++pos_;
            continue;
        }
        if (c == '\r') {
            out += '\r';
            prev_cr_ = true;
            line_start_ = false;
            ++pos_;
            continue;
        }
        if (line_start_ && stuff_ && c == '.') out += '.';
        size_t end = text_.find_first_of("\r\n", pos_);
        if (end == std::string_view::npos) end = text_.size();
        end = std::min(end, pos_ + std::max<size_t>(max - std::min(max, out.size()), 1));
        out.append(text_.substr(pos_, end - pos_));
        pos_ = end;
        line_start_ = false;
        prev_cr_ = false;
    }
    if (pos_ >= text_.size()) {
        if (!line_start_) out += prev_cr_ ? "\n" : "\r\n";
        line_start_ = true;
        if (stuff_) out += ".\r\n";
        finished_ = true;
    }
    return out;
}

uint64_t BodyWriter::normalized_size(std::string_view text) {
    uint64_t n = text.size();
    for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) ++n;
    if (!text.empty() && text.back() != '\n') n += text.back() == '\r' ? 1 : 2;
    return n;
}

// ---- the session ----------------------------------------------------------

Session::Session(Settings settings) : settings_(std::move(settings)), reader_(settings_.limits) {
    expect_.push_back({Cmd::Greeting});
}

std::vector<Action> Session::take_actions() {
    std::vector<Action> out;
    out.swap(out_);
    return out;
}

const char* Session::cmd_name(Cmd c) {
    switch (c) {
        case Cmd::Greeting:
            return "the greeting";
        case Cmd::Ehlo:
            return "EHLO";
        case Cmd::Helo:
            return "HELO";
        case Cmd::StartTls:
            return "STARTTLS";
        case Cmd::AuthPlain:
        case Cmd::AuthLogin:
        case Cmd::AuthUser:
        case Cmd::AuthPass:
            return "AUTH";
        case Cmd::Mail:
            return "MAIL FROM";
        case Cmd::Rcpt:
            return "RCPT TO";
        case Cmd::Data:
            return "DATA";
        case Cmd::DataEnd:
            return "end of DATA";
        case Cmd::Bdat:
            return "BDAT";
        case Cmd::Rset:
            return "RSET";
        case Cmd::Quit:
            return "QUIT";
    }
    return "?";
}

std::string_view Session::waiting_for() const {
    if (state_ == State::Body) return "sending the message";
    if (state_ == State::Handshake) return "the TLS handshake";
    if (expect_head_ < expect_.size()) return cmd_name(expect_[expect_head_].cmd);
    return "nothing";
}

Phase Session::phase() const {
    switch (state_) {
        case State::Greeting:
            return Phase::Greeting;
        case State::Body:
            return Phase::DataBlock;
        case State::Ready:
            return Phase::Idle;
        case State::Closed:
            return Phase::Closed;
        default:
            break;
    }
    if (expect_head_ < expect_.size()) {
        Cmd c = expect_[expect_head_].cmd;
        if (c == Cmd::Data) return Phase::DataInit;
        if (c == Cmd::DataEnd || c == Cmd::Bdat) return Phase::DataDone;
    }
    return Phase::Command;
}

std::string Session::reply_text(const Reply& r, Cmd c) const {
    if (c == Cmd::Greeting) return r.one_line() + " (in the greeting)";
    return r.one_line() + " (in reply to " + cmd_name(c) + " command)";
}

void Session::send(std::string bytes, Cmd cmd, size_t index) {
    expect_.push_back({cmd, index});
    out_.push_back(Send{std::move(bytes)});
}

void Session::close() {
    if (state_ == State::Closed) return;
    state_ = State::Closed;
    expect_.clear();
    expect_head_ = 0;
    out_.push_back(Close{});
}

void Session::host_failed(std::string reason, bool retry_without_tls, bool message_only) {
    if (state_ == State::Closed) return;
    // The transaction's recipients without a result stay undecided: the
    // next host gets them.
    t_.reset();
    out_.push_back(HostFailed{std::move(reason), retry_without_tls, message_only});
    out_.push_back(Send{"QUIT\r\n"});
    close();
}

void Session::result(size_t index, Verdict v, std::string reply, std::string dsn) {
    if (!t_ || index >= answered_.size() || answered_[index]) return;
    answered_[index] = true;
    out_.push_back(RcptDone{index, v, std::move(reply), std::move(dsn)});
}

void Session::fail_open(Verdict v, const std::string& reply, const std::string& dsn) {
    for (size_t i = 0; i < answered_.size(); ++i)
        if (!answered_[i]) result(i, v, reply, dsn);
}

bool Session::any_result_positive() const {
    return std::find(accepted_.begin(), accepted_.end(), true) != accepted_.end();
}

// The connection is gone (or must go) in the middle of something.
void Session::lost(std::string_view why) {
    if (state_ == State::Closed) return;
    std::string where(waiting_for());
    std::string reason = "4.4.2 lost connection while waiting for " + where +
                         (why.empty() ? "" : ": ") + std::string(why);
    bool in_transaction = t_.has_value() && (state_ == State::Transaction || state_ == State::Body);
    if (state_ == State::Quit || state_ == State::Ready || state_ == State::Rset) {
        close();
        return;
    }
    if (in_transaction) {
        if (!end_sent_) {
            // Nothing can have been delivered: the rest may go to another host.
            out_.push_back(HostFailed{reason, false, false});
            t_.reset();
            close();
            return;
        }
        // The end of the message was sent: it may have been delivered, so it
        // must not go elsewhere now; the queue retries later.
        fail_open(Verdict::Deferred, reason, "4.4.2");
        out_.push_back(TransactionDone{});
        t_.reset();
        close();
        return;
    }
    out_.push_back(HostFailed{reason, false, false});
    close();
}

void Session::timed_out() {
    lost("timed out");
}

void Session::protocol_error(std::string_view what) {
    if (state_ == State::Closed) return;
    lost("protocol error: " + std::string(what));
}

void Session::feed(std::string_view bytes) {
    while (!bytes.empty() && state_ != State::Closed) {
        auto st = reader_.next(bytes);
        bytes.remove_prefix(std::min(st.consumed, bytes.size()));
        if (st.status == ReplyReader::Status::Error) {
            protocol_error(st.error);
            return;
        }
        if (st.status == ReplyReader::Status::NeedMore) return;
        on_reply(st.reply);
    }
}

void Session::on_reply(const Reply& r) {
    if (expect_head_ >= expect_.size() || state_ == State::Body || state_ == State::Handshake) {
        protocol_error("unexpected reply \"" + r.one_line() + "\"");
        return;
    }
    Expect e = expect_[expect_head_++];
    if (expect_head_ == expect_.size()) {
        expect_.clear();
        expect_head_ = 0;
    }
    switch (e.cmd) {
        case Cmd::Greeting:
            return on_greeting(r);
        case Cmd::Ehlo:
            return on_ehlo(r, false);
        case Cmd::Helo:
            return on_ehlo(r, true);
        case Cmd::StartTls:
            return on_starttls(r);
        case Cmd::AuthPlain:
        case Cmd::AuthLogin:
        case Cmd::AuthUser:
        case Cmd::AuthPass:
            return on_auth(e.cmd, r);
        case Cmd::Mail:
            return on_mail(r);
        case Cmd::Rcpt:
            return on_rcpt(e.index, r);
        case Cmd::Data:
            return on_data(r);
        case Cmd::DataEnd:
        case Cmd::Bdat:
            return on_data_end(r);
        case Cmd::Rset:
            return on_rset(r);
        case Cmd::Quit:
            close();
            return;
    }
}

void Session::on_greeting(const Reply& r) {
    if (r.code != 220) return host_failed(reply_text(r, Cmd::Greeting));
    state_ = State::Ehlo;
    send("EHLO " + settings_.helo_name + "\r\n", Cmd::Ehlo);
}

void Session::on_ehlo(const Reply& r, bool helo) {
    if (r.code == 250) {
        ext_ = helo ? Extensions{} : parse_ehlo(r);
        return after_hello();
    }
    if (!helo && r.klass() == 5 && !tls_active_) {
        // RFC 5321 3.2: a server that does not know EHLO still knows HELO.
        state_ = State::Helo;
        send("HELO " + settings_.helo_name + "\r\n", Cmd::Helo);
        return;
    }
    host_failed(reply_text(r, helo ? Cmd::Helo : Cmd::Ehlo));
}

void Session::after_hello() {
    bool want_tls = settings_.tls != TlsLevel::None;
    bool need_tls = settings_.tls == TlsLevel::Encrypt || settings_.tls == TlsLevel::Verify;
    if (!tls_active_ && want_tls && !starttls_refused_ && settings_.tls_possible && ext_.starttls) {
        state_ = State::StartTls;
        send("STARTTLS\r\n", Cmd::StartTls);
        return;
    }
    if (!tls_active_ && need_tls) {
        return host_failed(std::string("4.7.4 TLS is required, but ") +
                           (!settings_.tls_possible ? "no TLS client context is available"
                            : starttls_refused_     ? "the host refused STARTTLS"
                                                    : "the host did not offer STARTTLS"));
    }
    if (settings_.credentials && !authenticated_) return start_auth();
    state_ = State::Ready;
    out_.push_back(Ready{});
}

void Session::on_starttls(const Reply& r) {
    if (r.code == 220) {
        state_ = State::Handshake;
        out_.push_back(StartTls{});
        return;
    }
    if (r.klass() != 4 && r.klass() != 5) return protocol_error("unexpected reply to STARTTLS");
    starttls_refused_ = true;
    starttls_reply_ = reply_text(r, Cmd::StartTls);
    after_hello();
}

void Session::tls_done(const TlsOutcome& o) {
    if (state_ != State::Handshake) return;
    if (!o.ok) {
        out_.push_back(HostFailed{"4.7.5 TLS handshake failed: " + o.detail,
                                  settings_.tls == TlsLevel::May, false});
        close();
        return;
    }
    tls_active_ = true;
    if (settings_.tls == TlsLevel::Verify && !o.verified)
        return host_failed("4.7.5 server certificate not verified: " + o.detail);
    // RFC 3207 4.2: forget what the server said before TLS and ask again.
    ext_ = Extensions{};
    state_ = State::Ehlo;
    send("EHLO " + settings_.helo_name + "\r\n", Cmd::Ehlo);
}

void Session::start_auth() {
    if (!tls_active_)
        return host_failed(
            "4.7.0 not sending credentials without TLS (" +
            (starttls_refused_ ? starttls_reply_ : std::string("no STARTTLS with the host")) + ")");
    if (!ext_.auth_plain && !ext_.auth_login) {
        // The server asks for no authentication (Postfix does the same).
        state_ = State::Ready;
        out_.push_back(Ready{});
        return;
    }
    state_ = State::Auth;
    const auto& [user, password] = *settings_.credentials;
    if (ext_.auth_plain) {
        std::string msg;
        msg += '\0';
        msg += user;
        msg += '\0';
        msg += password;
        send("AUTH PLAIN " + sasl::base64_encode(msg) + "\r\n", Cmd::AuthPlain);
    } else {
        send("AUTH LOGIN\r\n", Cmd::AuthLogin);
    }
}

void Session::on_auth(Cmd cmd, const Reply& r) {
    const auto& [user, password] = *settings_.credentials;
    if ((cmd == Cmd::AuthPlain || cmd == Cmd::AuthPass) && r.code == 235) {
        authenticated_ = true;
        state_ = State::Ready;
        out_.push_back(Ready{});
        return;
    }
    if (cmd == Cmd::AuthLogin && r.code == 334) {
        send(sasl::base64_encode(user) + "\r\n", Cmd::AuthUser);
        return;
    }
    if (cmd == Cmd::AuthUser && r.code == 334) {
        send(sasl::base64_encode(password) + "\r\n", Cmd::AuthPass);
        return;
    }
    std::string reason = "authentication failed: " + reply_text(r, cmd);
    if (r.code == 334) {
        // A challenge we cannot answer: cancel the exchange, then go.
        out_.push_back(HostFailed{"4.7.0 " + reason, false, false});
        out_.push_back(Send{"*\r\n"});
        close();
        return;
    }
    host_failed(std::to_string(r.klass()) + ".7.0 " + reason);
}

// ---- transactions ---------------------------------------------------------

std::string Session::mail_command() const {
    const Transaction& t = *t_;
    std::string cmd = "MAIL FROM:<" + t.sender + ">";
    if (ext_.size) cmd += " SIZE=" + std::to_string(t.size);
    if (t.body == BodyType::EightBitMime && ext_.eightbitmime) cmd += " BODY=8BITMIME";
    if (t.smtputf8) cmd += " SMTPUTF8";
    if (ext_.dsn) {
        if (t.ret == DsnRet::Full) cmd += " RET=FULL";
        if (t.ret == DsnRet::Hdrs) cmd += " RET=HDRS";
        if (!t.envid.empty()) cmd += " ENVID=" + xtext_encode(t.envid);
    }
    return cmd + "\r\n";
}

std::string Session::rcpt_command(size_t i) const {
    const Recipient& r = t_->recipients[i];
    std::string cmd = "RCPT TO:<" + r.address + ">";
    if (ext_.dsn) {
        if (r.notify & kNotifyNever) {
            cmd += " NOTIFY=NEVER";
        } else if (r.notify) {
            std::string n;
            if (r.notify & kNotifySuccess) n += "SUCCESS,";
            if (r.notify & kNotifyFailure) n += "FAILURE,";
            if (r.notify & kNotifyDelay) n += "DELAY,";
            n.pop_back();
            cmd += " NOTIFY=" + n;
        }
        size_t semi = r.orcpt.find(';');
        if (semi != std::string::npos && semi > 0)
            cmd +=
                " ORCPT=" + r.orcpt.substr(0, semi) + ";" + xtext_encode(r.orcpt.substr(semi + 1));
    }
    return cmd + "\r\n";
}

void Session::start(const Transaction& t) {
    if (state_ != State::Ready) return;
    t_ = t;
    size_t n = t.recipients.size();
    answered_.assign(n, false);
    accepted_.assign(n, false);
    mail_ok_ = false;
    data_sent_ = false;
    body_pending_ = false;
    data_abort_ = false;
    bdat_header_sent_ = false;
    end_sent_ = false;
    use_bdat_ = ext_.chunking;
    if (n == 0) {
        t_.reset();
        out_.push_back(TransactionDone{});
        out_.push_back(Ready{});
        return;
    }
    if (t.smtputf8 && !ext_.smtputf8) {
        fail_open(Verdict::Failed,
                  "550 5.6.7 SMTPUTF8 is required, but was not offered by the host", "5.6.7");
        t_.reset();
        out_.push_back(TransactionDone{});
        out_.push_back(Ready{});
        return;
    }
    if (ext_.size_limit > 0 && t.size > ext_.size_limit) {
        fail_open(Verdict::Failed,
                  "552 5.3.4 message size " + std::to_string(t.size) + " exceeds the size limit " +
                      std::to_string(ext_.size_limit) + " of the host",
                  "5.3.4");
        t_.reset();
        out_.push_back(TransactionDone{});
        out_.push_back(Ready{});
        return;
    }
    state_ = State::Transaction;
    send(mail_command(), Cmd::Mail);
    if (ext_.pipelining) {
        // RFC 2920: MAIL, every RCPT and DATA in one go (not BDAT: its
        // message bytes follow only once a recipient was accepted).
        for (size_t i = 0; i < n; ++i) send(rcpt_command(i), Cmd::Rcpt, i);
        if (!use_bdat_) {
            data_sent_ = true;
            send("DATA\r\n", Cmd::Data);
        }
    }
}

void Session::on_mail(const Reply& r) {
    if (r.klass() == 2) {
        mail_ok_ = true;
        if (!ext_.pipelining) send(rcpt_command(0), Cmd::Rcpt, 0);
        return;
    }
    if (r.klass() != 4 && r.klass() != 5) return protocol_error("unexpected reply to MAIL FROM");
    // A 4xx to MAIL: the next MX may take the message (Postfix does the
    // same); 421 says the whole host is going away.
    if (r.klass() == 4) return host_failed(reply_text(r, Cmd::Mail), false, r.code != 421);
    fail_open(r.klass() == 4 ? Verdict::Deferred : Verdict::Failed, reply_text(r, Cmd::Mail),
              r.dsn());
    // Pipelined RCPT and DATA replies are still to come and are read
    // (and ignored) before the session is used again.
    if (expect_head_ >= expect_.size()) finish_transaction(false);
}

void Session::on_rcpt(size_t index, const Reply& r) {
    size_t n = t_ ? t_->recipients.size() : 0;
    if (index >= n) return protocol_error("reply for a recipient we did not send");
    if (r.klass() != 2 && r.klass() != 4 && r.klass() != 5)
        return protocol_error("unexpected reply to RCPT TO");
    // 421: the server is closing the session; nothing was delivered, the
    // recipients without a result go to the next host. Any other 4xx
    // defers only this recipient.
    if (r.code == 421 && mail_ok_) return host_failed(reply_text(r, Cmd::Rcpt));
    if (mail_ok_) {
        if (r.klass() == 2)
            accepted_[index] = true;
        else
            result(index, r.klass() == 4 ? Verdict::Deferred : Verdict::Failed,
                   reply_text(r, Cmd::Rcpt), r.dsn());
    }
    bool last = index + 1 == n;
    if (!ext_.pipelining) {
        if (!last) return send(rcpt_command(index + 1), Cmd::Rcpt, index + 1);
        return after_rcpts();
    }
    if (!mail_ok_) {
        if (expect_head_ >= expect_.size()) finish_transaction(false);
        return;
    }
    if (last && use_bdat_) after_rcpts();
}

void Session::after_rcpts() {
    if (!any_result_positive()) return finish_transaction(false);
    if (use_bdat_) {
        data_sent_ = true;
        body_pending_ = true;
        body_ = BodyWriter(t_->text, false);
        state_ = State::Body;
        out_.push_back(SendBody{});
        return;
    }
    data_sent_ = true;
    send("DATA\r\n", Cmd::Data);
}

void Session::on_data(const Reply& r) {
    if (r.code == 354) {
        if (!mail_ok_ || !any_result_positive()) {
            // RFC 2920 3.1: the pipelined DATA was accepted with nobody to
            // deliver to; end it at once with an empty message.
            data_abort_ = true;
            send(".\r\n", Cmd::DataEnd);
            return;
        }
        body_pending_ = true;
        body_ = BodyWriter(t_->text, true);
        state_ = State::Body;
        out_.push_back(SendBody{});
        return;
    }
    if (r.klass() != 4 && r.klass() != 5) return protocol_error("unexpected reply to DATA");
    if (r.code == 421 && mail_ok_ && any_result_positive())
        return host_failed(reply_text(r, Cmd::Data));
    if (mail_ok_) {
        Verdict v = r.klass() == 4 ? Verdict::Deferred : Verdict::Failed;
        for (size_t i = 0; i < accepted_.size(); ++i)
            if (accepted_[i]) result(i, v, reply_text(r, Cmd::Data), r.dsn());
    }
    finish_transaction(false);
}

std::string Session::next_body(size_t max) {
    if (state_ != State::Body || !t_) return {};
    std::string out;
    if (use_bdat_ && !bdat_header_sent_) {
        bdat_header_sent_ = true;
        out = "BDAT " + std::to_string(BodyWriter::normalized_size(t_->text)) + " LAST\r\n";
    }
    out += body_.next(max);
    if (body_.done()) {
        body_pending_ = false;
        end_sent_ = true;
        state_ = State::Transaction;
        expect_.push_back({use_bdat_ ? Cmd::Bdat : Cmd::DataEnd, 0});
    }
    return out;
}

void Session::on_data_end(const Reply& r) {
    if (data_abort_) return finish_transaction(false);
    if (r.klass() != 2 && r.klass() != 4 && r.klass() != 5)
        return protocol_error("unexpected reply to the end of the message");
    Verdict v = r.klass() == 2   ? Verdict::Sent
                : r.klass() == 4 ? Verdict::Deferred
                                 : Verdict::Failed;
    for (size_t i = 0; i < accepted_.size(); ++i)
        if (accepted_[i])
            result(i, v, reply_text(r, use_bdat_ ? Cmd::Bdat : Cmd::DataEnd), r.dsn());
    finish_transaction(r.klass() == 2);
}

void Session::finish_transaction(bool clean) {
    fail_open(Verdict::Deferred, "451 4.3.0 no result from the host", "4.3.0");
    t_.reset();
    out_.push_back(TransactionDone{});
    if (clean) {
        state_ = State::Ready;
        out_.push_back(Ready{});
        return;
    }
    state_ = State::Rset;
    send("RSET\r\n", Cmd::Rset);
}

void Session::on_rset(const Reply& r) {
    if (r.klass() != 2) {
        out_.push_back(Send{"QUIT\r\n"});
        close();
        return;
    }
    state_ = State::Ready;
    out_.push_back(Ready{});
}

void Session::quit() {
    if (state_ != State::Ready) return;
    state_ = State::Quit;
    send("QUIT\r\n", Cmd::Quit);
}

}  // namespace pbx::smtp::client
