// The administration ops of the enqueue channel (admin → admin_reply):
// `pillarbox queue list|show|hold|release|delete|flush`. `list` is open to
// every local user (mailq); everything else is root's. Part of QueueManager,
// split out to keep each file to one concern.
#include <ctime>

#include "common/log.hpp"
#include "queue-manager/listing.hpp"
#include "queue-manager/queue_manager.hpp"

namespace pbx::qm {
namespace {

AdminReply ok(std::string text) {
    return {true, std::move(text)};
}
AdminReply error(std::string text) {
    return {false, std::move(text)};
}

}  // namespace

AdminReply QueueManager::admin(const ipc::Message& request, const ipc::PeerInfo& peer) {
    std::string op(request.get_str("op").value_or(""));
    std::optional<std::string_view> id_text = request.get_str("id");
    bool json = request.get_u64("json").value_or(0) == 1;
    int offset = local_utc_offset_minutes(std::time(nullptr));

    if (op == "list") {
        std::vector<const Entry*> entries;
        for (const auto& [id, e] : store_.entries()) entries.push_back(&e);
        std::string text = json ? list_json(entries) : list_text(entries, offset);
        if (text.size() > settings_.max_admin_text) {
            text.resize(settings_.max_admin_text);
            text += "\n... (listing cut: the queue is too large to list here)\n";
        }
        return ok(std::move(text));
    }
    if (op != "show" && op != "hold" && op != "release" && op != "delete" && op != "flush")
        return error("unknown queue operation '" + op + "'");
    if (peer.uid != 0) return error("permission denied: only root may " + op + " queue entries");

    std::optional<spool::QueueId> id;
    if (id_text) {
        auto parsed = spool::QueueId::parse(*id_text);
        if (!parsed) return error("'" + std::string(*id_text) + "' is not a queue ID");
        id = *parsed;
    } else if (op != "flush") {
        return error(op + " needs a queue ID");
    }
    Entry* e = id ? store_.find(*id) : nullptr;
    if (id && !e) return error(id->str() + ": no such message in the queue");

    if (op == "show") return ok(json ? show_json(*e) : show_text(*e, offset));
    if (op == "hold") {
        if (auto s = store_.hold(*id); !s) return error(s.error().message);
        log::info(id->str(), ": placed on hold by uid 0");
        return ok(id->str() + ": placed on hold\n");
    }
    if (op == "release") {
        if (auto s = store_.release(*id); !s) return error(s.error().message);
        e->due = Seconds{};
        log::info(id->str(), ": released from hold by uid 0");
        wake_scheduler();
        return ok(id->str() + ": released\n");
    }
    if (op == "delete") {
        if (auto s = store_.remove(*id); !s) return error(s.error().message);
        log::info(id->str(), ": removed (deleted by uid 0)");
        return ok(id->str() + ": deleted\n");
    }
    // flush
    scheduler_->flush(id ? &*id : nullptr);
    wake_scheduler();
    size_t n = id ? 1 : store_.size();
    log::info("queue flush requested by uid 0", id ? " for " + id->str() : std::string());
    return ok("flushed " + std::to_string(n) + " message(s)\n");
}

}  // namespace pbx::qm
