// pop3d's state machine after login: RFC 1939 TRANSACTION and UPDATE states
// (STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL) and CAPA (RFC 2449),
// over a Store. Pure: bytes in, bytes out; tested with tables, whole and
// byte by byte (tests/unit/test_pop3.cpp).
//
// Deletions only mark messages; QUIT applies them (Store::commit). A
// session that ends any other way (the client goes away, autologout, SIGTERM,
// kill -9) deletes nothing. RETR and TOP answers are produced in pieces
// (take_output), so a large message never sits in the output buffer whole;
// the engine reads no command while an answer is still being produced.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pop3d/protocol.hpp"
#include "pop3d/store.hpp"

namespace pbx::pop3 {

struct SessionLimits {
    int max_bad_commands = 20;
};

class SessionEngine {
  public:
    SessionEngine(Store& store, SessionLimits limits);

    // The reply to the login ("+OK ..."), the first thing the client reads
    // from the session (session_interface.hpp).
    void start();
    // Start failed (mailbox locked or unreadable): say why and close.
    void refuse(std::string reply_line);

    // Client bytes; returns how many were consumed. Consumes nothing while
    // output is waiting (take_output) or after the session closed.
    size_t feed(std::string_view bytes);
    bool has_output() const { return !out_.empty() || transfer_.active; }
    // Up to `max` bytes of output (at least one byte when has_output()).
    std::string take_output(size_t max);
    // QUIT seen (or a fatal limit): the glue closes after the output.
    bool closed() const { return closed_; }

    // Between commands (nothing to send, no command waiting): prepares the
    // answer of the RETR that most likely comes next, the one of the
    // message after the last one retrieved, so that it is answered without
    // reading the message then: the reading overlaps with the proxy and the
    // client handling the previous answer (bench/RESULTS.md, POP3). Returns
    // whether it did. Anything other than that RETR only costs the work
    // done here; messages over kMaxPrefetch are not prepared.
    bool prefetch();
    static constexpr uint64_t kMaxPrefetch = 1024 * 1024;

    // Reply-ahead (pop3d(8), "the proxy protocol"): when the engine is idle
    // (no output, no partial command line, not closed) and prefetch() has
    // prepared the next RETR's answer, the exact line that RETR is expected
    // as ("RETR 8\r\n") and its exact answer, when that is at most
    // `max_answer` bytes; the message exists and is not deleted, so the
    // RETR would succeed. Until the next byte is fed the engine is then
    // bound to it: if the bytes fed next start with exactly `line`, feed()
    // consumes the line and applies the RETR without output (someone else
    // gave the client `answer`: the login process); if they are a proper
    // prefix of `line`, feed() consumes nothing (more bytes decide); any
    // other bytes go the normal way. timed_out()/shutting_down() drop it.
    struct Offer {
        std::string line, answer;
    };
    std::optional<Offer> offer(size_t max_answer);
    bool offer_out() const { return offered_.has_value(); }
    uint64_t answered_ahead() const { return answered_ahead_; }

    void timed_out();      // autologout: "-ERR", close, no UPDATE
    void shutting_down();  // SIGTERM: "-ERR", close, no UPDATE

    size_t deleted_count() const;

  private:
    void line(const LineReader::Line& l);
    void command(const Command& c);
    void bad(std::string text);
    void close_with(std::string text);
    std::optional<size_t> message_arg(const std::string& arg);  // replies on error
    void send_message(size_t index, std::optional<size_t> top_lines);
    void quit();

    struct Transfer {
        bool active = false;
        std::string data;  // CRLF form, dot-stuffed, ending in ".\r\n" (stuffed())
        size_t pos = 0;
        bool terminated = false;
    };

    Store& store_;
    SessionLimits limits_;
    LineReader reader_{kMaxCommandLine};
    std::string out_;
    Transfer transfer_;
    // prefetch(): the stuffed answer of message `index`, and which message
    // the next prefetch() prepares (the last RETR's + 1).
    struct Prefetched {
        std::optional<size_t> index;
        std::string data;
    };
    Prefetched prefetched_;
    std::optional<size_t> next_retr_;
    // offer(): the line offered and the message it retrieves.
    struct Offered {
        std::string line;
        size_t index = 0;
    };
    std::optional<Offered> offered_;
    uint64_t answered_ahead_ = 0;
    std::vector<bool> deleted_;
    bool closed_ = false;
    int bad_ = 0;
};

}  // namespace pbx::pop3
