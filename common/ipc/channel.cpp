#include "common/ipc/channel.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"

namespace pbx::ipc {
namespace {

using Clock = std::chrono::steady_clock;

// Room for the most fds one frame may carry; one recvmsg() never returns the
// fds of two sendmsg() calls (Linux stops reading after an skb with fds).
union CmsgBuf {
    cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
};

Result<sockaddr_un> make_addr(std::string_view path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty()) return fail("empty socket path");
    if (path.size() > kMaxSocketPath)
        return fail(log::concat("socket path too long (", path.size(), " bytes, limit ",
                                kMaxSocketPath, "): ", path));
    if (path.find('\0') != std::string_view::npos) return fail("NUL in socket path");
    std::memcpy(sa.sun_path, path.data(), path.size());
    return sa;
}

// UNSAFE: the sockaddr casts the socket API requires.
int do_bind(int fd, const sockaddr_un& sa) {
    return ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
}
int do_connect(int fd, const sockaddr_un& sa) {
    return ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
}

IpcError io_error(std::string_view what, int e = errno) {
    return IpcError{IpcErrc::Io, DecodeErrc::Truncated, e, Error::from_errno(what, e).message};
}
IpcError decode_error(DecodeError d) {
    return IpcError{IpcErrc::Decode, d.code, 0, std::move(d.text)};
}

// Moves the SCM_RIGHTS fds of a received message into `out` (so they are
// owned, and closed on any later error).
void collect_fds(msghdr& mh, std::vector<UniqueFd>& out) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        // UNSAFE: CMSG_DATA is unaligned char storage; memcpy each int out.
        const unsigned char* data = CMSG_DATA(c);
        for (size_t i = 0; i < n; ++i) {
            int fd;
            std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
            out.emplace_back(fd);
        }
    }
}

// Fills a control buffer carrying `fds`; returns its length (0 when none).
size_t put_fds(CmsgBuf& cbuf, const std::vector<int>& fds) {
    if (fds.empty()) return 0;
    std::memset(&cbuf, 0, sizeof(cbuf));
    msghdr mh{};
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    return mh.msg_controllen;
}

struct Deadline {
    Clock::time_point at;
    bool forever;
    explicit Deadline(std::chrono::milliseconds t)
        : at(Clock::now() + (t.count() < 0 ? std::chrono::milliseconds(0) : t)),
          forever(t.count() < 0) {}
};

IpcResult wait_for(int fd, short events, const Deadline& d) {
    for (;;) {
        int ms = -1;
        if (!d.forever) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(d.at - Clock::now()).count();
            if (left <= 0) return Err<IpcError>{{IpcErrc::Timeout, {}, ETIMEDOUT, "timed out"}};
            ms = left > 1000000 ? 1000000 : static_cast<int>(left);
        }
        pollfd p{fd, events, 0};
        int rc = ::poll(&p, 1, ms);
        if (rc > 0) return {};
        if (rc < 0 && errno != EINTR) return Err<IpcError>{io_error("poll")};
    }
}

struct RawFrame {
    std::string bytes;
    std::vector<UniqueFd> fds;
};

// Reads until `frame.bytes` holds `want` bytes, never more.
IpcResult read_exact(int fd, RawFrame& frame, size_t want, const Deadline& d) {
    while (frame.bytes.size() < want) {
        const size_t have = frame.bytes.size();
        frame.bytes.resize(want);
        iovec iov{frame.bytes.data() + have, want - have};
        CmsgBuf cbuf;
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        ssize_t n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        frame.bytes.resize(have + (n > 0 ? static_cast<size_t>(n) : 0));
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) return Err<IpcError>{io_error("recvmsg")};
            if (auto w = wait_for(fd, POLLIN, d); !w.ok()) return w;
            continue;
        }
        collect_fds(mh, frame.fds);
        if ((mh.msg_flags & MSG_CTRUNC) || frame.fds.size() > kMaxFdsPerFrame)
            return Err<IpcError>{
                decode_error({DecodeErrc::FdMismatch, "peer passed more fds than a frame holds"})};
        if (n == 0) {
            if (frame.bytes.empty()) return Err<IpcError>{{IpcErrc::Eof, {}, 0, "peer closed"}};
            return Err<IpcError>{
                decode_error({DecodeErrc::Truncated, log::concat("peer closed inside a frame (",
                                                                 frame.bytes.size(), " bytes)")})};
        }
    }
    return {};
}

