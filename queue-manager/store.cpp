#include "queue-manager/store.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "common/spool/atomic_write.hpp"

namespace pbx::qm {

BackgroundUnlinker::BackgroundUnlinker() : thread_([this] { run(); }) {}

BackgroundUnlinker::~BackgroundUnlinker() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void BackgroundUnlinker::submit(std::vector<std::string> paths, std::string done_line) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        items_.push_back(Item{std::move(paths), std::move(done_line)});
    }
    cv_.notify_one();
}

void BackgroundUnlinker::run() {
    for (;;) {
        Item item;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return stop_ || !items_.empty(); });
            if (items_.empty()) return;  // stopping, and everything done
            item = std::move(items_.front());
            items_.pop_front();
        }
        bool ok = true;
        for (const std::string& p : item.paths)
            if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
                log::error("cannot remove: unlink ", p, ": ", std::strerror(errno));
                ok = false;
            }
        if (ok && !item.done_line.empty()) log::info(item.done_line);
    }
}

void QueueStore::add(spool::Envelope env, bool held, Seconds due) {
    spool::QueueId id = env.id;
    Entry e;
    e.env = std::move(env);
    e.held = held;
    e.due = due;
    entries_.insert_or_assign(id, std::move(e));
}

Entry* QueueStore::find(const spool::QueueId& id) {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : &it->second;
}

Status QueueStore::remove_finished(const spool::QueueId& id, std::string done_line) {
    if (!unlinker_) {
        auto s = remove(id);
        if (s && !done_line.empty()) log::info(done_line);
        return s;
    }
    Entry* e = find(id);
    if (!e) return fail("no message " + id.str());
    std::vector<std::string> paths{envelope_path(*e), paths_.message_file(id)};
    entries_.erase(id);
    unlinker_->submit(std::move(paths), std::move(done_line));
    return {};
}

std::string QueueStore::envelope_path(const Entry& e) const {
    return e.held ? paths_.held_envelope_file(e.env.id) : paths_.envelope_file(e.env.id);
}

Status QueueStore::save(const spool::QueueId& id) {
    Entry* e = find(id);
    if (!e) return fail("no message " + id.str());
    auto text = spool::write_envelope(e->env);
    if (!text)
        return fail("cannot write the envelope of " + id.str() + ": " + text.error().to_string());
    spool::AtomicWriteOptions opts;
    opts.mode = spool::kEnvelopeFileMode;
    return spool::atomic_write(envelope_path(*e), *text, opts, sys_);
}

Status QueueStore::move_envelope(const spool::QueueId& id, bool to_hold) {
    Entry* e = find(id);
    if (!e) return fail("no message " + id.str());
    if (e->held == to_hold) return fail(id.str() + (to_hold ? " is already held" : " is not held"));
    std::string from = envelope_path(*e);
    std::string to = to_hold ? paths_.held_envelope_file(id) : paths_.envelope_file(id);
    if (auto r = sys_.rename(from, to); !r.ok())
        return fail_errno("rename " + from + " to " + to, r.error());
    e->held = to_hold;
    if (auto d = spool::fsync_dir(spool::dir_name(to), sys_); !d) return d;
    return spool::fsync_dir(spool::dir_name(from), sys_);
}

Status QueueStore::hold(const spool::QueueId& id) {
    return move_envelope(id, true);
}
Status QueueStore::release(const spool::QueueId& id) {
    return move_envelope(id, false);
}

Status QueueStore::remove(const spool::QueueId& id) {
    Entry* e = find(id);
    if (!e) return fail("no message " + id.str());
    std::string env = envelope_path(*e);
    if (auto r = sys_.unlink(env); !r.ok() && r.error() != ENOENT)
        return fail_errno("unlink " + env, r.error());
    entries_.erase(id);
    std::string msg = paths_.message_file(id);
    if (auto r = sys_.unlink(msg); !r.ok() && r.error() != ENOENT)
        return fail_errno("unlink " + msg, r.error());
    // No directory fsync (Postfix's qmgr does none either): a removal that a
    // crash undoes only means a delivery may be repeated, never a loss; the
    // fsync cost one synchronous disk flush per message in the event loop.
    return {};
}

}  // namespace pbx::qm
