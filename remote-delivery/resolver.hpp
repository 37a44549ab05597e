// The Resolver of dns.hpp over libunbound, in the libevent loop: queries run
// in libunbound's worker thread; its result pipe (ub_fd) wakes our loop,
// where ub_process() runs the callbacks. Every query also has our own
// deadline, so a lookup always ends.
//
// Set up in two steps around the privilege drop: create() (as root, before
// the chroot) reads /etc/resolv.conf or takes a forwarder address;
// attach() (after the drop) joins the event loop. No thread exists before
// the drop.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/c_ptr.hpp"
#include "common/result.hpp"
#include "remote-delivery/dns.hpp"

struct ub_ctx;
struct ub_result;

namespace pbx::remote {

class UnboundResolver final : public Resolver {
  public:
    // `forwarder`: "" = the system resolvers of /etc/resolv.conf (full
    // recursion when it names none); else "IP" or "IP@port".
    static Result<std::unique_ptr<UnboundResolver>> create(const std::string& forwarder,
                                                           std::chrono::seconds timeout);
    ~UnboundResolver() override;

    Status attach(event_base* base);

    void lookup_mx(const std::string& domain, MxFn done) override;
    void lookup_addresses(const std::string& host, AddressFn done) override;

  private:
    struct Query;
    UnboundResolver() = default;
    void start(const std::string& name, int type, std::function<void(int, ub_result*)> done);
    static void on_result(void* arg, int err, ub_result* result) noexcept;
    void complete(uint64_t id, int err, ub_result* result);
    static void on_readable(evutil_socket_t, short, void* self) noexcept;
    static void on_timeout(evutil_socket_t, short, void* arg) noexcept;

    ub_ctx* ctx_ = nullptr;
    event_base* base_ = nullptr;
    EventPtr ev_;
    std::chrono::seconds timeout_{30};
    // By id, not by address: the id travels through libunbound, and a late
    // answer to a cancelled query must never reach a new one.
    std::map<uint64_t, std::unique_ptr<Query>> queries_;
    uint64_t next_id_ = 1;
    // What libunbound gets as the callback argument, alive until its
    // callback ran or the context is gone.
    struct Slot {
        UnboundResolver* owner;
        uint64_t id;
    };
    std::map<uint64_t, std::unique_ptr<Slot>> slots_;
};

}  // namespace pbx::remote
