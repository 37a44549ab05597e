// imapd: the IMAP session of one logged-in user (imapd(8)). The master
// starts it as that user with the contract of common/session_interface.hpp;
// this file moves bytes between the socket on fd 0 and imap::Session, and
// watches the selected folder with inotify for IDLE.
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/c_ptr.hpp"
#include "common/config/config.hpp"
#include "common/event/stream.hpp"
#include "common/log.hpp"
#include "common/privsep/service.hpp"
#include "common/session_interface.hpp"
#include "imapd/session.hpp"

using namespace pbx;
namespace si = pbx::session_interface;

namespace {

const char* env(std::string_view name) {
    return std::getenv(std::string(name).c_str());
}

class Glue : public event::StreamHandler {
  public:
    Glue(event_base* base, imap::SessionConfig cfg, std::chrono::milliseconds autologout)
        : base_(base), session_(with_watch(std::move(cfg), this)), autologout_(autologout) {}

    Status start(UniqueFd fd, size_t max_output) {
        event::StreamConnection::Limits limits;
        limits.max_output = max_output;
        auto c = event::StreamConnection::create(base_, std::move(fd), *this, limits);
        if (!c) return Err{c.error()};
        conn_ = std::move(c).value();
        conn_->set_idle_timeout(autologout_);
        conn_->set_whole_reads(true);  // an APPEND's literal in reads of 64 KiB
        if (auto st = conn_->start(); !st) return st;
        inotify_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (inotify_) {
            ev_.reset(event_new(base_, inotify_.get(), EV_READ | EV_PERSIST, on_inotify, this));
            if (ev_) event_add(ev_.get(), nullptr);
        } else {
            // fs.inotify.max_user_instances (128 by default) is per user:
            // sessions beyond it look at the folder's mtimes once a second
            // while they IDLE instead.
            log::info("no inotify instance (", std::strerror(errno),
                      "); IDLE polls the folder every second");
        }
        poll_.reset(event_new(base_, -1, EV_PERSIST, on_poll, this));
        if (!inotify_) arm_poll();
        session_.start();
        flush();
        return {};
    }

    static imap::SessionConfig with_watch(imap::SessionConfig cfg, Glue* self) {
        cfg.watch = [self](const std::string& dir) { return self->watch(dir); };
        return cfg;
    }

    void stop() {
        session_.shutdown();
        flush();
    }

    void on_input(event::StreamConnection& c) noexcept override {
        process(c);
        if (c.at_eof() && !c.closing()) c.close();
    }
    void on_timeout(event::StreamConnection&) noexcept override {
        session_.autologout();
        flush();
    }
    void on_tls_ready(event::StreamConnection&) noexcept override {}
    void on_drained(event::StreamConnection& c) noexcept override {
        if (!session_.busy()) return;
        session_.resume();
        flush();
        if (!session_.busy()) process(c);
    }
    void on_closed(event::StreamConnection&, const event::CloseInfo& info) noexcept override {
        if (info.reason != event::CloseReason::Closed &&
            info.reason != event::CloseReason::PeerClosed)
            log::info("connection ended: ", event::to_string(info.reason), " ", info.detail);
        event_base_loopexit(base_, nullptr);
    }

  private:
    void process(event::StreamConnection& c) {
        while (!session_.busy() && !session_.done() && c.input_size() > 0) {
            // Changes made before this command count for it (the events are
            // queued when the change happens, whatever libevent runs first).
            read_events();
            std::string_view in = c.peek(c.input_size());
            size_t used = session_.feed(in);
            c.drain(used);
            flush();
            if (used == 0) break;
        }
    }

    void flush() {
        if (!conn_) return;
        std::string out = session_.take_output();
        if (!out.empty()) conn_->write(out);
        if (session_.done() && !conn_->closing()) conn_->close_after_flush();
    }

