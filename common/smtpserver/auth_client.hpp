// The SMTP servers' client of authd (auth/auth.sock): recipient lookups,
// password checks (submitd's AUTH) and sender ownership for the sessions of
// this process, pipelined on ONE connection, matched by id.
//
// The connection is made when first needed (relative socket path: it works
// inside the runtime-directory chroot) and made again on the next lookup
// after authd went away. authd unreachable, a broken connection or no
// answer within the timeout: the request answers TempFail (the client gets
// 451 4.3.0 or 454 4.7.0 and tries again later); mail is never refused for
// it. A verify answer may come late on purpose (authd's failure delays): the
// timeout is long enough for the longest delay.
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

namespace pbx::smtpserver {

struct RcptAnswer {
    enum class Kind { Found, Unknown, Remote, TempFail } kind = Kind::TempFail;
    std::string canonical;  // Found: authd's resolved form
};

struct VerifyAnswer {
    enum class Kind { Ok, Fail, TempFail } kind = Kind::TempFail;
    std::string user;  // Ok: the canonical user name
};

struct OwnsAnswer {
    enum class Kind { Yes, No, TempFail } kind = Kind::TempFail;
};

class AuthClient {
  public:
    using Callback = std::function<void(const RcptAnswer&)>;
    using VerifyCallback = std::function<void(const VerifyAnswer&)>;
    using OwnsCallback = std::function<void(const OwnsAnswer&)>;

    AuthClient(event_base* base, std::string socket_path, std::chrono::milliseconds timeout);
    ~AuthClient();
    AuthClient(const AuthClient&) = delete;
    AuthClient& operator=(const AuthClient&) = delete;

    // Asks about one recipient ("local@domain" or "postmaster"). `done` is
    // called exactly once, always from the event loop (never from inside
    // this call), unless cancel(id) came first.
    uint64_t lookup_rcpt(const std::string& address, Callback done);
    // A password check (service "submission"); same calling rules.
    uint64_t verify(const std::string& user, const std::string& password,
                    const std::string& client_address, VerifyCallback done);
    // May `user` (as verify named it) send as `address`? Same rules.
    uint64_t owns(const std::string& user, const std::string& address, OwnsCallback done);
    // POP-before-SMTP: did `ip` log in with POP3/IMAP recently? `done` gets
    // false on any failure, under the same rules as lookup_rcpt.
    using RelayCallback = std::function<void(bool allowed, uint64_t minutes_left)>;
    uint64_t check_relay(const std::string& ip, RelayCallback done);
    void cancel(uint64_t id);

    size_t pending() const { return pending_.size(); }

  private:
    // The answer frame, or nullptr: no answer (unreachable, lost, timeout).
    using Raw = std::function<void(const ipc::Message*)>;
    struct Pending {
        Raw done;
        std::string_view answer;  // the expected reply's name
        EventPtr timer;
        bool sent = false;  // false: authd unreachable, TempFail at once
        AuthClient* owner = nullptr;
        uint64_t id = 0;
    };
    bool ensure_connected();
    uint64_t request(ipc::Message m, std::string_view answer, Raw done);
    void on_message(ipc::Message&& m);
    void on_close(const ipc::IpcError& e);
    void answer(uint64_t id, const ipc::Message* m);
    static void timer_cb(evutil_socket_t, short, void* arg) noexcept;

    event_base* base_;
    std::string path_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<ipc::Connection> conn_;
    uint64_t next_id_ = 1;
    std::map<uint64_t, std::unique_ptr<Pending>> pending_;
    bool warned_ = false;  // one warning per outage, not one per lookup
};

}  // namespace pbx::smtpserver
