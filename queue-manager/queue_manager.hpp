// The queue-manager's run-time: everything post_drop starts and the event
// loop drives. main.cpp only builds the Settings and calls start().
//
//   recovery (recovery.hpp) → enqueue socket (sessions, session.hpp) →
//   group committer (commit.hpp) → maildrop pickup (pickup.hpp; at start,
//   every few seconds, and on inotify) → scheduler (scheduler.hpp) with the
//   delivery agents (delivery.hpp) → administration (listing.hpp)
#pragma once

#include <event2/event.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/config/config.hpp"
#include "common/ipc/channel.hpp"
#include "common/spool/maildrop.hpp"
#include "queue-manager/delivery.hpp"
#include "queue-manager/scheduler.hpp"
#include "queue-manager/session.hpp"

namespace pbx::qm {

struct Settings {
    std::string runtime_dir;
    std::string spool_dir;
    SubmitPolicy policy;
    TransactionLimits limits;
    SchedulerConfig scheduler;
    // bounce_size_limit: a failure notice returns the whole original up to
    // this size, its header section otherwise.
    uint64_t bounce_size_limit = 50000;
    spool::MaildropLimits maildrop;
    std::chrono::seconds maildrop_rescan{5};
    // Sessions beyond this are refused at accept (each holds a socket, an
    // incoming file and up to one frame of buffer).
    size_t max_sessions = 400;
    // Sessions of one local user (not smtpd, submitd or root), so that no
    // user can take the slots the listeners need or pin much memory.
    size_t max_sessions_per_user = 10;
    // An admin reply (a queue listing) is cut beyond this, to fit in a frame.
    size_t max_admin_text = 8 * 1024 * 1024;

    // From the configuration: myhostname (or the system host name), domains,
    // trusted_users, message_size_limit, the retry keys, runtime_dir,
    // spool_dir, delay_warning_time, bounce_notice_recipient,
    // bounce_size_limit.
    static Settings from_config(const config::Config& cfg);
};

// As root, before the drop: creates or corrects the spool layout
// (spool::ensure_layout: owner pbx-queue, maildrop/ 1730 group pbx-drop) and,
// when the master has not made it (a queue-manager started by hand), the
// runtime directory with its queue/ channel directory.
Status prepare_directories(const config::Config& cfg, uid_t uid, gid_t gid);

class QueueManager final : public SessionHost, public Notifier {
  public:
    // Recovers the spool, then listens on the enqueue socket and starts the
    // worker, the timers and the maildrop watch. `agents` may be null (the
    // socket implementation is used).
    static Result<std::unique_ptr<QueueManager>> start(event_base* base, Settings settings,
                                                       ipc::PeerTable peers,
                                                       std::unique_ptr<DeliveryAgents> agents);
    ~QueueManager() override;

    // SessionHost
    const SubmitPolicy& policy() const override { return settings_.policy; }
    const TransactionLimits& limits() const override { return settings_.limits; }
    const spool::SpoolPaths& paths() const override { return store_.paths(); }
    ReceivedContext received_context() const override;
    void commit(CommitJob job, const spool::Envelope& env, uint64_t session) override;
    AdminReply admin(const ipc::Message& request, const ipc::PeerInfo& peer) override;
    void close_session(uint64_t session) override;

    // Notifier: composes the notice (common/dsn) and commits it as a new
    // message (origin dsn or postmaster-notice, null sender) through the
    // group committer, like any other.
    void send_notice(const spool::Envelope& original, const NoticePlan& plan,
                     const std::map<size_t, std::string>& relays, DoneFn done) override;

  private:
    QueueManager(event_base* base, Settings settings, std::unique_ptr<DeliveryAgents> agents);
    Status recover();
    Status listen(ipc::PeerTable peers);
    Status start_timers();
    void accept(UniqueFd fd, const ipc::PeerInfo& peer);
    void commit_done(CommitJob&& job);

    void scan_maildrop();
    void pick_up(const spool::QueueId& id);
    void maildrop_to_corrupt(const std::string& name, const std::string& reason);

    // Runs the scheduler soon (from the loop) and re-arms its timer.
    void wake_scheduler();
    void run_scheduler();

    static void on_schedule_cb(evutil_socket_t, short, void* self) noexcept;
    static void on_rescan_cb(evutil_socket_t, short, void* self) noexcept;
    static void on_inotify_cb(evutil_socket_t, short, void* self) noexcept;

    struct PendingCommit {
        spool::Envelope env;
        uint64_t session = 0;          // 0: a maildrop file
        spool::QueueId maildrop_name;  // the maildrop file to remove after the commit
        Notifier::DoneFn notice_done;  // set: a notice (session and maildrop unused)
    };

    event_base* base_;
    Settings settings_;
    ReceivedContext rc_;  // myhostname; the time is filled per call
    // Before store_ (which points to it) so that it goes last, after
    // finishing the removals it was given.
    std::unique_ptr<BackgroundUnlinker> unlinker_;
    QueueStore store_;
    std::unique_ptr<DeliveryAgents> agents_;
    std::unique_ptr<Scheduler> scheduler_;
    std::unique_ptr<ipc::Server> server_;
    std::unique_ptr<GroupCommitter> committer_;
    std::map<uint64_t, std::unique_ptr<Session>> sessions_;
    std::map<uint64_t, PendingCommit> pending_;  // by job token
    std::set<spool::QueueId> picking_up_;        // maildrop files being committed
    uint64_t next_token_ = 1;
    EventPtr schedule_ev_, rescan_ev_, inotify_ev_;
    UniqueFd inotify_fd_;
    bool schedule_soon_ = false;
};

}  // namespace pbx::qm
