#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ipc/peers.hpp"
#include "common/spool/layout.hpp"
#include "queue-manager/queue_manager.hpp"

namespace pbx::qm {
namespace {

// The master normally creates these (master/runtime.cpp); an existing
// directory is left as it is.
Status ensure_runtime_dir(const std::string& path, uid_t uid, gid_t gid) {
    if (::mkdir(path.c_str(), 0755) != 0) {
        if (errno == EEXIST) return {};
        return fail_errno("mkdir " + path);
    }
    if (::chown(path.c_str(), uid, gid) != 0) return fail_errno("chown " + path);
    return {};
}

}  // namespace

Status prepare_directories(const config::Config& cfg, uid_t uid, gid_t gid) {
    struct group* drop = ::getgrnam("pbx-drop");
    if (!drop)
        return fail("group 'pbx-drop' does not exist (packaging/create-users.sh creates it)");
    spool::SpoolPaths paths(cfg.str("spool_dir"));
    if (auto s = spool::ensure_layout(paths, spool::SpoolOwner{uid, gid, drop->gr_gid}); !s)
        return fail("spool " + paths.root + ": " + s.error().message);
    std::string runtime = cfg.str("runtime_dir");
    if (auto s = ensure_runtime_dir(runtime, 0, 0); !s) return s;
    return ensure_runtime_dir(runtime + "/" + std::string(ipc::kQueueDir), uid, gid);
}

}  // namespace pbx::qm