Result<RawFrame, IpcError> recv_raw(int fd, uint32_t max_frame, const Deadline& d) {
    RawFrame f;
    if (auto r = read_exact(fd, f, 4, d); !r.ok()) return Err<IpcError>{std::move(r.error())};
    const uint64_t total = frame_length(f.bytes);
    if (total > max_frame)
        return Err<IpcError>{
            decode_error({DecodeErrc::FrameTooLarge,
                          log::concat("frame of ", total, " bytes, limit ", max_frame)})};
    if (auto r = read_exact(fd, f, total, d); !r.ok()) return Err<IpcError>{std::move(r.error())};
    return f;
}

}  // namespace

// ---- sockets ---------------------------------------------------------------

Result<UniqueFd> listen_unix(std::string_view path, mode_t mode, int backlog) {
    auto sa = make_addr(path);
    if (!sa.ok()) return Err<Error>{sa.error()};
    const std::string p(path);
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return fail(p + " exists and is not a socket");
        // A socket nobody answers on is a leftover of a dead server; one that
        // answers belongs to a live one, which we must not steal from.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (probe && (do_connect(probe.get(), *sa) == 0 || errno == EAGAIN))
            return fail(p + ": another process is listening there");
        if (::unlink(p.c_str()) != 0 && errno != ENOENT) return fail_errno("unlink " + p);
    } else if (errno != ENOENT) {
        return fail_errno("lstat " + p);
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    // The socket appears under its name only once it listens: it is bound
    // and set up under "<path>~" and renamed into place, so a client that
    // sees the name never meets the ECONNREFUSED of a bound socket that
    // does not listen yet. (Where "<path>~" would not fit sun_path, the
    // socket is bound under its name directly.)
    const std::string tmp = p + "~";
    auto tmp_sa = make_addr(tmp);
    const std::string& bound = tmp_sa.ok() ? tmp : p;
    if (tmp_sa.ok()) ::unlink(tmp.c_str());  // a leftover of a crash right here
    if (do_bind(fd.get(), tmp_sa.ok() ? *tmp_sa : *sa) != 0) return fail_errno("bind " + bound);
    // The channel directory's mode is the first gate; the socket's is the second.
    Status s = ::chmod(bound.c_str(), mode) == 0 ? Status{} : fail_errno("chmod " + bound);
    if (s && ::listen(fd.get(), backlog) != 0) s = fail_errno("listen " + bound);
    if (s && tmp_sa.ok() && ::rename(tmp.c_str(), p.c_str()) != 0) s = fail_errno("rename " + tmp);
    if (!s) {
        ::unlink(bound.c_str());
        return Err<Error>{s.error()};
    }
    return fd;
}

Result<UniqueFd> connect_unix(std::string_view path) {
    auto sa = make_addr(path);
    if (!sa.ok()) return Err<Error>{sa.error()};
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    while (do_connect(fd.get(), *sa) != 0) {
        if (errno == EISCONN) break;  // an EINTR'ed connect completed meanwhile
        if (errno != EINTR) return fail_errno("connect " + std::string(path));
    }
    return fd;
}

// ---- blocking helpers ------------------------------------------------------

IpcResult send_frame(int fd, const Message& msg, std::chrono::milliseconds timeout) {
    auto enc = encode(msg);
    if (!enc.ok()) return Err<IpcError>{{IpcErrc::Io, {}, EINVAL, enc.error().message}};
    const Deadline d(timeout);
    const std::string& b = enc->bytes;
    size_t sent = 0;
    while (sent < b.size()) {
        iovec iov{const_cast<char*>(b.data() + sent), b.size() - sent};
        CmsgBuf cbuf;
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if (sent == 0 && !enc->fds.empty()) {
            mh.msg_control = cbuf.buf;
            mh.msg_controllen = put_fds(cbuf, enc->fds);
        }
        ssize_t n = ::sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) return Err<IpcError>{io_error("sendmsg")};
            if (auto w = wait_for(fd, POLLOUT, d); !w.ok()) return w;
            continue;
        }
        sent += static_cast<size_t>(n);
    }
    return {};
}

Result<Message, IpcError> recv_frame(int fd, const Protocol& protocol,
                                     std::chrono::milliseconds timeout) {
    auto raw = recv_raw(fd, protocol.max_frame_size, Deadline(timeout));
    if (!raw.ok()) return Err<IpcError>{std::move(raw.error())};
    auto msg = decode_frame(protocol, raw->bytes, raw->fds);
    if (!msg.ok()) return Err<IpcError>{decode_error(std::move(msg.error()))};
    return std::move(msg.value());
}

