// The in-memory schedule: every message in queue/ (active) or with its
// envelope in hold/ (held), keyed by queue ID, and the file operations that
// change them. The spool is the truth (DESIGN §3): the memory holds the
// parsed envelope plus a few things that are deliberately NOT persisted
// (when to look at the message next, why nothing happened), all of which a
// restart recomputes.
//
// Every change of an envelope's content goes through atomic_write(); hold and
// release are renames between queue/ and hold/ followed by fsyncs of both
// directories.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "common/spool/envelope.hpp"
#include "common/spool/layout.hpp"
#include "queue-manager/schedule.hpp"

namespace pbx::qm {

struct Entry {
    spool::Envelope env;
    bool held = false;
    // Not persisted:
    Seconds due{};                         // the scheduler looks at the message at or after this
    std::string note;                      // why it is still here, when the envelope does not say
    int in_delivery = 0;                   // requests handed to delivery agents, not yet answered
    bool flushed = false;                  // `queue flush`: deferred recipients are due now
    bool recovered = false;                // found at start-up, not attempted since
    bool notice_in_flight = false;         // a DSN about it is being committed
    std::map<size_t, std::string> relays;  // recipient index → who answered last
};

// Unlinks finished messages on a thread of its own, in order (envelope, then
// message), then logs the line it was given. An unlink in queue/ waits while a
// commit wave fsyncs that directory (the committer's thread), a few ms under
// load; in the event loop that wait held up every commit reply and delivery
// (bench/RESULTS.md, relay profile). The destructor finishes what is queued.
class BackgroundUnlinker {
  public:
    BackgroundUnlinker();
    ~BackgroundUnlinker();
    BackgroundUnlinker(const BackgroundUnlinker&) = delete;
    BackgroundUnlinker& operator=(const BackgroundUnlinker&) = delete;
    void submit(std::vector<std::string> paths, std::string done_line);

  private:
    struct Item {
        std::vector<std::string> paths;
        std::string done_line;
    };
    void run();
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> items_;
    bool stop_ = false;
    std::thread thread_;
};

class QueueStore {
  public:
    explicit QueueStore(spool::SpoolPaths paths, sys::Sys& s = sys::real())
        : paths_(std::move(paths)), sys_(s) {}

    const spool::SpoolPaths& paths() const { return paths_; }

    // A committed message (or one found by recovery).
    void add(spool::Envelope env, bool held, Seconds due);
    Entry* find(const spool::QueueId& id);
    const std::map<spool::QueueId, Entry>& entries() const { return entries_; }
    std::map<spool::QueueId, Entry>& entries() { return entries_; }
    size_t size() const { return entries_.size(); }

    // Writes the entry's envelope back (atomic_write) where it lives now.
    Status save(const spool::QueueId& id);
    // queue/ID.env → hold/ID.env, and back.
    Status hold(const spool::QueueId& id);
    Status release(const spool::QueueId& id);
    // Removes the envelope, then the message (a crash in between leaves a
    // .msg without envelope, which recovery moves to corrupt/, never a
    // deliverable half), and forgets the entry. The directory is not
    // fsynced: a crash may bring back a finished message, which is then
    // delivered again (a duplicate, never a loss; as Postfix).
    Status remove(const spool::QueueId& id);
    // The same for a finished message, then logs `done_line`: on the
    // unlinker's thread when one is set (the entry is forgotten at once),
    // else here.
    Status remove_finished(const spool::QueueId& id, std::string done_line);
    void set_unlinker(BackgroundUnlinker* u) { unlinker_ = u; }

    std::string envelope_path(const Entry& e) const;

  private:
    Status move_envelope(const spool::QueueId& id, bool to_hold);

    spool::SpoolPaths paths_;
    sys::Sys& sys_;
    BackgroundUnlinker* unlinker_ = nullptr;
    std::map<spool::QueueId, Entry> entries_;
};

}  // namespace pbx::qm
