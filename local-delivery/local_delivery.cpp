#include "local-delivery/local_delivery.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>
#include <utility>

#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/delivery_msgs.hpp"
#include "common/log.hpp"
#include "common/privsep/privsep.hpp"

namespace pbx::local {
namespace dmsgs = ipc::delivery;
namespace amsgs = ipc::auth;

// A queue-manager connection. Requests hold a weak reference: a client that
// goes away loses its answers (the queue-manager then defers the recipients).
struct LocalDelivery::Client {
    std::unique_ptr<ipc::Connection> conn;
    ipc::PeerInfo peer;
    std::list<std::shared_ptr<Client>>::iterator self;
};

struct LocalDelivery::Request {
    std::weak_ptr<Client> client;
    uint64_t id = 0;
    std::string queue_id;
    std::string sender;
    std::shared_ptr<UniqueFd> message;  // shared by the children of this request
    uint64_t arrival = 0;
    std::vector<std::string> rcpts;
    size_t open = 0;  // recipients without a result yet
    // Per recipient, when it expands to several mailboxes: the outstanding
    // writes and the worst outcome so far.
    std::vector<size_t> parts;
    std::vector<std::optional<Outcome>> worst;
};

struct LocalDelivery::Task {
    std::shared_ptr<Request> request;
    size_t index = 0;
    std::string user;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string mailbox;
    bool maildir = true;
    pid_t pid = -1;
    UniqueFd pipe;
    EventPtr ev;
    std::string output;
    LocalDelivery* owner = nullptr;
};

namespace {

constexpr size_t kLogValue = 80;

std::string esc(std::string_view v) {
    return ipc::escape_value(v, kLogValue);
}

int severity(Verdict v) {
    return v == Verdict::Failed ? 2 : v == Verdict::Deferred ? 1 : 0;
}

// Closes every fd from 3 up except `a` and `b`.
void close_other_fds(int a, int b) {
    if (a > b) std::swap(a, b);
    auto range = [](int lo, int hi) {
        if (lo <= hi) (void)close_range(static_cast<unsigned>(lo), static_cast<unsigned>(hi), 0);
    };
    range(3, a - 1);
    range(a + 1, b - 1);
    range(b + 1, INT_MAX);
}

}  // namespace

LocalDelivery::LocalDelivery() = default;
LocalDelivery::~LocalDelivery() = default;

Status LocalDelivery::pre_drop(ServiceContext& ctx) {
    auto peers = ipc::PeerTable::from_system();
    if (!peers) return Err{peers.error()};
    peers_.emplace(std::move(peers).value());
    // The socket is made while we are still fully root; the peer table, not
    // the mode, decides who may talk to us.
    auto fd = ipc::listen_unix(ctx.runtime_path(ipc::kLocalSocket), 0666);
    if (!fd) return Err{fd.error()};
    listen_fd_ = std::move(fd).value();
    return {};
}

Status LocalDelivery::post_drop(ServiceContext& ctx) {
    base_ = ctx.base.get();
    auth_path_ = ctx.runtime_path(ipc::kAuthSocket);
    host_ = ctx.config.str("myhostname");
    if (host_.empty()) {
        char buf[256] = {};
        if (gethostname(buf, sizeof buf - 1) == 0) host_ = buf;
        if (host_.empty()) host_ = "localhost";
    }
    int64_t conc = ctx.config.integer("local_delivery_concurrency");
    limits_.concurrency = conc < 1 ? 1 : static_cast<size_t>(conc);
    server_ = std::make_unique<ipc::Server>(
        base_, std::move(listen_fd_), ipc::Channel::Local, std::move(*peers_),
        [this](UniqueFd client, const ipc::PeerInfo& who) { accept(std::move(client), who); });
    log::info("listening on ", ctx.runtime_path(ipc::kLocalSocket), ", ", limits_.concurrency,
              " deliveries at once");
    return {};
}

void LocalDelivery::on_stop(ServiceContext&) {
    // Deliveries under way finish (a child is never killed in the middle of
    // a write); nothing new starts. Unanswered recipients stay queued.
    server_.reset();
    waiting_.clear();
    if (running_.empty()) event_base_loopexit(base_, nullptr);
}

void LocalDelivery::accept(UniqueFd fd, const ipc::PeerInfo& peer) {
    if (clients_.size() >= limits_.max_clients) {
        log::warn("refusing a connection from ", ipc::to_string(peer.program), " (uid ", peer.uid,
                  "): too many clients");
        return;
    }
    auto c = std::make_shared<Client>();
    c->peer = peer;
    clients_.push_front(c);
    c->self = clients_.begin();
    Client* raw = c.get();
    c->conn = std::make_unique<ipc::Connection>(
        base_, std::move(fd), dmsgs::kProtocol,
        [this, raw](ipc::Message&& m) { on_deliver(*raw->self, std::move(m)); },
        [this, raw](const ipc::IpcError& e) {
            if (e.code != ipc::IpcErrc::Eof && e.code != ipc::IpcErrc::Done)
                log::warn("client ", ipc::to_string(raw->peer.program), " (uid ", raw->peer.uid,
                          "): ", e.text);
            clients_.erase(raw->self);  // destroys the Connection: allowed here
        });
}

void LocalDelivery::on_deliver(const std::shared_ptr<Client>& c, ipc::Message&& m) {
    if (m.name() != "deliver") {
        log::warn("client ", ipc::to_string(c->peer.program), " sent a '", m.name(),
                  "', which is not a request; closing");
        clients_.erase(c->self);
        return;
    }
    auto r = std::make_shared<Request>();
    r->client = c;
    r->id = *m.get_u64("id");
    r->queue_id = std::string(*m.get_str("queue_id"));
    r->sender = std::string(*m.get_str("sender"));
    r->arrival = *m.get_u64("arrival");
    r->message = std::make_shared<UniqueFd>(m.take_fd("message"));
    for (auto a : m.get_all("rcpt")) r->rcpts.emplace_back(a);
    size_t n = r->rcpts.size();
    r->open = n;
    r->parts.assign(n, 0);
    r->worst.assign(n, std::nullopt);
    ++requests_;
    bool same = m.get_all("rcpt_orcpt").size() == n && m.get_all_u64("rcpt_notify").size() == n;
    if (!same || n == 0 || n > limits_.max_recipients || requests_ > limits_.max_requests) {
        Outcome o{Verdict::Deferred, "4.3.0",
                  !same ? "recipient lists differ in length" : "request refused (limits)"};
        log::warn(esc(r->queue_id), ": ", o.text);
        if (n == 0) {
            --requests_;
            auto done = ipc::Message::named(dmsgs::kProtocol, "done");
            done.set_u64("id", r->id);
            (void)c->conn->send(std::move(done));
            return;
        }
        for (size_t i = 0; i < n; ++i) finish_rcpt(r, i, o);
        return;
    }
    for (size_t i = 0; i < n; ++i) resolve_rcpt(r, i);
}

bool LocalDelivery::auth_connect() {
    if (auth_ && auth_->is_open()) return true;
    auto fd = ipc::connect_unix(auth_path_);
    if (!fd) {
        log::warn("cannot reach authd: ", fd.error().message);
        return false;
    }
    auth_ = std::make_unique<ipc::Connection>(
        base_, std::move(fd).value(), amsgs::kProtocol,
        [this](ipc::Message&& m) {
            auto it = resolving_.find(m.get_u64("id").value_or(0));
            if (m.name() != "resolve_result" || it == resolving_.end()) {
                log::warn("authd sent an unexpected '", m.name(), "'");
                return;
            }
            PendingResolve p = std::move(it->second);
            resolving_.erase(it);
            on_resolved(p.request, p.index, &m);
        },
        [this](const ipc::IpcError& e) {
            log::warn("connection to authd lost: ", e.text);
            auth_closed();
        });
    return true;
}

void LocalDelivery::auth_closed() {
    // Every question in flight is answered "try again later".
    auto pending = std::move(resolving_);
    resolving_.clear();
    if (auth_) {
        // Destroying the Connection from its own callback is allowed.
        auth_.reset();
    }
    for (auto& [id, p] : pending) on_resolved(p.request, p.index, nullptr);
}

void LocalDelivery::resolve_rcpt(const std::shared_ptr<Request>& r, size_t index) {
    if (!auth_connect()) return on_resolved(r, index, nullptr);
    uint64_t id = next_auth_id_++;
    auto q = ipc::Message::named(amsgs::kProtocol, "resolve");
    q.set_u64("id", id).set_str("address", r->rcpts[index]);
    resolving_[id] = PendingResolve{r, index};
    if (auto s = auth_->send(std::move(q)); !s) {
        resolving_.erase(id);
        log::error("cannot encode a resolve request: ", s.error().message);
        on_resolved(r, index, nullptr);
    }
}

void LocalDelivery::on_resolved(const std::shared_ptr<Request>& r, size_t index,
                                const ipc::Message* reply) {
    if (!reply) return finish_rcpt(r, index, {Verdict::Deferred, "4.3.0", "authd unavailable"});
    std::string_view status = *reply->get_str("status");
    std::string reason(reply->get_str("reason").value_or(""));
    if (status == "unknown")
        return finish_rcpt(r, index, {Verdict::Failed, "5.1.1", "user unknown"});
    if (status == "loop")
        return finish_rcpt(r, index, {Verdict::Failed, "5.4.6", "mail loop (" + reason + ")"});
    if (status == "unsupported")
        return finish_rcpt(r, index, {Verdict::Failed, "5.3.0", "cannot deliver: " + reason});
    if (status != "found")
        return finish_rcpt(r, index, {Verdict::Deferred, "4.3.0", "user lookup failed " + reason});
    auto users = reply->get_all("user");
    auto uids = reply->get_all_u64("uid");
    auto gids = reply->get_all_u64("gid");
    auto boxes = reply->get_all("mailbox");
    auto formats = reply->get_all("format");
    size_t n = users.size();
    if (n == 0 || uids.size() != n || gids.size() != n || boxes.size() != n || formats.size() != n)
        return finish_rcpt(r, index, {Verdict::Deferred, "4.3.0", "malformed answer from authd"});
    r->parts[index] = n;
    for (size_t i = 0; i < n; ++i) {
        auto t = std::make_unique<Task>();
        t->request = r;
        t->index = index;
        t->user = std::string(users[i]);
        t->uid = static_cast<uid_t>(uids[i]);
        t->gid = static_cast<gid_t>(gids[i]);
        t->mailbox = std::string(boxes[i]);
        t->maildir = formats[i] == "maildir";
        t->owner = this;
        if (t->uid == 0 || t->gid == 0 || uids[i] > 0xfffffffe || gids[i] > 0xfffffffe) {
            log::error(esc(r->queue_id), ": refusing to deliver to ", esc(t->user), " as uid ",
                       uids[i], " gid ", gids[i]);
            finish_rcpt(r, index, {Verdict::Failed, "5.3.0", "refusing to deliver as root"});
            continue;
        }
        waiting_.push_back(std::move(t));
    }
    start_tasks();
}

void LocalDelivery::finish_rcpt(const std::shared_ptr<Request>& r, size_t index, const Outcome& o) {
    // A recipient with several mailboxes is answered once all are done; the
    // worst outcome wins (one failed write must not be reported as sent).
    if (!r->worst[index] || severity(o.verdict) > severity(r->worst[index]->verdict))
        r->worst[index] = o;
    if (r->parts[index] > 1) {
        --r->parts[index];
        return;
    }
    r->parts[index] = 0;
    const Outcome& final = *r->worst[index];
    time_t now = std::time(nullptr);
    long delay = r->arrival && now >= static_cast<time_t>(r->arrival)
                     ? static_cast<long>(now - static_cast<time_t>(r->arrival))
                     : 0;
    log::info(esc(r->queue_id), ": to=<", esc(r->rcpts[index]), ">, relay=local, delay=", delay,
              ", dsn=", final.dsn, ", status=", to_string(final.verdict), " (", final.text, ")");
    auto c = r->client.lock();
    if (c && c->conn && c->conn->is_open()) {
        auto m = ipc::Message::named(dmsgs::kProtocol, "rcpt_result");
        m.set_u64("id", r->id)
            .set_u64("index", index)
            .set_str("status", to_string(final.verdict))
            .set_str("reply", final.reply())
            .set_str("dsn_status", final.dsn);
        (void)c->conn->send(std::move(m));
    }
    if (--r->open == 0) {
        --requests_;
        if (c && c->conn && c->conn->is_open()) {
            auto done = ipc::Message::named(dmsgs::kProtocol, "done");
            done.set_u64("id", r->id);
            (void)c->conn->send(std::move(done));
        }
    }
}

void LocalDelivery::start_tasks() {
    while (!waiting_.empty() && running_.size() < limits_.concurrency) {
        auto t = std::move(waiting_.front());
        waiting_.pop_front();
        spawn(std::move(t));
    }
}

void LocalDelivery::spawn(std::unique_ptr<Task> t) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        int e = errno;
        return finish_rcpt(t->request, t->index, outcome_for_errno(e, "pipe"));
    }
    UniqueFd rd(p[0]), wr(p[1]);
    Job job;
    job.message_fd = t->request->message->get();
    job.sender = t->request->sender;
    job.rcpt = t->request->rcpts[t->index];
    job.mailbox = t->mailbox;
    job.format_maildir = t->maildir;
    job.host = host_;
    job.counter = ++counter_;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        return finish_rcpt(t->request, t->index, outcome_for_errno(e, "fork"));
    }
    if (pid == 0) {
        // The child: become the recipient, nothing else, then write. It keeps
        // only the message and its result pipe: not the listener, not the
        // queue-manager's or authd's connections.
        (void)rd.release();  // closed below with the rest
        close_other_fds(job.message_fd, wr.get());
        privsep::DropSpec d;
        d.uid = t->uid;
        d.gid = t->gid;
        d.keep = privsep::KeepCaps::None;
        d.allow_root = false;
        Outcome o;
        if (auto s = privsep::drop(d); !s) {
            o = {Verdict::Deferred, "4.3.0", "cannot become the recipient: " + s.error().message};
        } else {
            o = deliver(job);
        }
        std::string line = encode_outcome(o);
        (void)!write(wr.get(), line.data(), line.size());
        _exit(0);
    }
    wr.reset();
    (void)fcntl(rd.get(), F_SETFL, O_NONBLOCK);
    t->pid = pid;
    t->pipe = std::move(rd);
    Task* raw = t.get();
    t->ev.reset(event_new(base_, t->pipe.get(), EV_READ | EV_PERSIST, on_pipe_cb, raw));
    running_[raw] = std::move(t);
    if (!raw->ev || event_add(raw->ev.get(), nullptr) != 0) {
        log::error("cannot watch a delivery child; waiting for it");
        on_child_done(raw);
    }
}

