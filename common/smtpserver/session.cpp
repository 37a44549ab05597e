#include "common/smtpserver/session.hpp"

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <random>
#include <variant>

#include "common/log.hpp"
#include "common/smtp/mail_headers.hpp"
#include "common/smtp/received.hpp"
#include "common/smtpserver/server.hpp"

namespace pbx::smtpserver {

namespace {

// Bytes of a command line kept for the log (the engine enforces the
// protocol's own line limit; this only bounds what we remember).
constexpr size_t kLogLineMax = 1024;
// Client input handed to the engine per call.
constexpr size_t kFeedMax = 64 * 1024;
// Replies the client has not read yet: stop parsing its commands above this.
constexpr size_t kOutputHighWater = 256 * 1024;
// Message bytes the queue-manager has not read yet: stop reading the client
// above the high mark, go on below the low one.
constexpr size_t kEnqueueHighWater = 1024 * 1024;
constexpr size_t kEnqueueLowWater = 256 * 1024;
constexpr timeval kBacklogPoll{0, 10 * 1000};

timeval to_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

// The argument of a command line ("EHLO client.example" → "client.example"),
// printable, for the log.
std::string argument(std::string_view line) {
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return {};
    std::string out;
    for (char c : line.substr(sp + 1)) {
        if (c == '\r' || c == '\n') break;
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u >= 0x7f ? '?' : c);
    }
    return out;
}

}  // namespace

Session::Session(Server& server, uint64_t id, const event::PeerAddress& peer,
                 event::ConnectionSlot slot)
    : server_(server), id_(id), peer_(peer), slot_(std::move(slot)) {
    greet_timer_.reset(evtimer_new(server_.base(), greet_cb, this));
    backlog_timer_.reset(evtimer_new(server_.base(), backlog_cb, this));
}

Session::~Session() {
    forget_requests();
}

void Session::forget_requests() {
    if (lookup_id_) server_.auth().cancel(lookup_id_);
    lookup_id_ = 0;
    for (uint64_t id : requests_) server_.auth().cancel(id);
    requests_.clear();
}

bool Session::submission() const {
    return server_.settings().role == Role::Submission;
}

std::string Session::client() const {
    return "unknown[" + peer_.ip + "]";
}

bool Session::start(UniqueFd fd, bool implicit_tls) {
    auto c = event::StreamConnection::create(server_.base(), std::move(fd), *this);
    if (!c) {
        log::warn("cannot set up a connection from ", client(), ": ", c.error().message);
        return false;
    }
    conn_ = std::move(c).value();
    conn_->set_direct_writes(true);  // one send() per batch of replies
    const Settings& st = server_.settings();
    log::info("connect from ", client());
    conn_->set_idle_timeout(st.command_timeout);
    if (implicit_tls) {
        // Port 465 (RFC 8314): the handshake first; on_tls_ready() greets.
        const event::TlsContext* tls = server_.tls();
        auto s = tls ? conn_->start_implicit_tls(*tls) : Status(fail("TLS is not available"));
        if (!s) {
            log::warn("cannot start TLS with ", client(), ": ", s.error().message);
            return false;
        }
        implicit_tls_ = true;
        return true;
    }
    if (auto s = conn_->start(); !s) {
        log::warn("cannot start a connection from ", client(), ": ", s.error().message);
        return false;
    }
    const bool trusted = st.trusted_networks.contains(std::string_view(peer_.ip));
    if (!submission() && st.pop_before_smtp.count() > 0 && !trusted) {
        // POP-before-SMTP: the answer decides the relay policy, so the
        // session begins when it is in (authd answers at once; on any
        // failure the client is simply not allowed to relay).
        uint64_t id = server_.auth().check_relay(peer_.ip, [this](bool ok, uint64_t minutes) {
            requests_.clear();
            if (ok)
                log::info("pop-before-smtp: ", client(), " may relay (POP3/IMAP login, ", minutes,
                          " minutes left)");
            begin(ok);
        });
        requests_.insert(id);
        return true;
    }
    begin(false);
    return true;
}

void Session::begin(bool pop_before_smtp) {
    if (closing_) return;
    const Settings& st = server_.settings();
    make_engine(false, {}, pop_before_smtp);
    if (st.greet_pause.count() > 0) {
        timeval tv = to_timeval(st.greet_pause);
        event_add(greet_timer_.get(), &tv);
    } else {
        greet();
    }
}