    // Watches the selected folder's new/ and cur/ ("" : none); the session
    // calls it before it reads a folder it selects.
    bool watch(const std::string& dir) {
        if (!inotify_) return false;
        read_events();  // the old folder's events are of no interest any more
        for (const auto& w : wds_) inotify_rm_watch(inotify_.get(), w.first);
        wds_.clear();
        if (dir.empty()) return false;
        for (const char* sub : {"new", "cur"}) {
            int wd = inotify_add_watch(inotify_.get(), (dir + "/" + sub).c_str(),
                                       IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                           IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
            if (wd < 0) {
                log::info("cannot watch ", dir, "/", sub, " (", std::strerror(errno),
                          "); IDLE polls the folder every second");
                for (const auto& w : wds_) inotify_rm_watch(inotify_.get(), w.first);
                wds_.clear();
                arm_poll();
                return false;
            }
            wds_.emplace_back(wd, sub);
        }
        return true;
    }

    // Hands the queued inotify events to the session; true if there were any.
    bool read_events() {
        if (!inotify_) return false;
        alignas(struct inotify_event) char buf[8192];
        bool any = false;
        for (;;) {
            ssize_t n = read(inotify_.get(), buf, sizeof buf);
            if (n <= 0) break;
            any = true;
            for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(struct inotify_event)) <= n;) {
                const auto* e = reinterpret_cast<const struct inotify_event*>(buf + off);
                off += static_cast<ssize_t>(sizeof(struct inotify_event) + e->len);
                if (e->mask & IN_Q_OVERFLOW) {
                    session_.fs_event("");
                    continue;
                }
                if (e->mask & IN_IGNORED) continue;
                const char* sub = nullptr;
                for (const auto& w : wds_)
                    if (w.first == e->wd) sub = w.second;
                if (!sub) continue;  // a folder no longer watched
                if (e->len == 0 || (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
                    session_.fs_event("");
                    continue;
                }
                std::string rel =
                    std::string(sub) + "/" + std::string(e->name, strnlen(e->name, e->len));
                session_.fs_event(rel);
            }
        }
        return any;
    }

    void arm_poll() {
        if (!poll_ || event_pending(poll_.get(), EV_TIMEOUT, nullptr)) return;
        struct timeval second {
            1, 0
        };
        event_add(poll_.get(), &second);
    }

    // IDLE without a watch (no inotify instance or watch left): poll.
    static void on_poll(evutil_socket_t, short, void* self) noexcept {
        auto* g = static_cast<Glue*>(self);
        if (g->wds_.empty() && g->session_.idling() && g->conn_ && !g->conn_->closing()) {
            g->session_.changed();
            g->flush();
        }
    }

    static void on_inotify(evutil_socket_t, short, void* self) noexcept {
        auto* g = static_cast<Glue*>(self);
        g->read_events();
        if (!g->conn_ || g->conn_->closing()) return;
        g->session_.changed();
        g->flush();
    }

    event_base* base_;
    imap::Session session_;
    std::unique_ptr<event::StreamConnection> conn_;
    UniqueFd inotify_;
    EventPtr ev_;
    EventPtr poll_;
    std::vector<std::pair<int, const char*>> wds_;  // wd, "new" or "cur"
    std::chrono::milliseconds autologout_;
};

// Tunnel mode: a client that runs imapd itself (mutt's tunnel, mbsync's
// Tunnel, over ssh) may give two pipes instead of one socket. The session
// then talks to one end of a socketpair and this relays: fd 0 → pair,
// pair → fd 1.
class PipeRelay {
  public:
    Result<UniqueFd> start(event_base* base) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return fail_errno("socketpair");
        UniqueFd session_end(sv[0]);
        pair_.reset(sv[1]);
        evutil_make_socket_nonblocking(0);
        evutil_make_socket_nonblocking(1);
        evutil_make_socket_nonblocking(pair_.get());
        in_.reset(bufferevent_socket_new(base, 0, 0));
        out_.reset(bufferevent_socket_new(base, 1, 0));
        mid_.reset(bufferevent_socket_new(base, pair_.get(), 0));
        if (!in_ || !out_ || !mid_) return fail("bufferevent_socket_new");
        bufferevent_setcb(in_.get(), on_in, nullptr, on_in_event, this);
        bufferevent_setcb(mid_.get(), on_mid, nullptr, on_mid_event, this);
        bufferevent_setwatermark(in_.get(), EV_READ, 0, 1 << 20);
        bufferevent_enable(in_.get(), EV_READ);
        bufferevent_enable(mid_.get(), EV_READ | EV_WRITE);
        bufferevent_enable(out_.get(), EV_WRITE);
        return session_end;
    }

