#include "queue-manager/recovery.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "common/spool/atomic_write.hpp"

namespace pbx::qm {
namespace {

std::string join(const std::string& dir, std::string_view name) {
    return dir + "/" + std::string(name);
}

class Recovery {
  public:
    Recovery(const spool::SpoolPaths& paths, const spool::EnvelopeLimits& limits, sys::Sys& s)
        : paths_(paths), limits_(limits), sys_(s) {}

    Result<RecoveryReport> run() {
        if (auto r = clear_incoming(); !r) return Err{r.error()};
        auto scan = spool::scan_queue(paths_);
        if (!scan) return Err{scan.error()};
        for (const std::string& rel : scan->temp_files) remove(rel);
        for (const std::string& rel : scan->invalid) to_corrupt(rel, "not a queue file");
        for (const std::string& rel : scan->orphans) to_corrupt(rel, orphan_reason(rel));
        for (const spool::QueueId& id : scan->active) load(id, false);
        for (const spool::QueueId& id : scan->held) load(id, true);
        std::sort(report_.entries.begin(), report_.entries.end(),
                  [](const LoadedEntry& a, const LoadedEntry& b) { return a.env.id < b.env.id; });
        if (!report_.removed.empty()) {
            (void)spool::fsync_dir(paths_.incoming, sys_);
            (void)spool::fsync_dir(paths_.queue, sys_);
            (void)spool::fsync_dir(paths_.hold, sys_);
        }
        return std::move(report_);
    }

  private:
    Status clear_incoming() {
        auto scan = spool::scan_flat_dir(paths_.incoming);
        if (!scan) return Err{scan.error()};
        for (const spool::QueueId& id : scan->ids) remove("incoming/" + id.str());
        for (const std::string& name : scan->temp_files) remove("incoming/" + name);
        for (const std::string& name : scan->invalid) {
            struct stat st {};
            auto l = sys_.lstat(join(paths_.incoming, name), &st);
            if (l.ok() && S_ISREG(st.st_mode))
                remove("incoming/" + name);
            else
                to_corrupt("incoming/" + name, "not a regular file");
        }
        return {};
    }

    static std::string orphan_reason(const std::string& rel) {
        if (rel.starts_with("hold/")) return "held envelope without its message (or shadowed)";
        if (rel.ends_with(spool::kMessageSuffix)) return "message without envelope";
        return "envelope without message";
    }

    void remove(const std::string& rel) {
        auto r = sys_.unlink(join(paths_.root, rel));
        if (r.ok() || r.error() == ENOENT)
            report_.removed.push_back(rel);
        else
            report_.errors.push_back(rel + ": unlink: " + std::strerror(r.error()));
    }

    void to_corrupt(const std::string& rel, const std::string& reason) {
        auto moved = spool::move_to_corrupt(paths_, rel, sys_);
        if (moved)
            report_.corrupted.push_back({rel, *moved, reason});
        else
            report_.errors.push_back(rel + ": " + moved.error().message);
    }

    void load(const spool::QueueId& id, bool held) {
        std::string name = id.str() + std::string(spool::kEnvelopeSuffix);
        std::string env_rel = (held ? "hold/" : "queue/") + name;
        std::string msg_rel = "queue/" + id.str() + std::string(spool::kMessageSuffix);
        auto bad = [&](const std::string& reason) {
            to_corrupt(env_rel, reason);
            to_corrupt(msg_rel, reason);
        };
        auto env = spool::read_envelope_file(join(paths_.root, env_rel), limits_);
        if (!env) return bad("unreadable envelope: " + env.error().to_string());
        if (env->id != id) return bad("envelope id " + env->id.str() + " is not its file name");
        struct stat st {};
        if (auto l = sys_.lstat(join(paths_.root, msg_rel), &st); !l.ok())
            return bad(std::string("message: ") + std::strerror(l.error()));
        if (static_cast<uint64_t>(st.st_size) != env->size)
            return bad("message is " + std::to_string(st.st_size) + " octets, the envelope says " +
                       std::to_string(env->size));
        report_.entries.push_back({std::move(env).value(), held});
    }

    const spool::SpoolPaths& paths_;
    const spool::EnvelopeLimits& limits_;
    sys::Sys& sys_;
    RecoveryReport report_;
};

}  // namespace

Result<RecoveryReport> recover_spool(const spool::SpoolPaths& paths,
                                     const spool::EnvelopeLimits& limits, sys::Sys& s) {
    return Recovery(paths, limits, s).run();
}

}  // namespace pbx::qm
