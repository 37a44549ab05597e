// The client side of SMTP (RFC 5321) for remote-delivery: one pure state
// machine per connection. Server replies in, commands and actions out; it
// never touches a socket, a clock, a file or DNS.
//
// How the glue drives it:
//   Session s(settings);                       // after the TCP connect
//   on readable:   s.feed(bytes)               (takes every byte)
//   after every call: for (auto& a : s.take_actions()) handle(a);
//     Send             write the bytes, in order
//     StartTls         write pending bytes, run the client handshake, then
//                      s.tls_done(outcome)
//     SendBody         stream the message: write s.next_body(n) as the
//                      output drains, until it returns ""
//     Ready            the session is idle and clean: s.start(transaction)
//                      or s.quit()
//     RcptDone         one recipient's result (any order)
//     TransactionDone  every recipient of the transaction has a result
//     HostFailed       nothing was decided on this host: the recipients of
//                      the transaction (if any) have no result; try the next
//                      host (an MX, an address). As Postfix: a 4xx or 5xx
//                      greeting or EHLO, a 4xx to MAIL FROM, a 421 to RCPT
//                      or DATA (the server is closing); a per-recipient 4xx
//                      only defers that recipient.
//     Close            close the connection (after writing pending bytes)
//   timers: phase() says which RFC 5321 4.5.3.2 timeout applies; on expiry,
//   s.timed_out(); when the peer closes or the socket fails, s.lost(why).
//
// Policy that lives here: HELO when EHLO is refused; STARTTLS by the TLS
// level; AUTH PLAIN/LOGIN only over TLS; MAIL FROM parameters (SIZE, BODY,
// SMTPUTF8, RET, ENVID) only when the server offers their extension; RCPT
// NOTIFY/ORCPT only with DSN; PIPELINING (MAIL, RCPTs and DATA in one
// write) and CHUNKING (BDAT) when offered; dot-stuffing and CRLF line ends;
// RSET before reusing a session after an unfinished transaction.
//
// Hostile or broken servers: a reply line over the limit, a bad code, a
// continuation line with another code, too many lines, or a reply nobody
// asked for ends the session with a temporary error (4.5.0) naming the
// problem; nothing a server sends makes us deliver twice or lose a result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/smtp/envelope.hpp"

namespace pbx::smtp::client {

// ---- replies ------------------------------------------------------------

struct ReplyLimits {
    size_t max_line = 2048;  // one reply line, CRLF included (RFC 5321 asks 512)
    size_t max_lines = 100;  // lines of one multi-line reply (EHLO)
};

struct Reply {
    int code = 0;                    // 200..599
    std::vector<std::string> lines;  // the text after "NNN-" / "NNN "

    int klass() const { return code / 100; }
    // The RFC 3463 code at the start of the first line when its class
    // matches the reply's ("5.1.1"), else "".
    std::string enhanced() const;
    // enhanced(), or "X.0.0" from the reply code.
    std::string dsn() const;
    // "550 5.1.1 first line second line": one line, printable ASCII only
    // (anything else becomes '?'), at most 512 bytes.
    std::string one_line() const;
};

// Assembles replies from the byte stream. A line ends with LF (CR before it
// is dropped). Errors are final: the stream cannot be trusted afterwards.
class ReplyReader {
  public:
    explicit ReplyReader(ReplyLimits limits = {}) : limits_(limits) {}

    enum class Status { NeedMore, Reply, Error };
    struct Step {
        Status status = Status::NeedMore;
        size_t consumed = 0;  // bytes of the input used (always all but what follows a reply)
        Reply reply;          // for Reply
        std::string error;    // for Error
    };
    // Consumes input up to the end of one reply (or all of it).
    Step next(std::string_view input);

