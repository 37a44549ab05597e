#include "queue-manager/queue_manager.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "common/ipc/peers.hpp"
#include "common/log.hpp"
#include "queue-manager/listing.hpp"
#include "queue-manager/pickup.hpp"
#include "queue-manager/recovery.hpp"

namespace pbx::qm {
namespace {

// A drop-helper temp file this old belongs to a helper that died mid-write.
constexpr std::chrono::seconds kMaildropTempMaxAge{3600};
// The scheduler's timer never sleeps longer than this (a safety net: every
// change of the queue wakes it anyway).
constexpr std::chrono::seconds kMaxSchedulerSleep{3600};

Seconds now_seconds() {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

std::optional<std::string> user_name_of(uid_t uid) {
    struct passwd pw {};
    struct passwd* result = nullptr;
    char buf[4096];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &result) != 0 || result == nullptr)
        return std::nullopt;
    return std::string(pw.pw_name);
}

std::string system_host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
    return buf;
}

std::string client_of(const spool::Envelope& env) {
    if (env.origin == spool::Origin::Sendmail) return "uid=" + std::to_string(env.origin_uid);
    if (env.origin == spool::Origin::Dsn || env.origin == spool::Origin::PostmasterNotice)
        return "origin=" + std::string(spool::to_string(env.origin));
    return "client=" +
           (env.client_hostname.empty() ? std::string("unknown") : env.client_hostname) + "[" +
           env.client_address + "]";
}

timeval to_timeval(std::chrono::seconds s) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(s.count());
    return tv;
}

}  // namespace

Settings Settings::from_config(const config::Config& cfg) {
    Settings s;
    s.runtime_dir = cfg.str("runtime_dir");
    s.spool_dir = cfg.str("spool_dir");
    s.policy.myhostname = cfg.str("myhostname");
    if (s.policy.myhostname.empty()) s.policy.myhostname = system_host_name();
    s.policy.domains = cfg.list("domains");
    s.policy.trusted_users = cfg.list("trusted_users");
    s.policy.user_name = user_name_of;
    s.limits.max_message_size = cfg.size("message_size_limit");
    s.maildrop.max_message_size = cfg.size("message_size_limit");
    s.scheduler.policy = RetryPolicy::from_config(cfg);
    s.scheduler.local_domains = s.policy.domains;
    s.scheduler.local_domains.push_back(s.policy.myhostname);
    // A disabled agent does not come back before a reload, which restarts
    // the queue-manager too: its mail waits without being offered to it.
    if (!cfg.boolean("local_delivery_enable")) s.scheduler.disabled_routes.insert(Route::Local);
    if (!cfg.boolean("remote_delivery_enable")) s.scheduler.disabled_routes.insert(Route::Remote);
    s.scheduler.notices.delay_warning = cfg.duration("delay_warning_time");
    s.scheduler.notices.lifetime = s.scheduler.policy.maximal_lifetime;
    s.scheduler.notices.postmaster = cfg.str("bounce_notice_recipient");
    if (s.scheduler.notices.postmaster.find('@') == std::string::npos)
        s.scheduler.notices.postmaster += "@" + s.policy.myhostname;
    s.scheduler.notices.local_domains = s.scheduler.local_domains;
    s.bounce_size_limit = cfg.size("bounce_size_limit");
    return s;
}

QueueManager::QueueManager(event_base* base, Settings settings,
                           std::unique_ptr<DeliveryAgents> agents)
    : base_(base),
      settings_(std::move(settings)),
      store_(spool::SpoolPaths(settings_.spool_dir)),
      agents_(std::move(agents)) {
    rc_.myhostname = settings_.policy.myhostname;
}

QueueManager::~QueueManager() {
    server_.reset();
    sessions_.clear();   // open transactions remove their incoming files
    committer_.reset();  // finishes the wave in progress
}

