// local-delivery's parent: serves local/local.sock (the queue-manager),
// resolves each recipient with authd (`resolve`), and runs each target
// (mailbox, command, file, forward; ~/.forward expansions) in a child that
// drops to its user. Mailbox writes go to long-lived workers of their
// (uid, gid), reused for that user's next mailbox writes, which take several
// at once and store them as one batch (pool.hpp); commands, files and
// forwards get a one-shot child each.
// Deliveries in progress are bounded by local_delivery_concurrency
// (commands by half of it), and so is the number of workers; the parent
// never blocks on a child, it only waits for their pipes and sockets in the
// event loop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/auth/resolve.hpp"
#include "common/ipc/channel.hpp"
#include "common/ipc/client_set.hpp"
#include "common/privsep/service.hpp"
#include "local-delivery/worker.hpp"

namespace pbx::local {

struct Limits {
    size_t max_clients = 16;
    size_t max_requests = 1000;  // deliver requests in progress, all clients
    size_t concurrency = 20;     // children at once
    size_t max_recipients = 1000;
};

class LocalDelivery {
  public:
    LocalDelivery();
    ~LocalDelivery();
    LocalDelivery(const LocalDelivery&) = delete;
    LocalDelivery& operator=(const LocalDelivery&) = delete;

    Status pre_drop(ServiceContext& ctx);
    Status post_drop(ServiceContext& ctx);
    void on_stop(ServiceContext& ctx);

  private:
    using Client = ipc::ClientSet::Client;
    struct Request;
    struct Task;
    struct Worker;

    void on_deliver(const std::shared_ptr<Client>& c, ipc::Message&& m);
    void resolve_rcpt(const std::shared_ptr<Request>& r, size_t index);
    void on_resolved(const std::shared_ptr<Request>& r, size_t index, const ipc::Message* reply);
    void on_dotforward(std::unique_ptr<Task> done, const std::string& text);
    void finish_rcpt(const std::shared_ptr<Request>& r, size_t index, const Outcome& o);
    void start_tasks();
    void spawn(std::unique_ptr<Task> t);
    Job make_job(const Task& t);
    static void on_pipe_cb(evutil_socket_t, short, void* arg) noexcept;
    void on_child_done(Task* t);
    void complete(std::unique_ptr<Task> t, const std::string& output, int wstatus);
    void maybe_exit();

    // The worker pool (pool.hpp).
    void spawn_on_worker(std::unique_ptr<Task> t);
    Worker* start_worker(uid_t uid, gid_t gid, gid_t extra_gid);
    void on_worker_message(Worker* w, ipc::Message&& m);
    void on_worker_closed(Worker* w);
    void drop_worker(Worker* w);
    void close_worker(Worker* w);
    static void on_worker_idle_cb(evutil_socket_t, short, void* arg) noexcept;
    void reap_workers();

    bool auth_connect();
    void auth_closed();

    event_base* base_ = nullptr;
    std::string auth_path_;
    std::string host_;
    auth::ResolverSettings resolver_;  // domains and delimiter (.forward)
    std::string enqueue_path_;         // forwarding re-submits here
    std::chrono::milliseconds command_time_limit_{1000 * 1000};
    size_t command_output_limit_ = 4096;
    std::chrono::microseconds batch_delay_{0};  // maildir_batch_delay (pool.hpp)
    Limits limits_;
    std::optional<ipc::PeerTable> peers_;
    UniqueFd listen_fd_;
    std::unique_ptr<ipc::Server> server_;
    std::optional<ipc::ClientSet> clients_;  // made in start(), with base_
    size_t requests_ = 0;

    std::unique_ptr<ipc::Connection> auth_;
    uint64_t next_auth_id_ = 1;
    struct PendingResolve {
        std::shared_ptr<Request> request;
        size_t index;
    };
    std::map<uint64_t, PendingResolve> resolving_;

    std::deque<std::unique_ptr<Task>> waiting_;
    std::map<Task*, std::unique_ptr<Task>> running_;
    size_t running_commands_ = 0;                 // Pipe tasks in running_
    std::list<std::unique_ptr<Worker>> workers_;  // most recently used first
    std::vector<pid_t> unreaped_;                 // closed workers not yet waited for
    EventPtr reap_timer_;                         // looks again while unreaped_ is not empty
    uint64_t counter_ = 0;
};

}  // namespace pbx::local
