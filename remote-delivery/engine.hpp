// The delivery engine of remote-delivery: jobs (one message's recipients at
// one domain) in, one Outcome per recipient out. It groups jobs by
// destination (the recipient domain, or the relay host), resolves the next
// hops (dns.hpp), connects, runs the SMTP client state machine
// (common/smtp/client.hpp) over a StreamConnection, and:
//
//   - tries the next address / MX host when a connection fails, times out,
//     or the server refuses the session (4xx/5xx greeting, EHLO, STARTTLS
//     required but missing ...); all of them failing → deferred, with the
//     last reason;
//   - reuses a connection for the next job of the same destination (RSET
//     when needed) and keeps it open for remote_connection_cache_time;
//   - runs at most remote_destination_concurrency connections per
//     destination and remote_delivery_concurrency in all, starting
//     destinations in turn, so one slow destination never starves others;
//   - when every host of a destination failed, the jobs that were waiting for
//     it are deferred at once with the same reason (Postfix's "delivery
//     temporarily suspended") instead of each waiting for its own timeouts.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/event/tls.hpp"
#include "common/smtp/client.hpp"
#include "remote-delivery/dns.hpp"
#include "remote-delivery/policy.hpp"

namespace pbx::remote {

struct EngineConfig {
    std::string helo_name = "localhost";
    uint16_t smtp_port = 25;
    std::optional<NextHop> relayhost;
    RelayMap relay_map;               // per recipient domain; first
    SenderRelayMap sender_relay_map;  // per envelope sender; before relayhost
    smtp::client::TlsLevel default_tls = smtp::client::TlsLevel::May;
    TlsPolicy tls_policy;
    Credentials credentials;
    size_t destination_concurrency = 20;
    size_t total_concurrency = 100;
    size_t max_addresses = 10;  // addresses tried per delivery attempt
    std::chrono::milliseconds connect_timeout{30000};
    std::chrono::milliseconds helo_timeout{300000};     // greeting, EHLO
    std::chrono::milliseconds command_timeout{300000};  // STARTTLS, AUTH, MAIL, RCPT, RSET, QUIT
    std::chrono::milliseconds data_init_timeout{120000};
    std::chrono::milliseconds data_block_timeout{180000};
    std::chrono::milliseconds data_done_timeout{600000};
    std::chrono::milliseconds reuse_time{2000};
    smtp::client::ReplyLimits reply_limits;
};

// The message, shared by the jobs of one deliver request.
struct MessageData {
    std::string queue_id;
    std::string sender;
    uint64_t size = 0;
    smtp::BodyType body = smtp::BodyType::SevenBit;
    bool smtputf8 = false;
    std::string envid;
    smtp::DsnRet ret = smtp::DsnRet::Unspecified;
    std::string_view text;  // into the mapping below
    std::shared_ptr<void> mapping;
};

struct Outcome {
    smtp::client::Verdict verdict = smtp::client::Verdict::Deferred;
    std::string reply;  // starts with the reply code: "250 2.0.0 ok (in reply to ...)"
    std::string dsn;    // "2.0.0"
    std::string relay;  // "mx.example.net[192.0.2.1]:25", "" when no host was reached
    std::string tls;    // "TLSv1.3:TLS_AES_256_GCM_SHA384:verified", "none", ""
};

struct Job {
    std::shared_ptr<const MessageData> message;
    std::string domain;  // lower case
    std::vector<smtp::client::Recipient> recipients;
    // Called once per recipient (its index in `recipients`).
    std::function<void(size_t, const Outcome&)> report;
};

class Engine {
  public:
    // `tls` may be null (no client context: STARTTLS is never tried).
    Engine(event_base* base, EngineConfig config, Resolver& resolver, const event::TlsContext* tls);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    void submit(Job job);
    // Stop: nothing new starts; idle connections say QUIT. `done` runs when
    // every connection is gone.
    void stop(std::function<void()> done);

    size_t connections() const { return total_; }
    size_t waiting_jobs() const;

  private:
    class Conn;
    struct Dest {
        std::string key;
        NextHop hop;
        std::list<Job> queue;
        size_t active = 0;  // connections, idle ones included
        std::list<Conn*> idle;
    };

    void schedule();
    void start_conn(Dest& d, Job job);
    void conn_done(Conn* c);
    void go_idle(Conn* c);
    bool take_job(Dest& d, Job& out);
    // Answers every job waiting for the destination at once.
    void fail_queue(Dest& d, smtp::client::Verdict v, const std::string& reply,
                    const std::string& dsn);
    // relayhost_map (recipient domain), then sender_relayhost_map, then
    // relayhost, then the domain's MX records.
    NextHop hop_for(const std::string& domain, const std::string& sender) const;
    smtp::client::TlsLevel tls_level(const Dest& d) const;
    void maybe_stopped();

    event_base* base_;
    EngineConfig config_;
    Resolver& resolver_;
    const event::TlsContext* tls_;
    std::map<std::string, Dest> dests_;
    std::map<Conn*, std::unique_ptr<Conn>> conns_;
    size_t total_ = 0;
    std::mt19937 rng_;
    bool stopping_ = false;
    bool scheduling_ = false;
    std::function<void()> on_stopped_;
    EventPtr reap_;  // destroys finished connections from the loop
    std::vector<std::unique_ptr<Conn>> dead_;
    static void reap_cb(evutil_socket_t, short, void* self) noexcept;
};

}  // namespace pbx::remote