Result<std::unique_ptr<QueueManager>> QueueManager::start(event_base* base, Settings settings,
                                                          ipc::PeerTable peers,
                                                          std::unique_ptr<DeliveryAgents> agents) {
    if (!agents) agents = std::make_unique<SocketAgents>(base, settings.runtime_dir);
    std::unique_ptr<QueueManager> qm(
        new QueueManager(base, std::move(settings), std::move(agents)));
    if (auto s = qm->recover(); !s) return Err{s.error()};
    // Finished messages are unlinked off the event loop (store.hpp).
    qm->unlinker_ = std::make_unique<BackgroundUnlinker>();
    qm->store_.set_unlinker(qm->unlinker_.get());
    auto committer = GroupCommitter::create(
        base, qm->store_.paths(), [p = qm.get()](CommitJob&& j) { p->commit_done(std::move(j)); });
    if (!committer) return Err{committer.error()};
    qm->committer_ = std::move(committer).value();
    qm->scheduler_ =
        std::make_unique<Scheduler>(qm->store_, *qm->agents_, qm->settings_.scheduler, now_seconds);
    qm->scheduler_->set_on_change([p = qm.get()] { p->wake_scheduler(); });
    qm->scheduler_->set_notifier(qm.get());
    if (auto s = qm->start_timers(); !s) return Err{s.error()};
    if (auto s = qm->listen(std::move(peers)); !s) return Err{s.error()};
    qm->scan_maildrop();
    qm->wake_scheduler();
    return qm;
}

Status QueueManager::recover() {
    auto report = recover_spool(store_.paths(), settings_.limits.envelope);
    if (!report) return fail("recovery: " + report.error().message);
    for (const auto& rel : report->removed) log::info("recovery: removed ", rel);
    for (const auto& m : report->corrupted)
        log::warn("recovery: moved ", m.from, " to ", m.to, ": ", m.reason);
    for (const auto& e : report->errors) log::error("recovery: ", e);
    size_t held = 0;
    for (auto& le : report->entries) {
        held += le.held ? 1 : 0;
        spool::QueueId id = le.env.id;
        bool finished = Scheduler::due_of(le.env) == Seconds::max();
        NoticePlan plan = plan_notices(le.env, now_seconds(), settings_.scheduler.notices);
        // Due now: the scheduler's first run looks at every message once,
        // which sends the notices a stop may have cut off.
        store_.add(std::move(le.env), le.held, Seconds{});
        store_.find(id)->recovered = true;
        if (finished && plan.empty()) {
            // Every recipient was done, and no notice is owed, when the
            // previous run stopped before it could remove the files.
            for (const std::string& line : plan.logs) log::info(id.str(), ": ", line);
            if (auto s = store_.remove(id); !s)
                log::error(id.str(), ": cannot remove: ", s.error().message);
            else
                log::info(id.str(), ": removed (finished before the restart)");
        }
    }
    log::info("recovery: ", store_.size(), " message(s) in the queue, ", held, " held");
    return {};
}

Status QueueManager::listen(ipc::PeerTable peers) {
    std::string path = ipc::socket_path(settings_.runtime_dir, ipc::Channel::Enqueue);
    auto fd = ipc::listen_unix(path, 0666);
    if (!fd) return fail("listen on " + path + ": " + fd.error().message);
    server_ = std::make_unique<ipc::Server>(
        base_, std::move(fd).value(), ipc::Channel::Enqueue, std::move(peers),
        [this](UniqueFd client, const ipc::PeerInfo& peer) { accept(std::move(client), peer); });
    log::info("listening on ", path);
    return {};
}

Status QueueManager::start_timers() {
    schedule_ev_.reset(evtimer_new(base_, &QueueManager::on_schedule_cb, this));
    rescan_ev_.reset(event_new(base_, -1, EV_PERSIST, &QueueManager::on_rescan_cb, this));
    if (!schedule_ev_ || !rescan_ev_) return fail("cannot create timers");
    timeval every = to_timeval(settings_.maildrop_rescan);
    if (event_add(rescan_ev_.get(), &every) != 0) return fail("cannot start the maildrop timer");
    // inotify makes pickup immediate; the timer alone would still find
    // everything (a wake-up is only a hint, DESIGN §3).
    inotify_fd_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (inotify_fd_ && inotify_add_watch(inotify_fd_.get(), store_.paths().maildrop.c_str(),
                                         IN_MOVED_TO | IN_CLOSE_WRITE) >= 0) {
        inotify_ev_.reset(event_new(base_, inotify_fd_.get(), EV_READ | EV_PERSIST,
                                    &QueueManager::on_inotify_cb, this));
        if (!inotify_ev_ || event_add(inotify_ev_.get(), nullptr) != 0) inotify_ev_.reset();
    }
    if (!inotify_ev_)
        log::warn("no inotify watch on maildrop/; picking up every ",
                  settings_.maildrop_rescan.count(), "s only");
    return {};
}

