// Transport for the frames of frame.hpp: Unix stream sockets, blocking helpers
// for simple clients and tools, and a non-blocking Connection and Server for
// libevent programs.
//
// Bufferevents are not used: they read with recv()/read() and drop SCM_RIGHTS,
// so the Connection does its own recvmsg()/sendmsg() with plain events.
//
// An internal peer that sends garbage is logged and dropped (on_close with
// IpcErrc::Decode); nothing a peer sends aborts the process.
#pragma once

#include <event2/event.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/c_ptr.hpp"
#include "common/ipc/frame.hpp"
#include "common/ipc/peers.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::ipc {

// sockaddr_un's sun_path is 108 bytes including the final NUL.
inline constexpr size_t kMaxSocketPath = 107;

enum class IpcErrc {
    Eof,         // the peer closed the connection between frames
    Timeout,     // a blocking call ran out of time
    Io,          // a failed syscall (sys_errno says which)
    Decode,      // the peer sent a bad frame (decode says why)
    OutputFull,  // the peer stopped reading and our output limit was reached
    Done,        // close_when_flushed() finished: not an error
};

struct IpcError {
    IpcErrc code = IpcErrc::Io;
    DecodeErrc decode = DecodeErrc::Truncated;  // meaningful when code == Decode
    int sys_errno = 0;
    std::string text;
};

using IpcResult = Result<void, IpcError>;

// A negative timeout waits forever.
inline constexpr std::chrono::milliseconds kForever{-1};

// Unlinks a stale socket at `path` (anything else there is an error), binds,
// chmods to `mode`, listens. The fd is non-blocking and close-on-exec.
Result<UniqueFd> listen_unix(std::string_view path, mode_t mode, int backlog = 128);
// Connects; the fd is blocking and close-on-exec. Paths over kMaxSocketPath
// bytes fail with a message saying so (both functions).
Result<UniqueFd> connect_unix(std::string_view path);

// Blocking helpers, for tools and simple clients. They work on blocking and
// non-blocking fds alike (poll() waits), restart on EINTR and never raise
// SIGPIPE. recv_frame reads exactly one frame, never a byte of the next.
IpcResult send_frame(int fd, const Message& msg, std::chrono::milliseconds timeout = kForever);
Result<Message, IpcError> recv_frame(int fd, const Protocol& protocol,
                                     std::chrono::milliseconds timeout = kForever);
// Sends our hello and checks the peer's (what a Connection does by itself).
IpcResult handshake(int fd, const Protocol& protocol, std::chrono::milliseconds timeout = kForever);

// A non-blocking connection driven by a libevent event_base. It sends our
// hello at once and checks the peer's before delivering anything.
//
// LIFETIME: the owner may destroy the Connection (or call close(), send(),
// ...) from inside on_message and on_close. Every callback holds a copy of a
// shared "alive" flag that the destructor clears; after calling out, the
// Connection looks at the flag and returns at once if it was destroyed, so
// no member is touched after `delete this`-by-owner. The handlers themselves
// are copied before being called, so destroying the Connection does not
// destroy a lambda that is still running.
class Connection {
  public:
    struct Limits {
        size_t read_chunk = 64 * 1024;         // bytes per recvmsg()
        size_t max_output = 64 * 1024 * 1024;  // queued, unsent bytes
    };
    using MessageFn = std::function<void(Message&&)>;
    // Called once when the connection ends for any reason but close().
    using CloseFn = std::function<void(const IpcError&)>;

    Connection(event_base* base, UniqueFd fd, const Protocol& protocol, MessageFn on_message,
               CloseFn on_close, Limits limits);
    Connection(event_base* base, UniqueFd fd, const Protocol& protocol, MessageFn on_message,
               CloseFn on_close)
        : Connection(base, std::move(fd), protocol, std::move(on_message), std::move(on_close),
                     Limits{}) {}
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Queues a frame (bytes and fds); written when the socket is writable. An
    // encoding error (missing required field, oversize) is returned and the
    // connection stays up. Going over Limits::max_output closes the connection
    // (on_close with OutputFull, reported from the event loop, not from here).
    Status send(Message&& msg);
    // Stops reading; once everything queued is written, closes and reports
    // on_close with IpcErrc::Done (from the event loop).
    void close_when_flushed();
    // Closes at once, drops unsent output, no on_close.
    void close();

    bool is_open() const { return !closed_; }
    int fd() const { return fd_.get(); }
    size_t queued_bytes() const { return out_bytes_; }
    const Protocol& protocol() const { return *protocol_; }

  private:
    struct Pending {
        std::string bytes;
        size_t sent = 0;
        std::vector<UniqueFd> fds;  // kept open until sendmsg() passed them
    };

    static void on_read_cb(evutil_socket_t, short, void* self) noexcept;
    static void on_write_cb(evutil_socket_t, short, void* self) noexcept;
    static void on_deferred_cb(evutil_socket_t, short, void* self) noexcept;
    void handle_read();
    void handle_write();
    void finish(IpcError e);  // close and report on_close
    void defer(IpcError e);   // finish() from the event loop
    void shut();

    const Protocol* protocol_;
    UniqueFd fd_;
    MessageFn on_message_;
    CloseFn on_close_;
    Limits limits_;
    Decoder decoder_;
    std::string read_buf_;
    std::deque<Pending> out_;
    size_t out_bytes_ = 0;
    EventPtr read_ev_, write_ev_, deferred_ev_;
    IpcError deferred_error_;
    bool closed_ = false;
    bool draining_ = false;
    bool deferred_pending_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Who is on the other end of an accepted connection.
struct PeerInfo {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    Program program = Program::AnyUser;
    Access access = Access::Denied;  // never Denied when handed to on_accept
};

Result<PeerInfo> peer_credentials(int fd);

// Accepts on a listening socket of one channel. Each client's SO_PEERCRED uid
// is checked against the PeerTable; a refused client is logged and closed,
// an allowed one is handed to on_accept (which typically makes a Connection,
// and may destroy the Server).
class Server {
  public:
    using AcceptFn = std::function<void(UniqueFd, const PeerInfo&)>;
    Server(event_base* base, UniqueFd listener, Channel channel, PeerTable peers,
           AcceptFn on_accept);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    size_t refused() const { return refused_; }

  private:
    static void on_accept_cb(evutil_socket_t, short, void* self) noexcept;
    static void on_resume_cb(evutil_socket_t, short, void* self) noexcept;
    void handle_accept();

    UniqueFd listener_;
    Channel channel_;
    PeerTable peers_;
    AcceptFn on_accept_;
    EventPtr accept_ev_, resume_ev_;
    size_t refused_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace pbx::ipc