void Session::make_engine(bool tls, const smtp::TlsInfo& tls_info, bool pop_before_smtp) {
    const Settings& st = server_.settings();
    smtp::Policy policy;
    policy.local_domains = st.local_domains;
    if (submission()) {
        // MSA (RFC 6409): AUTH before MAIL, and only under TLS unless the
        // test-only switch says otherwise; senders and relays are vetted.
        policy.starttls_offered = server_.tls() != nullptr && !tls;
        policy.auth_offered = true;
        policy.auth_required = true;
        policy.tls_required = !st.auth_without_tls;
        policy.auth_requires_tls = !st.auth_without_tls;
        policy.check_sender = true;
        policy.check_relay = true;
    } else {
        policy.client_trusted = st.trusted_networks.contains(std::string_view(peer_.ip));
        policy.pop_before_smtp = pop_before_smtp;
        policy.starttls_offered = server_.tls() != nullptr;
        policy.auth_offered = false;  // port 25: AUTH belongs to submitd
    }
    smtp::SessionInfo info;
    info.client_ip = peer_.ip;
    info.hostname = st.hostname;
    info.tls_active = tls;
    if (tls) info.tls = tls_info;
    engine_.emplace(st.limits, policy, std::move(info));
}

void Session::greet() {
    if (greeted_ || closing_) return;
    greeted_ = true;
    event_del(greet_timer_.get());
    // Even without a pause: a client that talks before the greeting is not
    // speaking SMTP (or is a bot racing ahead); the engine refuses it.
    if (conn_->input_pending_now()) {
        log::info("reject: PREGREET from ", client(), ": client spoke before the greeting");
        engine_->client_spoke_early();
        handle_outputs();
        return;
    }
    conn_->write(engine_->greeting());
    update_timeout();
    pump();
}

void Session::shutdown() {
    if (closing_) return;
    if (!greeted_ || !engine_) {
        closing_ = true;
        conn_->close();
        return;
    }
    engine_->shutting_down();
    handle_outputs();
}

// ---- input -------------------------------------------------------------------

void Session::on_input(event::StreamConnection& c) noexcept {
    if (closing_) return;
    if (!engine_) {  // the TLS handshake or the POP-before-SMTP answer is awaited
        if (c.at_eof()) {
            closing_ = true;
            c.close();
        }
        return;
    }
    if (!greeted_) {
        if (c.input_size() > 0) {
            greet();  // sees the pending input: pregreet
        } else if (c.at_eof()) {
            closing_ = true;
            c.close();
        }
        return;
    }
    pump();
}

void Session::pump() {
    while (!closing_ && !tls_pending_ && engine_ && !engine_->closed()) {
        const smtp::Phase phase = engine_->phase();
        if (phase == smtp::Phase::Waiting) break;
        if (conn_->output_size() > kOutputHighWater) break;  // on_drained() resumes
        if (phase == smtp::Phase::Data && enqueue_ && enqueue_->backlog() > kEnqueueHighWater) {
            event_add(backlog_timer_.get(), &kBacklogPoll);
            break;
        }
        const size_t avail = conn_->input_size();
        if (avail == 0) break;
        std::string_view view = conn_->peek(std::min(avail, kFeedMax));
        if (view.empty()) break;
        feed(view.substr(0, next_feed_size(view, phase)));
    }
    if (!closing_ && greeted_ && conn_->at_eof() && conn_->input_size() == 0 && !tls_pending_ &&
        engine_->phase() != smtp::Phase::Waiting) {
        log::info("lost connection after ", stats_.last(), " from ", client());
        closing_ = true;
        conn_->close();
    }
}

void Session::feed(std::string_view piece) {
    const bool command = engine_->phase() == smtp::Phase::Command;
    if (command) {
        if (line_.size() < kLogLineMax) line_.append(piece.substr(0, kLogLineMax - line_.size()));
    }
    const bool line_done = command && !piece.empty() && piece.back() == '\n';
    if (line_done) {
        std::string verb = command_verb(line_);
        stats_.command(verb.empty() ? "unknown" : verb);
        awaiting_line_ = std::move(line_);
        line_.clear();
    }
    // The engine copies what it takes; drain before acting on its outputs
    // (STARTTLS replaces the input buffer).
    const size_t taken = engine_->feed(piece);
    conn_->drain(taken);
    handle_outputs();
}