void LocalDelivery::on_pipe_cb(evutil_socket_t fd, short, void* arg) noexcept {
    auto* t = static_cast<Task*>(arg);
    char buf[512];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            if (t->output.size() < WorkerLimits{}.max_outcome)
                t->output.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        break;  // EOF or error: the child is gone or going
    }
    t->owner->on_child_done(t);
}

void LocalDelivery::on_child_done(Task* raw) {
    auto it = running_.find(raw);
    if (it == running_.end()) return;
    std::unique_ptr<Task> t = std::move(it->second);
    running_.erase(it);
    t->ev.reset();
    int wstatus = 0;
    while (waitpid(t->pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    std::optional<Outcome> o;
    size_t nl = t->output.find('\n');
    if (nl != std::string::npos) o = decode_outcome(std::string_view(t->output).substr(0, nl + 1));
    if (!o) {
        log::error(esc(t->request->queue_id), ": delivery child for ", esc(t->user),
                   " ended without a result (status ", wstatus, ")");
        o = Outcome{Verdict::Deferred, "4.3.0", "delivery process failed"};
    }
    finish_rcpt(t->request, t->index, *o);
    t.reset();
    start_tasks();
    if (server_ == nullptr && running_.empty() && base_) event_base_loopexit(base_, nullptr);
}

}  // namespace pbx::local
