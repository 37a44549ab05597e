// The SMTP server protocol engine: one pure state machine for smtpd (port 25,
// MTA policy) and submitd (587/465, MSA policy: AUTH required). Bytes in,
// replies and actions out; it never touches a socket, a clock or a file.
//
// How the glue drives it:
//   Engine e(limits, policy, session);
//   write(e.greeting());                 // or e.client_spoke_early() (pregreet)
//   on readable:  if (e.wants_input()) { n = e.feed(bytes); drain n; }
//   after every call: for (auto& o : e.take_output()) handle(o);
//     Reply          write the bytes to the client, in order
//     LookupRecipient ask authd; later e.recipient_result(...) (with
//                    relay set, Policy::check_relay: a recipient elsewhere
//                    that the glue only vets, e.g. against a rate limit)
//     CheckSender    (Policy::check_sender) vet MAIL FROM; later
//                    e.sender_result(...)
//     BeginMessage   open an enqueue transaction with the envelope
//     MessageChunk   stream the bytes to the queue-manager
//     EndMessage     commit; later e.message_result(...)
//     AbortMessage   drop the enqueue transaction
//     StartTls       write pending replies, drop any plaintext still unread
//                    in the glue's own buffers, run the handshake, then
//                    e.tls_started(info) (or close on failure)
//     Authenticate   ask authd; later e.auth_result(...)
//     Close          write pending replies, then close the connection
//   timers: the idle timeout that applies is phase(); on expiry e.timed_out().
//
// While an asynchronous answer is pending the engine parses nothing; it keeps
// up to Limits::max_pending_input bytes of pipelined input and accepts no
// more (feed() returns how much it took; wants_input() turns false).
//
// Reply codes (RFC 5321) carry RFC 3463 enhanced status codes, except where
// RFC 2034 excludes them: the greeting, EHLO/HELO replies, and 3xx (354, 334).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/smtp/address.hpp"
#include "common/smtp/data_reader.hpp"
#include "common/smtp/envelope.hpp"
#include "common/smtp/line_reader.hpp"
#include "common/smtp/parser.hpp"
#include "common/smtp/relay.hpp"
#include "common/smtp/sasl.hpp"

namespace pbx::config {
class Config;
}