// ---- engine outputs ----------------------------------------------------------

void Session::handle_outputs() {
    for (;;) {
        std::vector<smtp::Output> outs = engine_->take_output();
        if (outs.empty()) break;
        for (auto& o : outs) {
            if (auto* r = std::get_if<smtp::Reply>(&o)) {
                handle_reply(r->text);
            } else if (auto* l = std::get_if<smtp::LookupRecipient>(&o)) {
                if (submission())
                    vet_recipient(*l);
                else
                    lookup(l->address);
            } else if (auto* cs = std::get_if<smtp::CheckSender>(&o)) {
                check_sender(cs->address);
            } else if (auto* b = std::get_if<smtp::BeginMessage>(&o)) {
                begin_message(b->envelope);
            } else if (auto* m = std::get_if<smtp::MessageChunk>(&o)) {
                if (enqueue_) {
                    if (filter_) {
                        std::string out = filter_->feed(m->bytes);
                        if (!out.empty()) enqueue_->chunk(out);
                    } else {
                        enqueue_->chunk(m->bytes);
                    }
                }
            } else if (std::holds_alternative<smtp::EndMessage>(o)) {
                end_message();
            } else if (auto* a = std::get_if<smtp::AbortMessage>(&o)) {
                if (enqueue_) enqueue_->abort();
                filter_.reset();
                log::debug(client(), ": message aborted: ", a->reason);
            } else if (std::holds_alternative<smtp::StartTls>(o)) {
                const event::TlsContext* tls = server_.tls();
                auto r =
                    tls ? conn_->start_tls(*tls) : Result<size_t>(fail("TLS is not available"));
                if (!r) {
                    log::warn("STARTTLS from ", client(), " failed: ", r.error().message);
                    closing_ = true;
                    conn_->close();
                } else {
                    discarded_ += *r;
                    tls_pending_ = true;
                }
            } else if (auto* d = std::get_if<smtp::InputDiscarded>(&o)) {
                discarded_ += d->bytes;
            } else if (auto* au = std::get_if<smtp::Authenticate>(&o)) {
                if (submission()) {
                    authenticate(*au);
                } else {
                    // Not offered on port 25; the engine cannot get here, but
                    // if it did, the answer is "not now".
                    engine_->auth_result(smtp::AuthResult::temp_fail());
                }
            } else if (std::holds_alternative<smtp::Close>(o)) {
                if (!closing_) {
                    closing_ = true;
                    conn_->set_idle_timeout(server_.settings().command_timeout);
                    conn_->close_after_flush();
                }
            }
        }
    }
    update_timeout();
}

void Session::handle_reply(const std::string& text) {
    conn_->write(text);
    const int code = reply_code(text);
    if (stats_.awaiting_reply()) {
        const std::string_view verb = stats_.awaiting_verb();
        if (code > 0 && code < 400) {
            if (verb == "ehlo" || verb == "helo") {
                helo_ = argument(awaiting_line_);
                esmtp_ = verb == "ehlo";
            } else if (verb == "mail") {
                mail_from_ = logged_path(awaiting_line_);
            }
        } else if (verb == "mail" || verb == "rcpt" || verb == "data" || verb == "bdat") {
            std::string upper(verb);
            for (char& ch : upper) ch = static_cast<char>(ch - 'a' + 'A');
            std::string line = log::concat("NOQUEUE: reject: ", upper, " from ", client(), ": ",
                                           last_reply_line(text), "; from=<", mail_from_, ">");
            if (verb == "rcpt") line += log::concat(" to=<", logged_path(awaiting_line_), ">");
            line += log::concat(" proto=", esmtp_ ? "ESMTP" : "SMTP", " helo=<", helo_, ">");
            log::info(line);
        }
        stats_.reply(code);
    } else if (code == 421 || code == 554) {
        log::info(client(), ": ", last_reply_line(text));
    }
}

