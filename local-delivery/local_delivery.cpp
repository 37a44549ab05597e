#include "local-delivery/local_delivery.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <utility>

#include "common/ipc/auth_msgs.hpp"
#include "common/ipc/delivery_msgs.hpp"
#include "common/log.hpp"
#include "common/privsep/privsep.hpp"
#include "local-delivery/dotforward.hpp"
#include "local-delivery/pipe.hpp"
#include "local-delivery/pool.hpp"

namespace pbx::local {
namespace dmsgs = ipc::delivery;
namespace amsgs = ipc::auth;

// A queue-manager connection. Requests hold a weak reference: a client that
// goes away loses its answers (the queue-manager then defers the recipients).
struct LocalDelivery::Request {
    std::weak_ptr<Client> client;
    uint64_t id = 0;
    std::string queue_id;
    std::string sender;
    std::shared_ptr<UniqueFd> message;  // shared by the children of this request
    uint64_t arrival = 0;
    std::string body;  // 7BIT | 8BITMIME | "" (kept when forwarding)
    bool smtputf8 = false;
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
    JobKind kind = JobKind::Mailbox;
    std::string user;  // who the child becomes (uid 0 only for Forward)
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
    std::string mailbox;
    bool maildir = true;
    bool dotforward = false;
    std::string target;                   // Pipe: the command; File: the path
    std::vector<std::string> forward_to;  // Forward
    pid_t pid = -1;
    UniqueFd pipe;
    EventPtr ev;
    std::string output;
    LocalDelivery* owner = nullptr;
    Worker* worker = nullptr;  // a mailbox write on a pooled worker
};

// A long-lived child that has dropped to (uid, gid[, extra_gid]) and takes
// that user's mailbox writes, several in flight, answered in order and
// stored in batches (pool.hpp).
struct LocalDelivery::Worker {
    uid_t uid = 0;
    gid_t gid = 0;
    gid_t extra_gid = 0;  // a mail spool group (mbox), 0 for none
    pid_t pid = -1;
    std::unique_ptr<ipc::Connection> conn;
    std::deque<Task*> busy;  // jobs sent and not yet answered, oldest first
    size_t mbox_jobs = 0;    // of them, mbox writes (never batched with others)
    size_t jobs = 0;
    EventPtr idle;
    LocalDelivery* owner = nullptr;
    std::list<std::unique_ptr<Worker>>::iterator self;
};

namespace {

constexpr size_t kLogValue = 80;
// An idle worker ends after this long; a worker ends after this many
// deliveries (as Postfix's max_idle and max_use), so that a pool sized for a
// burst does not stay, and no process lives for ever.
constexpr timeval kWorkerIdle{10, 0};
constexpr size_t kWorkerMaxJobs = 1000;
// A user's concurrent Maildir jobs all go to one of their workers (a second
// one only when kWorkerMaxBatch are in flight on it), so that they meet in
// the same batch, with one fsync of new/ per Maildir (pool.hpp); every
// virtual user shares one uid, and so one worker. The batch's file fsyncs
// run in parallel in the worker. mbox jobs may wait for a lock for a long
// time: they never queue behind others, nor others behind them (a worker to
// themselves while they run).

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

// The group of a mail spool directory like Debian's /var/mail (2775
// root:mail) when the recipient cannot create files there otherwise: the
// mbox child gets it as a supplementary group so that it can create its
// mailbox and dotlock, as Debian's setgid-mail delivery agents do. Never
// group 0; never for commands or files.
std::optional<gid_t> spool_group(const std::string& mailbox, uid_t uid) {
    size_t slash = mailbox.rfind('/');
    if (slash == std::string::npos || slash == 0) return std::nullopt;
    struct stat st {};
    if (stat(mailbox.substr(0, slash).c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return std::nullopt;
    if (st.st_uid == uid || (st.st_mode & S_IWOTH) || !(st.st_mode & S_IWGRP) || st.st_gid == 0)
        return std::nullopt;
    return st.st_gid;
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
    resolver_ = auth::ResolverSettings::from_config(ctx.config);
    enqueue_path_ = ctx.runtime_path(ipc::kEnqueueSocket);
    command_time_limit_ = std::chrono::duration_cast<std::chrono::milliseconds>(
        ctx.config.duration("command_time_limit"));
    if (command_time_limit_.count() <= 0) command_time_limit_ = std::chrono::seconds(1000);
    int64_t out_limit = static_cast<int64_t>(ctx.config.size("command_output_limit"));
    command_output_limit_ = out_limit < 1 ? 1 : static_cast<size_t>(out_limit);
    int64_t conc = ctx.config.integer("local_delivery_concurrency");
    limits_.concurrency = conc < 1 ? 1 : static_cast<size_t>(conc);
    int64_t delay = ctx.config.integer("maildir_batch_delay");
    batch_delay_ = std::chrono::milliseconds(std::clamp<int64_t>(delay, 0, 1000));
    reap_timer_.reset(evtimer_new(
        base_,
        [](evutil_socket_t, short, void* arg) noexcept {
            static_cast<LocalDelivery*>(arg)->reap_workers();
        },
        this));
    clients_.emplace(base_, dmsgs::kProtocol, limits_.max_clients,
                     [this](const std::shared_ptr<Client>& c, ipc::Message&& m) {
                         on_deliver(c, std::move(m));
                     });
    server_ = std::make_unique<ipc::Server>(base_, std::move(listen_fd_), ipc::Channel::Local,
                                            std::move(*peers_),
                                            [this](UniqueFd client, const ipc::PeerInfo& who) {
                                                clients_->accept(std::move(client), who);
                                            });
    log::info("listening on ", ctx.runtime_path(ipc::kLocalSocket), ", ", limits_.concurrency,
              " deliveries at once");
    return {};
}

void LocalDelivery::on_stop(ServiceContext&) {
    // Deliveries under way finish (a child is never killed in the middle of
    // a write); nothing new starts. Unanswered recipients stay queued.
    server_.reset();
    waiting_.clear();
    for (auto it = workers_.begin(); it != workers_.end();) {
        Worker* w = (it++)->get();
        if (w->busy.empty()) close_worker(w);
    }
    maybe_exit();
}

void LocalDelivery::maybe_exit() {
    if (server_ != nullptr || !running_.empty() || !base_) return;
    while (!workers_.empty()) close_worker(workers_.front().get());
    reap_workers();
    event_base_loopexit(base_, nullptr);
}

void LocalDelivery::on_deliver(const std::shared_ptr<Client>& c, ipc::Message&& m) {
    if (m.name() != "deliver") {
        log::warn("client ", ipc::to_string(c->peer.program), " sent a '", m.name(),
                  "', which is not a request; closing");
        clients_->drop(c);
        return;
    }
    auto r = std::make_shared<Request>();
    r->client = c;
    r->id = *m.get_u64("id");
    r->queue_id = std::string(*m.get_str("queue_id"));
    r->sender = std::string(*m.get_str("sender"));
    r->arrival = *m.get_u64("arrival");
    r->body = std::string(m.get_str("body").value_or(""));
    r->smtputf8 = m.get_u64("smtputf8").value_or(0) != 0;
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
    if (status == "refused")
        return finish_rcpt(r, index, {Verdict::Failed, "5.7.1", "refused: " + reason});
    if (status == "unsupported")
        return finish_rcpt(r, index, {Verdict::Failed, "5.3.0", "cannot deliver: " + reason});
    if (status != "found")
        return finish_rcpt(r, index, {Verdict::Deferred, "4.3.0", "user lookup failed " + reason});
    auto kinds = reply->get_all("kind");
    auto targets = reply->get_all("target");
    auto users = reply->get_all("user");
    auto uids = reply->get_all_u64("uid");
    auto gids = reply->get_all_u64("gid");
    auto homes = reply->get_all("home");
    auto boxes = reply->get_all("mailbox");
    auto formats = reply->get_all("format");
    auto dotforwards = reply->get_all_u64("dotforward");
    size_t n = kinds.size();
    if (n == 0 || targets.size() != n || users.size() != n || uids.size() != n ||
        gids.size() != n || homes.size() != n || boxes.size() != n || formats.size() != n ||
        dotforwards.size() != n)
        return finish_rcpt(r, index, {Verdict::Deferred, "4.3.0", "malformed answer from authd"});
    std::vector<std::unique_ptr<Task>> tasks;
    std::unique_ptr<Task> fwd;
    for (size_t i = 0; i < n; ++i) {
        auto t = std::make_unique<Task>();
        t->request = r;
        t->index = index;
        t->owner = this;
        if (kinds[i] == "forward") {
            if (!fwd) {
                fwd = std::move(t);
                fwd->kind = JobKind::Forward;
            }
            fwd->forward_to.emplace_back(targets[i]);
            continue;
        }
        if (kinds[i] == "mailbox")
            t->kind = JobKind::Mailbox;
        else if (kinds[i] == "pipe")
            t->kind = JobKind::Pipe;
        else if (kinds[i] == "file")
            t->kind = JobKind::File;
        else
            return finish_rcpt(r, index,
                               {Verdict::Deferred, "4.3.0", "malformed answer from authd"});
        t->user = std::string(users[i]);
        t->uid = static_cast<uid_t>(uids[i]);
        t->gid = static_cast<gid_t>(gids[i]);
        t->home = std::string(homes[i]);
        t->mailbox = std::string(boxes[i]);
        t->maildir = formats[i] == "maildir";
        t->dotforward = dotforwards[i] != 0;
        t->target = std::string(targets[i]);
        if (t->uid == 0 || t->gid == 0 || uids[i] > 0xfffffffe || gids[i] > 0xfffffffe) {
            log::error(esc(r->queue_id), ": refusing to deliver to ", esc(t->user), " as uid ",
                       uids[i], " gid ", gids[i]);
            return finish_rcpt(r, index, {Verdict::Failed, "5.3.0", "refusing to deliver as root"});
        }
        tasks.push_back(std::move(t));
    }
    if (fwd) tasks.push_back(std::move(fwd));
    r->parts[index] = tasks.size();
    for (auto& t : tasks) waiting_.push_back(std::move(t));
    start_tasks();
}

void LocalDelivery::on_dotforward(std::unique_ptr<Task> done, const std::string& text) {
    const std::shared_ptr<Request>& r = done->request;
    const size_t index = done->index;
    std::string where = "~" + done->user + "/.forward";
    auto self_mailbox = [&] {
        auto t = std::make_unique<Task>();
        t->request = done->request;
        t->index = done->index;
        t->kind = JobKind::Mailbox;
        t->user = done->user;
        t->uid = done->uid;
        t->gid = done->gid;
        t->home = done->home;
        t->mailbox = done->mailbox;
        t->maildir = done->maildir;
        t->owner = this;
        t->dotforward = false;  // "\\user": no second look at .forward
        return t;
    };
    ForwardPlan plan =
        plan_dotforward(text, done->user, r->rcpts[index], resolver_,
                        resolver_.domains.empty() ? host_ : resolver_.domains.front());
    std::vector<std::unique_ptr<Task>> tasks;
    if (!plan.ignored.empty()) {
        log::warn(esc(r->queue_id), ": ", where, ": ", one_line(plan.ignored, 300),
                  ": ignored, delivering to the mailbox");
        tasks.push_back(self_mailbox());
    } else {
        if (plan.self) tasks.push_back(self_mailbox());
        auto add = [&](JobKind kind, const std::string& target) {
            auto t = self_mailbox();
            t->kind = kind;
            t->target = target;
            tasks.push_back(std::move(t));
        };
        for (const std::string& c : plan.commands) add(JobKind::Pipe, c);
        for (const std::string& f : plan.files) add(JobKind::File, f);
        if (!plan.forward_to.empty()) {
            add(JobKind::Forward, "");
            tasks.back()->forward_to = plan.forward_to;
        }
    }
    log::info(esc(r->queue_id), ": to=<", esc(r->rcpts[index]), ">: ", where, " gives ",
              tasks.size(), " deliveries");
    // This task is replaced by the new ones.
    r->parts[index] += tasks.size();
    --r->parts[index];
    for (auto& t : tasks) waiting_.push_back(std::move(t));
}

void LocalDelivery::finish_rcpt(const std::shared_ptr<Request>& r, size_t index, const Outcome& o) {
    // A recipient with several mailboxes is answered once all are done; the
    // worst outcome wins (one failed write must not be reported as sent).
    // Equally bad outcomes of different targets are joined ("delivered to
    // maildir; forwarded as ID"), up to a bound, for the log and the DSN.
    constexpr size_t kMaxText = 400;
    if (!r->worst[index] || severity(o.verdict) > severity(r->worst[index]->verdict)) {
        r->worst[index] = o;
    } else if (severity(o.verdict) == severity(r->worst[index]->verdict)) {
        std::string& text = r->worst[index]->text;
        if (text.find(o.text) == std::string::npos && text.size() + 2 + o.text.size() <= kMaxText)
            text += "; " + o.text;
    }
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
    // Commands may take minutes (command_time_limit): they get at most half
    // of the slots, so that slow commands never hold up mailbox writes.
    const size_t max_commands = std::max<size_t>(1, limits_.concurrency / 2);
    auto it = waiting_.begin();
    while (it != waiting_.end() && running_.size() < limits_.concurrency) {
        if ((*it)->kind == JobKind::Pipe && running_commands_ >= max_commands) {
            ++it;
            continue;
        }
        auto t = std::move(*it);
        it = waiting_.erase(it);
        spawn(std::move(t));  // may finish at once (fork failed): never touches waiting_
    }
}

Job LocalDelivery::make_job(const Task& t) {
    Job job;
    job.kind = t.kind;
    job.message_fd = t.request->message->get();
    job.sender = t.request->sender;
    job.rcpt = t.request->rcpts[t.index];
    job.mailbox = t.mailbox;
    job.format_maildir = t.maildir;
    job.host = host_;
    job.counter = ++counter_;
    job.dotforward = t.dotforward;
    job.user = t.user;
    job.home = t.home;
    job.recipient_delimiter = resolver_.recipient_delimiter;
    job.time_limit = command_time_limit_;
    job.output_limit = command_output_limit_;
    if (t.kind == JobKind::Pipe) job.command = t.target;
    if (t.kind == JobKind::File) job.path = t.target;
    job.forward_to = t.forward_to;
    job.enqueue_socket = enqueue_path_;
    job.body = t.request->body;
    job.smtputf8 = t.request->smtputf8;
    return job;
}

void LocalDelivery::spawn(std::unique_ptr<Task> t) {
    // Mailbox writes (the common case, and the one a burst is made of) go to
    // a worker of their user; the rest get a child of their own.
    if (t->kind == JobKind::Mailbox) return spawn_on_worker(std::move(t));
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        int e = errno;
        return finish_rcpt(t->request, t->index, outcome_for_errno(e, "pipe"));
    }
    UniqueFd rd(p[0]), wr(p[1]);
    Job job = make_job(*t);
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
        //
        // A forward stays uid 0 (the queue-manager takes any envelope sender
        // from root only) but drops its two capabilities: it reads the message
        // fd and talks to the enqueue socket, nothing else. Every other job
        // becomes its user, never root.
        privsep::DropSpec d;
        d.uid = t->kind == JobKind::Forward ? 0 : t->uid;
        d.gid = t->kind == JobKind::Forward ? 0 : t->gid;
        d.keep = privsep::KeepCaps::None;
        d.allow_root = t->kind == JobKind::Forward;
        if (t->kind == JobKind::Mailbox && !t->maildir)
            if (auto g = spool_group(t->mailbox, t->uid)) d.supplementary_groups.push_back(*g);
        std::string report;
        if (auto s = privsep::drop(d); !s) {
            report = encode_outcome(
                {Verdict::Deferred, "4.3.0", "cannot become the recipient: " + s.error().message});
        } else {
            report = run_job(job);
        }
        std::string_view rest = report;
        while (!rest.empty()) {
            ssize_t n = write(wr.get(), rest.data(), rest.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            rest.remove_prefix(static_cast<size_t>(n));
        }
        _exit(0);
    }
    wr.reset();
    (void)fcntl(rd.get(), F_SETFL, O_NONBLOCK);
    t->pid = pid;
    t->pipe = std::move(rd);
    Task* raw = t.get();
    t->ev.reset(event_new(base_, t->pipe.get(), EV_READ | EV_PERSIST, on_pipe_cb, raw));
    if (raw->kind == JobKind::Pipe) ++running_commands_;
    running_[raw] = std::move(t);
    if (!raw->ev || event_add(raw->ev.get(), nullptr) != 0) {
        log::error("cannot watch a delivery child; waiting for it");
        on_child_done(raw);
    }
}

void LocalDelivery::on_pipe_cb(evutil_socket_t fd, short, void* arg) noexcept {
    auto* t = static_cast<Task*>(arg);
    char buf[8192];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            if (t->output.size() < WorkerLimits{}.max_report())
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
    std::string output = std::move(t->output);
    complete(std::move(t), output, wstatus);
}

void LocalDelivery::complete(std::unique_ptr<Task> t, const std::string& output, int wstatus) {
    if (t->kind == JobKind::Pipe) --running_commands_;
    std::optional<Outcome> o;
    auto report = parse_report(output);
    if (report) {
        for (const std::string& note : report->notes)
            log::warn(esc(t->request->queue_id), ": to=<", esc(t->request->rcpts[t->index]),
                      ">: ", one_line(note, 400));
        if (report->dotforward) {
            on_dotforward(std::move(t), *report->dotforward);
            start_tasks();
            maybe_exit();
            return;
        }
        o = report->outcome;
    }
    if (!o) {
        log::error(esc(t->request->queue_id), ": delivery child for ", esc(t->user),
                   " ended without a result (status ", wstatus, ")");
        o = Outcome{Verdict::Deferred, "4.3.0", "delivery process failed"};
    }
    finish_rcpt(t->request, t->index, *o);
    t.reset();
    start_tasks();
    maybe_exit();
}

void LocalDelivery::spawn_on_worker(std::unique_ptr<Task> t) {
    gid_t extra = 0;
    if (!t->maildir)
        if (auto g = spool_group(t->mailbox, t->uid)) extra = *g;
    // A Maildir job joins the busiest of the user's workers that has room
    // (what it has in flight is stored as one batch when it is ready); an
    // mbox job takes an idle one. Else a new worker.
    Worker* w = nullptr;
    for (auto& x : workers_) {
        if (x->uid != t->uid || x->gid != t->gid || x->extra_gid != extra || !x->conn ||
            !x->conn->is_open() || x->jobs + x->busy.size() >= kWorkerMaxJobs || x->mbox_jobs > 0 ||
            x->busy.size() >= kWorkerMaxBatch || (!t->maildir && !x->busy.empty()))
            continue;
        if (!w || x->busy.size() > w->busy.size()) w = x.get();
    }
    if (!w) {
        // At most `concurrency` workers: the least recently used idle one
        // makes room (there is one: fewer deliveries than that are running,
        // and every worker has one at least).
        if (workers_.size() >= limits_.concurrency) {
            for (auto it = workers_.rbegin(); it != workers_.rend(); ++it) {
                if ((*it)->busy.empty()) {
                    close_worker(it->get());
                    break;
                }
            }
        }
        w = start_worker(t->uid, t->gid, extra);
        if (!w) {
            int e = errno;
            return finish_rcpt(t->request, t->index, outcome_for_errno(e, "fork"));
        }
    }
    auto m = job_message(make_job(*t));
    if (!m || !w->conn->send(std::move(*m))) {
        log::error(esc(t->request->queue_id), ": cannot hand a delivery to the worker of ",
                   esc(t->user), ": ", m ? "send failed" : m.error().message);
        drop_worker(w);
        return finish_rcpt(t->request, t->index,
                           {Verdict::Deferred, "4.3.0", "delivery process failed"});
    }
    if (w->idle) event_del(w->idle.get());
    workers_.splice(workers_.begin(), workers_, w->self);  // most recently used first
    Task* raw = t.get();
    w->busy.push_back(raw);
    if (!raw->maildir) ++w->mbox_jobs;
    raw->worker = w;
    running_[raw] = std::move(t);
}

LocalDelivery::Worker* LocalDelivery::start_worker(uid_t uid, gid_t gid, gid_t extra_gid) {
    if (uid == 0 || gid == 0) {  // on_resolved refuses these already
        errno = EPERM;
        return nullptr;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
    UniqueFd ours(sv[0]), theirs(sv[1]);
    pid_t pid = fork();
    if (pid < 0) return nullptr;
    if (pid == 0) {
        // The worker: its end of the channel and nothing else (not the
        // listener, not the queue-manager's or authd's connections, no
        // message of another user), then the recipient's uid for good.
        (void)ours.release();  // closed below with the rest
        close_other_fds(theirs.get(), theirs.get());
        // It ends when the parent closes the channel, never in the middle of
        // a write: the parent's signal handlers and the stop signals go.
        for (int sig : {SIGTERM, SIGINT, SIGHUP}) (void)signal(sig, SIG_IGN);
        privsep::DropSpec d;
        d.uid = uid;
        d.gid = gid;
        d.keep = privsep::KeepCaps::None;
        d.allow_root = false;
        if (extra_gid != 0) d.supplementary_groups.push_back(extra_gid);
        if (auto s = privsep::drop(d); !s) {
            log::error("delivery worker: cannot become uid ", uid, ": ", s.error().message);
            _exit(1);
        }
        WorkerOptions options;
        options.batch_delay = batch_delay_;
        options.max_batch = limits_.concurrency;  // never more in flight
        _exit(serve_worker(theirs.get(), options) ? 0 : 1);
    }
    theirs.reset();
    auto w = std::make_unique<Worker>();
    w->uid = uid;
    w->gid = gid;
    w->extra_gid = extra_gid;
    w->pid = pid;
    w->owner = this;
    Worker* raw = w.get();
    workers_.push_front(std::move(w));
    raw->self = workers_.begin();
    raw->idle.reset(evtimer_new(base_, on_worker_idle_cb, raw));
    raw->conn = std::make_unique<ipc::Connection>(
        base_, std::move(ours), kWorkerProtocol,
        [this, raw](ipc::Message&& m) { on_worker_message(raw, std::move(m)); },
        [this, raw](const ipc::IpcError& e) {
            if (e.code != ipc::IpcErrc::Eof || !raw->busy.empty())
                log::warn("delivery worker ", raw->pid, " (uid ", raw->uid, "): ", e.text);
            on_worker_closed(raw);
        });
    return raw;
}

void LocalDelivery::on_worker_message(Worker* w, ipc::Message&& m) {
    if (w->busy.empty() || m.name() != "report") {
        log::error("delivery worker ", w->pid, " (uid ", w->uid, ") sent a '", m.name(),
                   "' unasked; closing it");
        return on_worker_closed(w);
    }
    // Reports come in the order of the jobs.
    Task* raw = w->busy.front();
    w->busy.pop_front();
    if (!raw->maildir && w->mbox_jobs > 0) --w->mbox_jobs;
    std::string output(m.get_bytes("report").value_or(""));
    raw->worker = nullptr;
    ++w->jobs;
    if (w->busy.empty()) {
        if (w->jobs >= kWorkerMaxJobs || server_ == nullptr)
            close_worker(w);
        else if (w->idle)
            event_add(w->idle.get(), &kWorkerIdle);
    }
    auto it = running_.find(raw);
    if (it == running_.end()) return;
    std::unique_ptr<Task> t = std::move(it->second);
    running_.erase(it);
    complete(std::move(t), output, 0);
}

void LocalDelivery::drop_worker(Worker* w) {
    // Every delivery it had in hand is deferred; the queue-manager tries them
    // again later. Starts nothing (callers may be inside start_tasks).
    std::deque<Task*> tasks = std::move(w->busy);
    w->busy.clear();
    close_worker(w);
    for (Task* raw : tasks) {
        auto it = running_.find(raw);
        if (it == running_.end()) continue;
        std::unique_ptr<Task> t = std::move(it->second);
        running_.erase(it);
        t->worker = nullptr;
        log::error(esc(t->request->queue_id), ": delivery worker for ", esc(t->user),
                   " ended without a result");
        finish_rcpt(t->request, t->index, {Verdict::Deferred, "4.3.0", "delivery process failed"});
    }
}

void LocalDelivery::on_worker_closed(Worker* w) {
    // A worker that died (or broke the protocol) defers only the deliveries
    // it had in hand.
    drop_worker(w);
    start_tasks();
    maybe_exit();
}

void LocalDelivery::close_worker(Worker* w) {
    // Closing the channel ends the worker (it reads EOF between batches).
    // Destroying the Connection from its own callback is allowed.
    for (Task* t : w->busy) t->worker = nullptr;
    unreaped_.push_back(w->pid);
    workers_.erase(w->self);
    reap_workers();
}

void LocalDelivery::on_worker_idle_cb(evutil_socket_t, short, void* arg) noexcept {
    auto* w = static_cast<Worker*>(arg);
    LocalDelivery* self = w->owner;
    if (w->busy.empty()) self->close_worker(w);
    self->reap_workers();
}

void LocalDelivery::reap_workers() {
    std::erase_if(unreaped_, [](pid_t pid) {
        int st = 0;
        pid_t r;
        while ((r = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR) {
        }
        return r != 0;  // gone (or not ours any more)
    });
    // A closed worker exits once it has read the end of its channel.
    static constexpr timeval kReapAgain{0, 200 * 1000};
    if (!unreaped_.empty() && reap_timer_ && server_ != nullptr)
        event_add(reap_timer_.get(), &kReapAgain);
}

}  // namespace pbx::local