IpcResult handshake(int fd, const Protocol& protocol, std::chrono::milliseconds timeout) {
    const Deadline d(timeout);
    if (auto s = send_frame(fd, make_hello(protocol), timeout); !s.ok()) return s;
    auto raw = recv_raw(fd, kHelloProtocol.max_frame_size, d);
    if (!raw.ok()) {
        if (raw.error().code == IpcErrc::Decode) raw.error().decode = DecodeErrc::NoHello;
        return Err<IpcError>{std::move(raw.error())};
    }
    auto hello = decode_frame(kHelloProtocol, raw->bytes, raw->fds);
    if (!hello.ok()) {
        DecodeError e = std::move(hello.error());
        return Err<IpcError>{decode_error({DecodeErrc::NoHello, "expected a hello: " + e.text})};
    }
    if (auto ok = check_hello(protocol, *hello); !ok.ok())
        return Err<IpcError>{decode_error(std::move(ok.error()))};
    return {};
}

// ---- Connection ------------------------------------------------------------

Connection::Connection(event_base* base, UniqueFd fd, const Protocol& protocol,
                       MessageFn on_message, CloseFn on_close, Limits limits)
    : protocol_(&protocol),
      fd_(std::move(fd)),
      on_message_(std::move(on_message)),
      on_close_(std::move(on_close)),
      limits_(limits),
      decoder_(protocol) {
    read_buf_.resize(limits_.read_chunk > 0 ? limits_.read_chunk : 4096);
    read_ev_.reset(event_new(base, fd_.get(), EV_READ | EV_PERSIST, on_read_cb, this));
    write_ev_.reset(event_new(base, fd_.get(), EV_WRITE | EV_PERSIST, on_write_cb, this));
    deferred_ev_.reset(event_new(base, -1, 0, on_deferred_cb, this));
    if (!read_ev_ || !write_ev_ || !deferred_ev_) {
        log::error("ipc: event_new failed");
        std::abort();
    }
    const int flags = ::fcntl(fd_.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
        defer(io_error("fcntl O_NONBLOCK"));
        return;
    }
    event_add(read_ev_.get(), nullptr);
    (void)send(make_hello(protocol));  // a hello always encodes
}

Connection::~Connection() {
    *alive_ = false;
}

void Connection::on_read_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<Connection*>(self)->handle_read();
}
void Connection::on_write_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<Connection*>(self)->handle_write();
}
void Connection::on_deferred_cb(evutil_socket_t, short, void* self) noexcept {
    auto* c = static_cast<Connection*>(self);
    c->finish(std::move(c->deferred_error_));
}

Status Connection::send(Message&& msg) {
    if (closed_ || draining_) return fail("ipc: send on a closed connection");
    auto enc = encode(msg);
    if (!enc.ok()) return Err<Error>{enc.error()};
    if (out_bytes_ + enc->bytes.size() > limits_.max_output) {
        defer({IpcErrc::OutputFull,
               {},
               0,
               log::concat("peer is not reading: ", out_bytes_, " bytes queued")});
        return fail("ipc: output limit reached");
    }
    out_bytes_ += enc->bytes.size();
    out_.push_back(Pending{std::move(enc->bytes), 0, msg.release_fds()});
    // Written from the event loop, so that a failing write reports on_close
    // there and never from inside the caller's send().
    event_add(write_ev_.get(), nullptr);
    return {};
}

void Connection::close_when_flushed() {
    if (closed_) return;
    draining_ = true;
    event_del(read_ev_.get());
    if (out_.empty()) defer({IpcErrc::Done, {}, 0, "closed after the last reply"});
}

void Connection::close() {
    shut();
}

void Connection::shut() {
    closed_ = true;
    event_del(read_ev_.get());
    event_del(write_ev_.get());
    event_del(deferred_ev_.get());
    out_.clear();
    out_bytes_ = 0;
    fd_.reset();
}

void Connection::finish(IpcError e) {
    if (closed_) return;
    shut();
    CloseFn cb = on_close_;  // the owner may destroy us, and with us on_close_
    if (cb) cb(e);
}

void Connection::defer(IpcError e) {
    if (closed_ || deferred_pending_) return;  // the first reason wins
    deferred_pending_ = true;
    deferred_error_ = std::move(e);
    event_del(read_ev_.get());
    event_active(deferred_ev_.get(), EV_TIMEOUT, 0);
}

void Connection::handle_read() {
    auto alive = alive_;
    iovec iov{read_buf_.data(), read_buf_.size()};
    CmsgBuf cbuf;
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);
    ssize_t n = ::recvmsg(fd_.get(), &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) return;
        return finish(io_error("recvmsg"));
    }
    std::vector<UniqueFd> fds;
    collect_fds(mh, fds);
    if (mh.msg_flags & MSG_CTRUNC)
        return finish(
            decode_error({DecodeErrc::FdMismatch, "peer passed more fds than a frame holds"}));
    if (n == 0) {
        auto end = decoder_.finish();
        if (!end.ok()) return finish(decode_error(std::move(end.error())));
        return finish({IpcErrc::Eof, {}, 0, "peer closed the connection"});
    }
    decoder_.feed(std::string_view(read_buf_.data(), static_cast<size_t>(n)));
    for (auto& fd : fds) decoder_.add_fd(std::move(fd));
    while (!closed_ && !draining_) {
        auto next = decoder_.next();
        if (!next.ok()) return finish(decode_error(std::move(next.error())));
        if (!next->has_value()) break;
        MessageFn cb = on_message_;  // see LIFETIME in channel.hpp
        cb(std::move(**next));
        if (!*alive) return;
    }
}