void Session::lookup(const smtp::Address& address) {
    lookup_address_ = address.str();
    lookup_id_ = server_.auth().lookup_rcpt(lookup_address_, [this](const RcptAnswer& a) {
        lookup_id_ = 0;
        smtp::RecipientResult result = smtp::RecipientResult::temp_fail();
        switch (a.kind) {
            case RcptAnswer::Kind::Found:
                result = smtp::RecipientResult::found(a.canonical.empty() ? lookup_address_
                                                                          : a.canonical);
                break;
            case RcptAnswer::Kind::Unknown:
                result = smtp::RecipientResult::unknown();
                break;
            case RcptAnswer::Kind::Remote:
                // The engine found the domain in `domains` and authd did not:
                // the two disagree (a reload in progress?). Try again later.
                log::warn("authd says <", lookup_address_,
                          "> is not local, but its domain is in domains; deferring");
                break;
            case RcptAnswer::Kind::TempFail:
                break;
        }
        engine_->recipient_result(result);
        handle_outputs();
        pump();
    });
}

void Session::message_done(const EnqueueResult& r) {
    switch (r.kind) {
        case EnqueueResult::Kind::Queued:
            log::info(r.text, ": client=", client());
            engine_->message_result(smtp::MessageResult::queued(r.text));
            break;
        case EnqueueResult::Kind::TempFail:
            log::warn("NOQUEUE: temporary failure for a message from ", client(),
                      r.text.empty() ? "" : ": ", r.text);
            engine_->message_result(smtp::MessageResult::temp_fail(r.text));
            break;
        case EnqueueResult::Kind::PermFail:
            log::info("NOQUEUE: message from ", client(), " refused: ", r.text);
            engine_->message_result(smtp::MessageResult::perm_fail(r.text));
            break;
    }
    handle_outputs();
    pump();
}

// ---- submission ----------------------------------------------------------------

void Session::authenticate(const smtp::Authenticate& a) {
    const smtp::sasl::Credentials& cr = a.credentials;
    // No proxy authentication: an authorization identity other than the
    // user's own fails like a wrong password (after authd's delay all the
    // same, so it tells nothing).
    const bool proxy = !cr.authzid.empty() && !mail::iequals(cr.authzid, cr.authcid);
    const std::string mech(smtp::sasl::to_string(a.mechanism));
    uint64_t id = server_.auth().verify(
        cr.authcid, proxy ? std::string() : cr.password, peer_.ip,
        [this, mech, user = cr.authcid, proxy](const VerifyAnswer& v) {
            requests_.clear();  // the only request in flight during AUTH
            if (v.kind == VerifyAnswer::Kind::Ok && !proxy) {
                log::info(client(), ": sasl_method=", mech, ", sasl_username=", v.user);
                engine_->auth_result(smtp::AuthResult::success(v.user));
            } else if (v.kind == VerifyAnswer::Kind::TempFail) {
                log::warn(client(), ": SASL ", mech, " authentication temporarily failed");
                engine_->auth_result(smtp::AuthResult::temp_fail());
            } else {
                log::warn(client(), ": SASL ", mech, " authentication failed",
                          proxy ? " (authorization identity refused)" : "");
                engine_->auth_result(smtp::AuthResult::failed());
            }
            handle_outputs();
            pump();
        });
    requests_.insert(id);
}

void Session::check_sender(const std::string& address) {
    const std::string user = engine_->auth_user();
    auto decide = [this, address, user](bool owned) {
        smtp::SenderResult r = smtp::SenderResult::accept();
        if (!owned) {
            log::info("NOQUEUE: reject: MAIL from ", client(), ": <", address,
                      ">: sender not owned by user ", user);
            r = smtp::SenderResult::refused(
                {553, "5.7.1",
                 "<" + address + ">: Sender address rejected: not owned by user " + user});
        } else if (!server_.rates().take_message(user, RateLimiter::Clock::now())) {
            log::info("NOQUEUE: reject: MAIL from ", client(), ": user ", user,
                      " over submission_max_messages_per_hour");
            r = smtp::SenderResult::refused(
                {450, "4.7.1",
                 "Error: too many messages from " + user + " in the last hour, try again later"});
        } else {
            envelope_sender_ = address;
        }
        engine_->sender_result(r);
    };
    if (address.empty()) {  // the null sender belongs to nobody in particular
        decide(true);
        return;
    }
    uint64_t id = server_.auth().owns(user, address, [this, decide](const OwnsAnswer& a) {
        requests_.clear();
        if (a.kind == OwnsAnswer::Kind::TempFail) {
            engine_->sender_result(smtp::SenderResult::temp_fail());
        } else {
            decide(a.kind == OwnsAnswer::Kind::Yes);
        }
        handle_outputs();
        pump();
    });
    requests_.insert(id);
}

