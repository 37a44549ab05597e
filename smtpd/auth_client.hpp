// smtpd's client of authd (auth/auth.sock): recipient lookups for the
// sessions of this process, pipelined on ONE connection, matched by id.
//
// The connection is made when first needed (relative socket path: it works
// inside the runtime-directory chroot) and made again on the next lookup
// after authd went away. authd unreachable, a broken connection or no
// answer within the timeout: the lookup answers TempFail (the client gets
// 451 4.3.0 and tries again later); mail is never refused for it.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/c_ptr.hpp"
#include "common/ipc/channel.hpp"

namespace pbx::smtpd {

struct RcptAnswer {
    enum class Kind { Found, Unknown, Remote, TempFail } kind = Kind::TempFail;
    std::string canonical;  // Found: authd's resolved form
};

class AuthClient {
  public:
    using Callback = std::function<void(const RcptAnswer&)>;

    AuthClient(event_base* base, std::string socket_path, std::chrono::milliseconds timeout);
    ~AuthClient();
    AuthClient(const AuthClient&) = delete;
    AuthClient& operator=(const AuthClient&) = delete;

    // Asks about one recipient ("local@domain" or "postmaster"). `done` is
    // called exactly once, always from the event loop (never from inside
    // this call), unless cancel(id) came first.
    uint64_t lookup_rcpt(const std::string& address, Callback done);
    // POP-before-SMTP: did `ip` log in with POP3/IMAP recently? `done` gets
    // false on any failure, under the same rules as lookup_rcpt.
    using RelayCallback = std::function<void(bool allowed, uint64_t minutes_left)>;
    uint64_t check_relay(const std::string& ip, RelayCallback done);
    void cancel(uint64_t id);

    size_t pending() const { return pending_.size(); }

  private:
    struct Pending {
        Callback done;
        RelayCallback relay_done;  // set for check_relay
        EventPtr timer;
        bool sent = false;  // false: authd unreachable, TempFail at once
        AuthClient* owner = nullptr;
        uint64_t id = 0;
    };
    bool ensure_connected();
    void on_message(ipc::Message&& m);
    void on_close(const ipc::IpcError& e);
    void answer(uint64_t id, const RcptAnswer& a);
    void answer_relay(uint64_t id, bool allowed, uint64_t minutes);
    uint64_t send(ipc::Message&& m, std::unique_ptr<Pending> p);
    static void timer_cb(evutil_socket_t, short, void* arg) noexcept;

    event_base* base_;
    std::string path_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<ipc::Connection> conn_;
    uint64_t next_id_ = 1;
    std::map<uint64_t, std::unique_ptr<Pending>> pending_;
    bool warned_ = false;  // one warning per outage, not one per lookup
};

}  // namespace pbx::smtpd
