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
#include <deque>
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

    // Reply-ahead (pop3d(8), "the proxy protocol"): when the engine is at
    // rest (no output, no partial command line, not closed), offer() adds
    // one offer to the chain: the exact line the next RETR is expected as
    // ("RETR 8\r\n", the message after the chain's last one, or after the
    // last one retrieved when the chain is empty) and its exact answer,
    // when that is at most `max_answer` bytes; the message exists and is not
    // deleted, so the RETR would succeed. `skip` is how many bytes of
    // earlier offered lines come before its line. From then on feed() takes
    // the chain first: bytes that start with exactly the first offer's line
    // consume it and apply the RETR without output (someone else gave the
    // client `answer`: the login process), and the next offer is first; a
    // proper prefix of it consumes nothing (more bytes decide); any other
    // bytes end the chain and go the normal way. timed_out() and
    // shutting_down() end it too.
    struct Offer {
        std::string line, answer;
        uint64_t skip = 0;
    };
    std::optional<Offer> offer(size_t max_answer);
    size_t offers_out() const { return chain_.size(); }
    bool offer_out() const { return !chain_.empty(); }
    uint64_t offered_bytes() const { return chain_bytes_; }
    uint64_t answered_ahead() const { return answered_ahead_; }
    // Bytes consumed by taken offers, so far.
    uint64_t silent_bytes() const { return silent_bytes_; }

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
    // offer(): the chain, each line offered with the message it retrieves
    // and the size of its answer.
    struct Offered {
        std::string line;
        size_t index = 0;
        size_t answer_size = 0;
    };
    std::deque<Offered> chain_;
    uint64_t chain_bytes_ = 0;  // answer sizes in chain_
    uint64_t chain_lines_ = 0;  // line sizes in chain_
    uint64_t answered_ahead_ = 0;
    uint64_t silent_bytes_ = 0;
    void end_chain();
    std::vector<bool> deleted_;
    bool closed_ = false;
    int bad_ = 0;
};

}  // namespace pbx::pop3