ReceivedContext QueueManager::received_context() const {
    ReceivedContext rc = rc_;
    rc.when = std::time(nullptr);
    rc.utc_offset_minutes = local_utc_offset_minutes(rc.when);
    return rc;
}

void QueueManager::accept(UniqueFd fd, const ipc::PeerInfo& peer) {
    if (sessions_.size() >= settings_.max_sessions) {
        log::warn("enqueue: ", sessions_.size(), " sessions already; refusing uid ", peer.uid);
        return;
    }
    if (!Submitter{peer.uid, peer.program}.trusted_fields()) {
        size_t mine = 0;
        for (const auto& [token, s] : sessions_) mine += s->peer().uid == peer.uid ? 1 : 0;
        if (mine >= settings_.max_sessions_per_user) {
            log::warn("enqueue: uid ", peer.uid, " has ", mine, " sessions already; refused");
            return;
        }
    }
    uint64_t token = next_token_++;
    auto& slot = sessions_[token];
    slot = std::make_unique<Session>(*this, token, peer);
    slot->start(base_, std::move(fd));
}

void QueueManager::close_session(uint64_t session) {
    sessions_.erase(session);
}

void QueueManager::commit(CommitJob job, const spool::Envelope& env, uint64_t session) {
    uint64_t token = next_token_++;
    job.token = token;
    pending_[token] = PendingCommit{env, session, {}, {}};
    committer_->submit(std::move(job));
}

void QueueManager::commit_done(CommitJob&& job) {
    auto it = pending_.find(job.token);
    if (it == pending_.end()) return;  // cannot happen: every job is registered
    PendingCommit pc = std::move(it->second);
    pending_.erase(it);
    const spool::Envelope& env = pc.env;
    if (pc.notice_done) {
        if (job.result) {
            log::info(env.id.str(), ": from=<>, size=", env.size, ", nrcpt=1, ", client_of(env));
            store_.add(env, false, Scheduler::due_of(env));
            wake_scheduler();
            pc.notice_done(env.id);
        } else {
            pc.notice_done(Err{job.result.error()});
        }
        return;
    }
    Refusal refusal;
    if (job.result) {
        log::info(env.id.str(), ": from=<", env.sender, ">, size=", env.size,
                  ", nrcpt=", env.recipients.size(), ", ", client_of(env),
                  pc.session == 0 ? ", maildrop" : "");
        store_.add(env, false, Scheduler::due_of(env));
        if (pc.session == 0) {
            std::string path = store_.paths().maildrop_file(pc.maildrop_name);
            if (::unlink(path.c_str()) != 0 && errno != ENOENT)
                log::error(env.id.str(), ": cannot remove ", path, ": ", std::strerror(errno),
                           " (it will be queued again)");
            log::info(env.id.str(), ": picked up maildrop/", pc.maildrop_name.str());
        }
        wake_scheduler();
    } else {
        log::error(env.id.str(), ": commit failed: ", job.result.error().message);
        refusal = io_refusal(job.result.error());
    }
    if (pc.session == 0) {
        picking_up_.erase(pc.maildrop_name);
        return;
    }
    auto s = sessions_.find(pc.session);
    if (s == sessions_.end()) {
        if (job.result) log::info(env.id.str(), ": queued, but the client went away meanwhile");
        return;
    }
    s->second->commit_done(env.id, job.result, refusal);
}