void Session::vet_recipient(const smtp::LookupRecipient& l) {
    const std::string user = engine_->auth_user();
    if (!server_.rates().take_recipient(user, RateLimiter::Clock::now())) {
        log::info("NOQUEUE: reject: RCPT from ", client(), ": <", l.address.str(), ">: user ", user,
                  " over submission_max_recipients_per_hour");
        engine_->recipient_result(smtp::RecipientResult::refused(
            {450, "4.7.1",
             "Error: too many recipients from " + user + " in the last hour, try again later"}));
        return;
    }
    if (l.relay) {
        engine_->recipient_result(smtp::RecipientResult::found(l.address.str()));
        return;
    }
    lookup(l.address);
}

void Session::begin_message(const smtp::Envelope& env) {
    if (!enqueue_)
        enqueue_ = server_.take_enqueue_client(
            std::chrono::duration_cast<std::chrono::milliseconds>(kQueueCommitTimeout));
    if (!submission()) {
        enqueue_->begin(env, "smtp");
        return;
    }
    smtp::Envelope e = env;
    // The Received: line names the user only when configured (privacy).
    if (!server_.settings().received_auth) e.auth_user.clear();
    enqueue_->begin(e, "submission");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    const int offset = localtime_r(&now, &tm) ? static_cast<int>(tm.tm_gmtoff / 60) : 0;
    std::random_device rd;
    const uint64_t random = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    smtp::SubmissionFilter::Options fo;
    fo.date = smtp::rfc5322_date(now, offset);
    fo.message_id = mail::make_message_id(now, random, static_cast<int>(::getpid()),
                                          server_.settings().hostname);
    filter_.emplace(std::move(fo));
    from_pending_ = 0;
    from_refused_.clear();
    from_tempfail_ = false;
}

void Session::end_message() {
    if (!enqueue_) {  // cannot happen (BeginMessage comes first); the loop takes the reply
        engine_->message_result(smtp::MessageResult::temp_fail({}));
        return;
    }
    if (!filter_) {
        enqueue_->end([this](const EnqueueResult& r) { message_done(r); });
        return;
    }
    if (std::string rest = filter_->finish(); !rest.empty()) enqueue_->chunk(rest);
    using Problem = smtp::SubmissionFilter::Problem;
    const Problem problem = filter_->problem();
    if (problem != Problem::None) {
        enqueue_->abort();
        filter_.reset();
        std::string why = problem == Problem::HeaderTooLarge ? "Error: header section too large"
                          : problem == Problem::BadFrom      ? "Error: From: header does not parse"
                                                             : "Error: too many From: addresses";
        log::info("NOQUEUE: reject: DATA from ", client(), ": ", why);
        engine_->message_result(smtp::MessageResult::perm_fail(
            why, problem == Problem::HeaderTooLarge ? "5.6.0" : "5.7.1",
            problem == Problem::HeaderTooLarge ? 554 : 553));
        return;
    }
    const std::string user = engine_->auth_user();
    std::vector<std::string> ask;
    for (const std::string& a : filter_->from())
        if (!mail::iequals(a, envelope_sender_) || envelope_sender_.empty()) ask.push_back(a);
    from_pending_ = ask.size();
    if (ask.empty()) {
        from_checked();
        return;
    }
    for (const std::string& a : ask) {
        uint64_t id = server_.auth().owns(user, a, [this, a](const OwnsAnswer& ans) {
            --from_pending_;
            if (ans.kind == OwnsAnswer::Kind::No && from_refused_.empty()) from_refused_ = a;
            if (ans.kind == OwnsAnswer::Kind::TempFail) from_tempfail_ = true;
            if (from_pending_ == 0) {
                requests_.clear();
                from_checked();
                handle_outputs();
                pump();
            }
        });
        requests_.insert(id);
    }
}