  private:
    std::optional<std::string> take_line(std::string_view line);
    ReplyLimits limits_;
    std::string partial_;  // a line without its LF yet
    Reply building_;
    bool in_reply_ = false;
    bool failed_ = false;
};

// ---- what the session needs -----------------------------------------------

enum class TlsLevel { None, May, Encrypt, Verify };
std::string_view to_string(TlsLevel l);
std::optional<TlsLevel> parse_tls_level(std::string_view s);

struct Settings {
    std::string helo_name = "localhost";  // our name for EHLO/HELO
    TlsLevel tls = TlsLevel::May;
    bool tls_possible = true;  // the glue has a client TLS context
    // AUTH to a smart host; only ever sent over TLS.
    std::optional<std::pair<std::string, std::string>> credentials;  // user, password
    ReplyLimits limits;
};

struct Recipient {
    std::string address;  // without <>
    uint8_t notify = 0;   // NotifyFlags; 0: not given
    std::string orcpt;    // "rfc822;user@example.org" (decoded) or ""
};

struct Transaction {
    std::string sender;  // "" = null sender
    std::vector<Recipient> recipients;
    uint64_t size = 0;
    BodyType body = BodyType::SevenBit;
    bool smtputf8 = false;
    DsnRet ret = DsnRet::Unspecified;
    std::string envid;      // decoded; "" = none
    std::string_view text;  // the message; must stay valid until TransactionDone
};

struct TlsOutcome {
    bool ok = false;        // the handshake completed
    bool verified = false;  // chain and name verified
    std::string detail;     // handshake error, or why verification failed
};

enum class Verdict { Sent, Deferred, Failed };
std::string_view to_string(Verdict v);

// ---- outputs --------------------------------------------------------------

struct Send {
    std::string bytes;
};
struct StartTls {};
struct SendBody {};
struct Ready {};
struct RcptDone {
    size_t index = 0;  // into Transaction::recipients
    Verdict verdict = Verdict::Deferred;
    std::string reply;  // "250 2.0.0 Ok: queued as X", "550 5.1.1 ... (in reply to RCPT TO)"
    std::string dsn;    // "2.0.0", "5.1.1"
};
struct TransactionDone {};
struct HostFailed {
    std::string reason;  // "421 4.3.2 busy (in reply to the greeting)", "4.4.2 lost ..."
    // The TLS handshake failed at level `may`: the same host may be tried
    // again in plaintext.
    bool retry_without_tls = false;
    // The host works but would not take this message now (a 4xx other than
    // 421 to MAIL FROM): the next host may, and other messages for the
    // destination need not wait.
    bool message_only = false;
};
struct Close {};

using Action =
    std::variant<Send, StartTls, SendBody, Ready, RcptDone, TransactionDone, HostFailed, Close>;

// RFC 5321 4.5.3.2: which timeout applies while waiting.
enum class Phase {
    Greeting,   // 220: 5 min
    Command,    // EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET: 5 min
    DataInit,   // DATA's 354: 2 min
    DataBlock,  // writing the message: 3 min without progress
    DataDone,   // the reply after "." or the last BDAT: 10 min
    Idle,       // Ready, nothing outstanding (the glue's reuse timer)
    Closed,
};

struct Extensions {
    bool esmtp = false;
    bool pipelining = false;
    bool starttls = false;
    bool eightbitmime = false;
    bool smtputf8 = false;
    bool dsn = false;
    bool chunking = false;
    bool size = false;
    uint64_t size_limit = 0;  // 0: none announced
    bool auth_plain = false;
    bool auth_login = false;
};
// Parses the lines of a 250 EHLO reply (the first is the greeting line).
Extensions parse_ehlo(const Reply& reply);

// The body with CRLF line ends and, for DATA, dot-stuffing and the final
// ".\r\n"; produced in pieces so that a big message is never copied whole.
class BodyWriter {
  public:
    BodyWriter() = default;
    BodyWriter(std::string_view text, bool dot_stuff) : text_(text), stuff_(dot_stuff) {}
    // Up to about `max` bytes of output; "" when everything was produced.
    std::string next(size_t max);
    bool done() const { return finished_; }
    // Bytes next() will produce in all, for BDAT (without dot-stuffing).
    static uint64_t normalized_size(std::string_view text);