namespace pbx::smtp {

// Every peer-filled buffer and every count a client controls.
struct Limits {
    size_t line_limit = 512;             // smtpd_line_limit: command line, CRLF included
    size_t text_line_limit = 64 * 1024;  // smtpd_text_line_limit: message line, CRLF included
    size_t max_recipients = 1000;        // smtpd_max_recipients: per message
    uint64_t message_size_limit = 50ull * 1024 * 1024;  // message_size_limit; 0: none
    unsigned max_bad_commands = 20;        // smtpd_max_bad_commands: then 421 and close
    size_t max_pending_input = 64 * 1024;  // pipelined input kept while waiting
    size_t sasl_line_limit = 12288;        // AUTH command and SASL lines (RFC 4954 4)
    size_t chunk_size = 64 * 1024;         // MessageChunk size (the last one may be shorter)
};

// Limits from pillarbox.conf (the keys named above; the rest keep defaults).
Limits limits_from_config(const config::Config& config);

struct TlsInfo {
    std::string version;  // "TLSv1.3"
    std::string cipher;   // "TLS_AES_256_GCM_SHA384"
    int bits = 0;
    // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
    std::string describe() const;
};

struct SessionInfo {
    std::string client_ip;
    std::string client_host;  // reverse DNS, empty when unknown
    bool tls_active = false;  // implicit TLS (port 465)
    TlsInfo tls;              // when tls_active
    std::string hostname;     // ours, for the greeting and replies
};

enum class Phase {
    Command,  // waiting for a command: smtpd_command_timeout
    Data,     // inside DATA or a BDAT chunk: smtpd_data_timeout
    Waiting,  // the engine waits for the glue; no client timeout runs
};

// ---- outputs, in order -------------------------------------------------
struct Reply {
    std::string text;  // one or more lines, each ending in CRLF
};
struct LookupRecipient {
    Address address;     // domain empty: bare "postmaster"
    bool relay = false;  // not ours: vet it, do not look it up
};
struct CheckSender {
    std::string address;  // MAIL FROM as given; "" is the null sender
};
struct BeginMessage {
    Envelope envelope;
};
struct MessageChunk {
    std::string bytes;  // dot-unstuffed, CRLF line ends
};
struct EndMessage {};
struct AbortMessage {
    std::string reason;  // for the log
};
struct StartTls {};
struct InputDiscarded {
    size_t bytes = 0;  // plaintext pipelined after STARTTLS, thrown away (log it)
};
struct Authenticate {
    sasl::Mechanism mechanism;
    sasl::Credentials credentials;
};
struct Close {};

using Output =
    std::variant<Reply, LookupRecipient, BeginMessage, MessageChunk, EndMessage, AbortMessage,
                 StartTls, InputDiscarded, Authenticate, Close, CheckSender>;

// A refusal the glue decided (policy, rate limit): the reply as given.
struct PolicyRefusal {
    int code = 550;
    std::string enhanced;  // "5.7.1"
    std::string text;
};

// ---- answers from the glue --------------------------------------------
struct RecipientResult {
    enum class Kind { Found, Unknown, TempFail, Refused } kind;
    std::string canonical;  // Found: the address as authd resolved it
    PolicyRefusal refusal;  // Refused
    static RecipientResult refused(PolicyRefusal r) { return {Kind::Refused, {}, std::move(r)}; }
    static RecipientResult found(std::string canonical) {
        return {Kind::Found, std::move(canonical), {}};
    }
    static RecipientResult unknown() { return {Kind::Unknown, {}, {}}; }
    static RecipientResult temp_fail() { return {Kind::TempFail, {}, {}}; }
};

struct SenderResult {
    enum class Kind { Accept, Refused, TempFail } kind;
    PolicyRefusal refusal;  // Refused
    static SenderResult accept() { return {Kind::Accept, {}}; }
    static SenderResult refused(PolicyRefusal r) { return {Kind::Refused, std::move(r)}; }
    static SenderResult temp_fail() { return {Kind::TempFail, {}}; }
};

struct MessageResult {
    enum class Kind { Queued, TempFail, PermFail } kind;
    std::string text;      // Queued: the queue ID; otherwise the reason
    std::string enhanced;  // PermFail: the enhanced code, default 5.3.0
    int code = 554;        // PermFail: 550..559 (553 for a sender policy refusal)
    static MessageResult queued(std::string id) { return {Kind::Queued, std::move(id), {}}; }
    static MessageResult temp_fail(std::string why) { return {Kind::TempFail, std::move(why), {}}; }
    static MessageResult perm_fail(std::string why, std::string enhanced = "5.3.0",
                                   int code = 554) {
        return {Kind::PermFail, std::move(why), std::move(enhanced), code};
    }
};

struct AuthResult {
    enum class Kind { Success, Failed, TempFail } kind;
    std::string user;  // Success: the authenticated identity
    static AuthResult success(std::string user) { return {Kind::Success, std::move(user)}; }
    static AuthResult failed() { return {Kind::Failed, {}}; }
    static AuthResult temp_fail() { return {Kind::TempFail, {}}; }
};

class Engine {
  public:
    Engine(const Limits& limits, const Policy& policy, SessionInfo session);

    // "220 <hostname> ESMTP Pillarbox\r\n"
    std::string greeting() const;
    // Pregreet: the client talked before the greeting. 554 5.7.1 and Close.
    void client_spoke_early();

    // Input from the client. Returns the number of bytes taken; fewer than
    // given only while an answer is pending and the pipelining buffer is full
    // (feed the rest later). After Close everything is taken and ignored.
    size_t feed(std::string_view bytes);
    bool wants_input() const;
    std::vector<Output> take_output();

    // Answers to LookupRecipient, CheckSender, EndMessage, Authenticate and
    // StartTls. Each returns false (and does nothing) when no such answer is
    // pending.
    bool recipient_result(const RecipientResult& result);
    bool sender_result(const SenderResult& result);
    bool message_result(const MessageResult& result);
    bool auth_result(const AuthResult& result);
    // The handshake succeeded: back to the pre-EHLO state (RFC 3207 4.2),
    // knowing nothing learned before TLS.
    bool tls_started(const TlsInfo& info);

    // The glue's timer for phase() expired: 421 4.4.2 and Close.
    void timed_out();
    // The service is stopping: 421 4.3.2 and Close.
    void shutting_down();