void Session::from_checked() {
    if (!filter_) return;
    const auto added = filter_->added();
    filter_.reset();
    if (!from_refused_.empty() || from_tempfail_) {
        enqueue_->abort();
        if (!from_refused_.empty()) {
            log::info("NOQUEUE: reject: DATA from ", client(), ": From: <", from_refused_,
                      "> not owned by user ", engine_->auth_user());
            engine_->message_result(smtp::MessageResult::perm_fail(
                "<" + from_refused_ + ">: From: address rejected: not owned by user " +
                    engine_->auth_user(),
                "5.7.1", 553));
        } else {
            engine_->message_result(
                smtp::MessageResult::temp_fail("Temporary sender check failure, try again later"));
        }
        return;
    }
    for (const std::string& f : added) log::debug(client(), ": added a missing ", f, ": header");
    enqueue_->end([this](const EnqueueResult& r) { message_done(r); });
}

// ---- time and flow -----------------------------------------------------------

void Session::update_timeout() {
    if (closing_ || !conn_) return;
    const Settings& st = server_.settings();
    if (!greeted_ || tls_pending_) {
        conn_->set_idle_timeout(st.command_timeout);
        return;
    }
    switch (engine_->phase()) {
        case smtp::Phase::Command:
            conn_->set_idle_timeout(st.command_timeout);
            break;
        case smtp::Phase::Data:
            conn_->set_idle_timeout(st.data_timeout);
            break;
        case smtp::Phase::Waiting:
            // authd and the queue-manager have timeouts of their own.
            conn_->set_idle_timeout(std::chrono::milliseconds(0));
            break;
    }
}

void Session::on_timeout(event::StreamConnection& c) noexcept {
    if (closing_) return;
    log::info("timeout after ", stats_.last(), " from ", client());
    if (!greeted_ || !engine_) {
        closing_ = true;
        c.close();
        return;
    }
    engine_->timed_out();
    handle_outputs();
}

void Session::on_tls_ready(event::StreamConnection& c) noexcept {
    tls_pending_ = false;
    const event::TlsSessionInfo info = c.tls_info();
    smtp::TlsInfo ti;
    ti.version = info.version;
    ti.cipher = info.cipher;
    ti.bits = info.bits;
    log::info("Anonymous TLS connection established from ", client(), ": ", ti.describe());
    if (implicit_tls_ && !engine_) {
        make_engine(true, ti);
        greet();
        return;
    }
    if (discarded_ > 0) {
        log::warn("STARTTLS from ", client(), ": ", discarded_,
                  " bytes of plaintext pipelined after STARTTLS were discarded");
        discarded_ = 0;
    }
    // RFC 3207 4.2: everything learned before TLS is forgotten.
    helo_.clear();
    mail_from_.clear();
    esmtp_ = false;
    line_.clear();
    engine_->tls_started(ti);
    handle_outputs();
    pump();
}

void Session::on_drained(event::StreamConnection&) noexcept {
    pump();
}

void Session::greet_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<Session*>(self)->greet();
}

void Session::backlog_cb(evutil_socket_t, short, void* self) noexcept {
    auto* s = static_cast<Session*>(self);
    if (s->enqueue_ && s->enqueue_->backlog() > kEnqueueLowWater) {
        event_add(s->backlog_timer_.get(), &kBacklogPoll);
        return;
    }
    s->pump();
}

void Session::on_closed(event::StreamConnection&, const event::CloseInfo& info) noexcept {
    forget_requests();
    if (enqueue_ && enqueue_->in_transaction()) {
        enqueue_->abort();  // an answer may still come: not reusable
        enqueue_.reset();
    }
    server_.keep_enqueue_client(std::move(enqueue_));
    switch (info.reason) {
        case event::CloseReason::Closed:
            break;
        case event::CloseReason::TlsFailed:
            log::info("SSL_accept error from ", client(), ": ", info.detail);
            break;
        default:
            log::info("lost connection after ", stats_.last(), " from ", client(),
                      info.detail.empty() ? "" : ": ", info.detail);
            break;
    }
    log::info("disconnect from ", client(), " ", stats_.summary());
    server_.remove(id_);  // destroys this session: nothing may follow
}

}  // namespace pbx::smtpserver