  private:
    std::string_view text_;
    size_t pos_ = 0;
    bool stuff_ = true;
    bool line_start_ = true;
    bool prev_cr_ = false;
    bool finished_ = false;
};

class Session {
  public:
    explicit Session(Settings settings);

    void feed(std::string_view bytes);
    void tls_done(const TlsOutcome& outcome);
    void lost(std::string_view why);  // the peer closed, or a read/write failed
    void timed_out();

    // Only after Ready: runs one transaction.
    void start(const Transaction& t);
    // Only after Ready: QUIT, then Close.
    void quit();

    std::string next_body(size_t max);

    std::vector<Action> take_actions();
    Phase phase() const;

    bool ready() const { return state_ == State::Ready; }
    bool tls_active() const { return tls_active_; }
    bool authenticated() const { return authenticated_; }
    const Extensions& extensions() const { return ext_; }
    // The command whose reply we wait for ("RCPT TO"), for messages.
    std::string_view waiting_for() const;

  private:
    enum class State {
        Greeting,
        Ehlo,
        Helo,
        StartTls,
        Handshake,
        Auth,
        Ready,
        Transaction,
        Body,
        Rset,
        Quit,
        Closed,
    };
    enum class Cmd {
        Greeting,
        Ehlo,
        Helo,
        StartTls,
        AuthPlain,
        AuthLogin,
        AuthUser,
        AuthPass,
        Mail,
        Rcpt,
        Data,
        DataEnd,
        Bdat,
        Rset,
        Quit
    };
    struct Expect {
        Cmd cmd;
        size_t index = 0;  // Rcpt
    };

    void on_reply(const Reply& r);
    void on_greeting(const Reply& r);
    void on_ehlo(const Reply& r, bool helo);
    void after_hello();
    void on_starttls(const Reply& r);
    void start_auth();
    void on_auth(Cmd cmd, const Reply& r);
    void on_mail(const Reply& r);
    void on_rcpt(size_t index, const Reply& r);
    void after_rcpts();
    void on_data(const Reply& r);
    void on_data_end(const Reply& r);
    void on_rset(const Reply& r);

    void send(std::string bytes, Cmd cmd, size_t index = 0);
    void host_failed(std::string reason, bool retry_without_tls = false, bool message_only = false);
    void protocol_error(std::string_view what);
    void fail_open(Verdict v, const std::string& reply, const std::string& dsn);
    void finish_transaction(bool clean);
    void result(size_t index, Verdict v, std::string reply, std::string dsn);
    void close();
    bool any_result_positive() const;
    static const char* cmd_name(Cmd c);
    std::string reply_text(const Reply& r, Cmd c) const;
    std::string mail_command() const;
    std::string rcpt_command(size_t i) const;

    Settings settings_;
    ReplyReader reader_;
    State state_ = State::Greeting;
    std::vector<Expect> expect_;  // replies we wait for, oldest first
    size_t expect_head_ = 0;
    std::vector<Action> out_;
    Extensions ext_;
    bool tls_active_ = false;
    bool authenticated_ = false;
    bool starttls_refused_ = false;
    std::string starttls_reply_;

    // The current transaction.
    std::optional<Transaction> t_;
    std::vector<bool> answered_;
    std::vector<bool> accepted_;  // RCPT got 2xx, waiting for the data reply
    bool mail_ok_ = false;
    bool data_sent_ = false;     // DATA or BDAT issued
    bool body_pending_ = false;  // SendBody given, the body not finished
    bool end_sent_ = false;      // the end of the message went out
    bool data_abort_ = false;    // "." sent after a 354 with nobody accepted
    bool bdat_header_sent_ = false;
    bool use_bdat_ = false;
    BodyWriter body_;
};

}  // namespace pbx::smtp::client
