// queue-manager: the only writer of the spool (DESIGN §4, STYLE 7).
//
// SECURITY: runs as pbx-queue with no capabilities and NO_NEW_PRIVS; not
// chrooted (DESIGN §2 says "root dir: spool", but the queue-manager must
// reach the delivery agents' sockets under runtime_dir, outside the spool).
// As root, before the drop, it only creates/fixes the spool directories and
// resolves the system users. It listens on runtime_dir/queue/enqueue.sock
// (mode 0666: any local user may submit or list, SO_PEERCRED says who and
// decides what). UNTRUSTED input: enqueue frames from any local user
// (strictly decoded, every field bounded) and maildrop/ files written through
// sendmail's setgid helper (strict reader, size limits, uid checked against
// the file owner). It writes spool_dir/{incoming,queue,hold,corrupt}/ and
// removes files from maildrop/, nothing else.
#include <sys/resource.h>
#include <sys/stat.h>

#include <memory>
#include <optional>

#include "common/ipc/peers.hpp"
#include "common/log.hpp"
#include "common/privsep/service.hpp"
#include "common/spool/layout.hpp"
#include "queue-manager/queue_manager.hpp"

namespace {

std::optional<pbx::ipc::PeerTable> g_peers;
std::unique_ptr<pbx::qm::QueueManager> g_qm;

// Every session holds a socket and an incoming file; the usual soft limit of
// 1024 descriptors would run out before Settings::max_sessions.
void raise_fd_limit() {
    struct rlimit rl {};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) pbx::log::warn("cannot raise RLIMIT_NOFILE");
    }
}

pbx::Status pre_drop(pbx::ServiceContext& ctx) {
    raise_fd_limit();
    if (auto s = pbx::qm::prepare_directories(ctx.config, ctx.drop.uid, ctx.drop.gid); !s) return s;
    auto peers = pbx::ipc::PeerTable::from_system();
    if (!peers) return pbx::Err{peers.error()};
    g_peers.emplace(std::move(peers).value());
    return {};
}

pbx::Status post_drop(pbx::ServiceContext& ctx) {
    auto qm = pbx::qm::QueueManager::start(
        ctx.base.get(), pbx::qm::Settings::from_config(ctx.config), std::move(*g_peers), nullptr);
    if (!qm) return pbx::Err{qm.error()};
    g_qm = std::move(qm).value();
    return {};
}

void on_stop(pbx::ServiceContext& ctx) {
    g_qm.reset();  // before the event base goes: it owns events
    event_base_loopexit(ctx.base.get(), nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    pbx::ServiceSpec spec{
        .name = "queue-manager",
        .user = "pbx-queue",
        .chroot = pbx::Chroot::None,
        .pre_drop = pre_drop,
        .post_drop = post_drop,
        .on_stop = on_stop,
    };
    int rc = pbx::run_service(spec, argc, argv);
    // Only when the loop ended without on_stop: the event base is gone, so
    // destroying the queue-manager's events now would touch freed memory.
    (void)g_qm.release();
    return rc;
}