  private:
    static void on_in(bufferevent* bev, void* self) noexcept {
        auto* r = static_cast<PipeRelay*>(self);
        bufferevent_write_buffer(r->mid_.get(), bufferevent_get_input(bev));
    }
    static void on_in_event(bufferevent*, short what, void* self) noexcept {
        auto* r = static_cast<PipeRelay*>(self);
        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
            bufferevent_flush(r->mid_.get(), EV_WRITE, BEV_FLUSH);
            shutdown(r->pair_.get(), SHUT_WR);
        }
    }
    static void on_mid(bufferevent* bev, void* self) noexcept {
        auto* r = static_cast<PipeRelay*>(self);
        bufferevent_write_buffer(r->out_.get(), bufferevent_get_input(bev));
    }
    static void on_mid_event(bufferevent*, short, void*) noexcept {}

    UniqueFd pair_;
    BufferEventPtr in_, out_, mid_;
};

// Sets up the session once run_service() has checked the process (never
// root, NO_NEW_PRIVS) and made the event base.
class Imapd {
  public:
    Status start(ServiceContext& ctx) {
        const char* user = env(si::kEnvUser);
        const char* mailbox = env(si::kEnvMailbox);
        const char* format = env(si::kEnvMailboxFormat);
        if (!user || !*user || !mailbox || mailbox[0] != '/')
            return fail("PBX_USER and an absolute PBX_MAILBOX are required");
        if (chdir("/") != 0) return fail_errno("chdir /");
        if (format && std::string_view(format) == "mbox") {
            // IMAP needs folders and UIDs: only Maildir++ stores are served.
            std::string bye =
                "* BYE IMAP is served from Maildir mailboxes only; this one is mbox\r\n";
            (void)!write(si::kClientFd, bye.data(), bye.size());
            log::warn("user ", user, ": IMAP refused, the mailbox is mbox");
            event_base_loopexit(ctx.base.get(), nullptr);
            return {};
        }
        imap::SessionConfig sc;
        sc.user = user;
        sc.root = mailbox;
        while (sc.root.size() > 1 && sc.root.back() == '/') sc.root.pop_back();
        if (const char* tag = env(si::kEnvLoginTag)) sc.login_tag = tag;
        sc.append_limit = ctx.config.size("message_size_limit");
        auto autologout = std::chrono::duration_cast<std::chrono::milliseconds>(
            ctx.config.duration("imap_autologout"));
        glue_ = std::make_unique<Glue>(ctx.base.get(), sc, autologout);
        UniqueFd client;
        struct stat st {};
        if (fstat(si::kClientFd, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            auto end = relay_.start(ctx.base.get());
            if (!end) return Err{end.error()};
            client = std::move(end).value();
        } else {
            client.reset(dup(si::kClientFd));
        }
        if (auto s = glue_->start(std::move(client), 2 * sc.append_limit + (16u << 20)); !s)
            return s;
        log::info("session of ", user, " started");
        return {};
    }
    void stop() {
        if (glue_) glue_->stop();
    }

  private:
    PipeRelay relay_;
    std::unique_ptr<Glue> glue_;
};

}  // namespace

int main(int argc, char** argv) {
    Imapd imapd;
    pbx::ServiceSpec spec{
        .name = "imapd",
        .session = true,
        .post_drop = [&](pbx::ServiceContext& ctx) { return imapd.start(ctx); },
        .on_stop = [&](pbx::ServiceContext&) { imapd.stop(); },
    };
    return pbx::run_service(spec, argc, argv);
}