namespace {

// The original's bytes for a notice: the whole message (up to `want`
// octets). An unreadable file gives what could be read (the notice goes out
// anyway, with less of the original).
std::string read_original(const std::string& path, uint64_t want, const spool::QueueId& id) {
    std::string out;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        log::error(id.str(), ": cannot open ", path, " for the notice: ", std::strerror(errno));
        return out;
    }
    out.resize(static_cast<size_t>(want));
    size_t got = 0;
    while (got < out.size()) {
        ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n < 0) log::error(id.str(), ": cannot read ", path, ": ", std::strerror(errno));
            break;
        }
        got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
}

// "mx.example.org[192.0.2.1]:25" → "mx.example.org"; "local" and "remote"
// (the agent named no server) → "".
std::string remote_mta_of(std::string_view relay) {
    if (relay.empty() || relay == "local" || relay == "remote") return {};
    return std::string(relay.substr(0, relay.find('[')));
}

// A failure notice reads this much of a message it returns only the header
// section of.
constexpr uint64_t kHeaderReadLimit = 256 * 1024;

}  // namespace

void QueueManager::send_notice(const spool::Envelope& original, const NoticePlan& plan,
                               const std::map<size_t, std::string>& relays, DoneFn done) {
    bool full = return_full_message(original, plan, settings_.bounce_size_limit);
    uint64_t want = full ? original.size : std::min<uint64_t>(original.size, kHeaderReadLimit);
    std::string bytes = read_original(store_.paths().message_file(original.id), want, original.id);
    if (full && bytes.size() != original.size) full = false;

    spool::Envelope env;
    env.origin = plan.postmaster ? spool::Origin::PostmasterNotice : spool::Origin::Dsn;
    env.protocol = "local";
    env.sender = "";
    spool::Recipient rcpt;
    rcpt.address = plan.to;
    env.recipients.push_back(std::move(rcpt));
    bool eight_bit = std::any_of(bytes.begin(), bytes.end(),
                                 [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    env.body = eight_bit ? spool::BodyType::EightBitMime : spool::BodyType::SevenBit;
    env.smtputf8 = full && original.smtputf8;
    TransactionLimits limits = settings_.limits;
    limits.max_message_size = std::max<uint64_t>(limits.max_message_size, 2 * want + 65536);
    auto txn = Transaction::begin(store_.paths(), std::move(env), limits);
    if (!txn) return done(fail(txn.error().text));

    ReceivedContext rc = received_context();
    dsn::Report rep;
    rep.reporting_mta = settings_.policy.myhostname;
    rep.to = plan.to;
    rep.message_id = txn->id().str() + "@" + settings_.policy.myhostname;
    rep.date = rc.when;
    rep.utc_offset_minutes = rc.utc_offset_minutes;
    rep.arrival = original.arrival.time_since_epoch().count();
    rep.original_queue_id = original.id.str();
    rep.original_sender = original.sender;
    rep.envid = original.envid;
    rep.will_retry_until = plan.will_retry_until.time_since_epoch().count();
    rep.postmaster_copy = plan.postmaster;
    for (const PlannedRecipient& p : plan.report) {
        const spool::Recipient& r = original.recipients[p.index];
        dsn::RecipientReport rr;
        rr.final_recipient = r.address;
        rr.original_recipient = r.orcpt;
        rr.action = p.action;
        rr.reply = r.last_reply;
        if (auto it = relays.find(p.index); it != relays.end())
            rr.remote_mta = remote_mta_of(it->second);
        rr.last_attempt = r.last_attempt.time_since_epoch().count();
        rep.recipients.push_back(std::move(rr));
    }
    rep.return_full = full;
    rep.original = bytes;
    dsn::Composed notice = dsn::compose(rep);

    txn->add_data(notice.text, rc);
    auto job = txn->finish(rc, 0);
    if (!job) return done(fail(job.error().text));
    uint64_t token = next_token_++;
    job->token = token;
    pending_[token] = PendingCommit{txn->envelope(), 0, {}, std::move(done)};
    committer_->submit(std::move(job).value());
}

void QueueManager::maildrop_to_corrupt(const std::string& name, const std::string& reason) {
    auto moved = spool::move_to_corrupt(store_.paths(), "maildrop/" + name);
    if (moved)
        log::warn("maildrop/", name, ": ", reason, "; moved to ", *moved);
    else
        log::error("maildrop/", name, ": ", reason,
                   "; cannot move it to corrupt/: ", moved.error().message);
}

void QueueManager::scan_maildrop() {
    const std::string& dir = store_.paths().maildrop;
    auto scan = spool::scan_flat_dir(dir);
    if (!scan) {
        log::error("maildrop: ", scan.error().message);
        return;
    }
    for (const spool::QueueId& id : scan->ids)
        if (!picking_up_.contains(id)) pick_up(id);
    auto now = std::chrono::system_clock::now();
    for (const std::string& name : scan->temp_files) {
        // Usually a helper writing right now; only a stale one is removed.
        struct stat st {};
        std::string path = dir + "/" + name;
        if (::lstat(path.c_str(), &st) != 0) continue;
        auto mtime = std::chrono::system_clock::from_time_t(st.st_mtime);
        if (now - mtime < kMaildropTempMaxAge) continue;
        if (::unlink(path.c_str()) == 0) log::info("maildrop/", name, ": stale temp file removed");
    }
    for (const std::string& name : scan->invalid) maildrop_to_corrupt(name, "not a maildrop file");
}

void QueueManager::pick_up(const spool::QueueId& id) {
    std::string path = store_.paths().maildrop_file(id);
    std::string buffer;
    uid_t owner = 0;
    auto drop = spool::read_maildrop_file(path, settings_.maildrop, &buffer, &owner);
    if (!drop) {
        if (drop.error().code == spool::MaildropErrc::Io) {
            struct stat st {};
            if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) return;  // gone meanwhile
            log::error("maildrop/", id.str(), ": ", drop.error().to_string(), "; will retry");
            return;
        }
        return maildrop_to_corrupt(id.str(), drop.error().to_string());
    }
    auto conv = convert_maildrop(*drop, owner, settings_.policy);
    if (!conv) return maildrop_to_corrupt(id.str(), conv.error().text);
    TransactionLimits limits = settings_.limits;
    // The file's size was checked against message_size_limit; CRLF may add
    // up to one octet per line.
    limits.max_message_size *= 2;
    auto txn = Transaction::begin(store_.paths(), std::move(conv->env), limits);
    if (!txn) {
        log::error("maildrop/", id.str(), ": ", txn.error().text, "; will retry");
        return;
    }
    ReceivedContext rc = received_context();
    txn->add_data(conv->message, rc);
    auto job = txn->finish(rc, 0);
    if (!job) {
        if (job.error().temporary) {
            log::error("maildrop/", id.str(), ": ", job.error().text, "; will retry");
            return;
        }
        return maildrop_to_corrupt(id.str(), job.error().text);
    }
    uint64_t token = next_token_++;
    job->token = token;
    pending_[token] = PendingCommit{txn->envelope(), 0, id, {}};
    picking_up_.insert(id);
    committer_->submit(std::move(job).value());
}

void QueueManager::wake_scheduler() {
    if (schedule_soon_ || !schedule_ev_) return;
    schedule_soon_ = true;
    timeval zero{};
    event_add(schedule_ev_.get(), &zero);
}

void QueueManager::run_scheduler() {
    schedule_soon_ = false;
    std::optional<Seconds> next = scheduler_->run();
    if (schedule_soon_) return;  // something changed during the run: again, soon
    if (!next) {
        event_del(schedule_ev_.get());
        return;
    }
    auto wait = std::clamp(*next - now_seconds(), std::chrono::seconds{0}, kMaxSchedulerSleep);
    timeval tv = to_timeval(wait);
    event_add(schedule_ev_.get(), &tv);
}

void QueueManager::on_schedule_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<QueueManager*>(self)->run_scheduler();
}

void QueueManager::on_rescan_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<QueueManager*>(self)->scan_maildrop();
}

void QueueManager::on_inotify_cb(evutil_socket_t fd, short, void* self) noexcept {
    alignas(inotify_event) char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    static_cast<QueueManager*>(self)->scan_maildrop();
}

}  // namespace pbx::qm
