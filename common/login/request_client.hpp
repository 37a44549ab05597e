// An asynchronous client for an internal request/answer channel whose
// messages carry an `id` the answer repeats (auth/auth.sock,
// session/session.sock): one connection per process, made when first needed
// and again after the server went away (relative paths work in the chroot),
// pipelined requests matched by id, a timeout for each. A lost connection,
// an unreachable server or no answer in time answers nullopt ("try again
// later"); the callback runs exactly once, from the event loop, unless the
// request was cancelled first.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"

namespace pbx::login {

class RequestClient {
  public:
    using Callback = std::function<void(std::optional<ipc::Message>)>;

    RequestClient(event_base* base, std::string socket_path, const ipc::Protocol& protocol,
                  std::string_view answer_name, std::chrono::milliseconds timeout);
    ~RequestClient();
    RequestClient(const RequestClient&) = delete;
    RequestClient& operator=(const RequestClient&) = delete;

    // Sets the request's "id" field and sends it; returns the id.
    uint64_t request(ipc::Message&& m, Callback done);
    void cancel(uint64_t id);
    size_t pending() const { return pending_.size(); }

  private:
    struct Pending {
        RequestClient* owner = nullptr;
        uint64_t id = 0;
        Callback done;
        EventPtr timer;
        bool sent = false;
    };
    bool ensure_connected();
    void on_message(ipc::Message&& m);
    void on_close(const ipc::IpcError& e);
    void answer(uint64_t id, std::optional<ipc::Message> m);
    static void timer_cb(evutil_socket_t, short, void* arg) noexcept;

    event_base* base_;
    std::string path_;
    const ipc::Protocol* protocol_;
    std::string answer_name_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<ipc::Connection> conn_;
    uint64_t next_id_ = 1;
    std::map<uint64_t, std::unique_ptr<Pending>> pending_;
    bool warned_ = false;
};

}  // namespace pbx::login