    bool closed() const { return closed_; }
    Phase phase() const;
    bool tls_active() const { return session_.tls_active; }
    bool authenticated() const { return policy_.authenticated; }
    const std::string& auth_user() const { return auth_user_; }

  private:
    // Session states, as bits so that a command lists where it is allowed.
    enum State : uint8_t {
        kInit = 1,   // before EHLO/HELO (also right after STARTTLS)
        kReady = 2,  // after EHLO/HELO, no transaction
        kMail = 4,   // MAIL accepted, RCPTs being collected
        kBdat = 8,   // at least one BDAT chunk accepted
    };
    enum class Mode { Command, Data, BdatChunk, Sasl };
    enum class Wait { None, Recipient, Message, Auth, Tls, Sender };

    // A refused command: the reply, and whether it counts against
    // Limits::max_bad_commands (client mistakes do; policy answers such as
    // 452 too many recipients do not).
    struct Refusal {
        int code;
        std::string_view enhanced;
        std::string text;
        bool counts = true;
        bool close = false;  // the stream cannot be followed any more
    };
    struct Parsed;
    struct Command;
    static const Command* find_command(std::string_view verb);

    // engine.cpp: input, message text, replies
    void process();
    bool process_command_input();
    bool process_data_input();
    bool process_bdat_input();
    bool process_sasl_input();
    void consume(size_t n);
    std::string_view pending() const { return std::string_view(in_).substr(in_pos_); }

    void reply(int code, std::string_view enhanced, std::string_view text);
    void bad(int code, std::string_view enhanced, std::string_view text);
    void refuse(const Refusal& r);
    void close_session();
    void flush_chunks(bool all);
    void abort_message(std::string_view reason);
    void reset_transaction();
    void begin_message();
    void end_message();
    void finish_data();
    void finish_bdat_chunk();
    Refusal problem_refusal(uint8_t problems) const;
    void sasl_step(const sasl::Exchange::Step& step);

    // commands.cpp: the command table, each command's check and act
    void handle_line(std::string_view line);
    std::string_view sequence_error(std::string_view verb) const;
    Refusal argument_refusal(const ArgProblem& problem, bool sender) const;
    std::string ehlo_reply() const;
    void accept_recipient(const RcptArgs& args, std::string canonical);
    void accept_sender();

    std::optional<Refusal> check_helo(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_no_args(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_any(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_mail(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_rcpt(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_data(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_bdat(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_vrfy(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_starttls(std::string_view args, Parsed& p) const;
    std::optional<Refusal> check_auth(std::string_view args, Parsed& p) const;
    void act_ehlo(Parsed& p);
    void act_helo(Parsed& p);
    void act_mail(Parsed& p);
    void act_rcpt(Parsed& p);
    void act_data(Parsed& p);
    void act_bdat(Parsed& p);
    void act_rset(Parsed& p);
    void act_noop(Parsed& p);
    void act_quit(Parsed& p);
    void act_vrfy(Parsed& p);
    void act_expn(Parsed& p);
    void act_help(Parsed& p);
    void act_starttls(Parsed& p);
    void act_auth(Parsed& p);

    Limits limits_;
    Policy policy_;
    SessionInfo session_;

    std::string in_;
    size_t in_pos_ = 0;
    std::vector<Output> out_;

    State state_ = kInit;
    Mode mode_ = Mode::Command;
    Wait wait_ = Wait::None;
    bool closed_ = false;
    bool esmtp_ = false;
    std::string helo_;
    std::string auth_user_;
    unsigned bad_commands_ = 0;
    size_t tls_discarded_ = 0;

    LineReader lines_;
    Envelope envelope_;
    bool message_open_ = false;  // BeginMessage sent, neither End nor Abort yet
    bool aborted_ = false;       // this message was refused mid-stream
    DataReader data_{DataReader::Mode::Dot, 0, 0};
    std::string chunk_;  // message text not yet sent as a MessageChunk

    uint64_t bdat_remaining_ = 0;
    bool bdat_last_ = false;
    std::optional<Refusal> bdat_refusal_;  // BDAT refused: consume the chunk, then say so

    std::optional<RcptArgs> pending_rcpt_;
    std::optional<sasl::Exchange> sasl_;
};

}  // namespace pbx::smtp