void Connection::handle_write() {
    while (!out_.empty()) {
        iovec iov[16];
        size_t niov = 0;
        for (const Pending& p : out_) {
            if (niov == std::size(iov) || (niov > 0 && !p.fds.empty())) break;
            iov[niov++] =
                iovec{const_cast<char*>(p.bytes.data() + p.sent), p.bytes.size() - p.sent};
        }
        Pending& front = out_.front();
        CmsgBuf cbuf;
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = niov;
        // Fds ride with the frame's first byte (see the wire format).
        const bool with_fds = front.sent == 0 && !front.fds.empty();
        if (with_fds) {
            std::vector<int> raw;
            for (const auto& fd : front.fds) raw.push_back(fd.get());
            mh.msg_control = cbuf.buf;
            mh.msg_controllen = put_fds(cbuf, raw);
        }
        ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // write_ev_ stays added
            return finish(io_error("sendmsg"));
        }
        if (with_fds) front.fds.clear();  // the kernel holds its own references now
        auto left = static_cast<size_t>(n);
        out_bytes_ -= left;
        while (left > 0) {
            Pending& p = out_.front();
            const size_t take = std::min(left, p.bytes.size() - p.sent);
            p.sent += take;
            left -= take;
            if (p.sent == p.bytes.size()) out_.pop_front();
        }
    }
    event_del(write_ev_.get());
    if (draining_) finish({IpcErrc::Done, {}, 0, "closed after the last reply"});
}

// ---- Server ----------------------------------------------------------------

Result<PeerInfo> peer_credentials(int fd) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return fail_errno("getsockopt SO_PEERCRED");
    PeerInfo info;
    info.uid = cred.uid;
    info.gid = cred.gid;
    info.pid = cred.pid;
    return info;
}

Server::Server(event_base* base, UniqueFd listener, Channel channel, PeerTable peers,
               AcceptFn on_accept)
    : listener_(std::move(listener)),
      channel_(channel),
      peers_(std::move(peers)),
      on_accept_(std::move(on_accept)) {
    accept_ev_.reset(event_new(base, listener_.get(), EV_READ | EV_PERSIST, on_accept_cb, this));
    resume_ev_.reset(event_new(base, -1, 0, on_resume_cb, this));
    if (!accept_ev_ || !resume_ev_) {
        log::error("ipc: event_new failed");
        std::abort();
    }
    event_add(accept_ev_.get(), nullptr);
}

Server::~Server() {
    *alive_ = false;
}

void Server::on_accept_cb(evutil_socket_t, short, void* self) noexcept {
    static_cast<Server*>(self)->handle_accept();
}

void Server::on_resume_cb(evutil_socket_t, short, void* self) noexcept {
    auto* s = static_cast<Server*>(self);
    event_add(s->accept_ev_.get(), nullptr);
}

void Server::handle_accept() {
    auto alive = alive_;
    const ChannelSpec& spec = channel_spec(channel_);
    // A bounded batch per wake-up keeps one busy listener from starving the loop.
    for (int i = 0; i < 64; ++i) {
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            const int e = errno;
            if (e == EINTR || e == ECONNABORTED) continue;
            if (e == EAGAIN || e == EWOULDBLOCK) return;
            log::warn("ipc: ", spec.socket, ": accept: ", std::strerror(e));
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                // Out of fds: pause instead of spinning on a readable listener.
                event_del(accept_ev_.get());
                timeval pause{1, 0};
                event_add(resume_ev_.get(), &pause);
            }
            return;
        }
        auto info = peer_credentials(fd.get());
        if (!info.ok()) {
            log::warn("ipc: ", spec.socket, ": ", info.error().message);
            continue;
        }
        info->program = peers_.program_of(info->uid);
        info->access = peers_.access(channel_, info->uid);
        if (info->access == Access::Denied) {
            ++refused_;
            log::warn("ipc: ", spec.socket, ": refused uid=", info->uid, " pid=", info->pid,
                      " program=", to_string(info->program), ": not a client of this channel");
            continue;
        }
        AcceptFn cb = on_accept_;
        cb(std::move(fd), *info);
        if (!*alive) return;
    }
}

}  // namespace pbx::ipc
