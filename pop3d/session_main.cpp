// pop3d: one POP3 session after login (DESIGN §2; pop3d(8)).
//
// SECURITY
//   Started by pillarbox-master for a ticket authd issued, already running as
//   the mail user (uid/gid from the user database, never 0), no
//   capabilities, NO_NEW_PRIVS (common/session_interface.hpp). It refuses
//   to run as uid or gid 0. Its only peer is the login process on the other
//   end of the socketpair on fd 0, which relays the client's commands: those
//   are untrusted input (pop3::SessionEngine, with line and bad-command
//   limits and an autologout timer). It reads and changes only the mailbox
//   named by PBX_MAILBOX (and, for Maildir, its own cache and lock files
//   there), never the network, TLS keys or other users' mail.
#include <malloc.h>

#include <cstdlib>
#include <memory>

#include "common/event/stream.hpp"
#include "common/event/write_through.hpp"
#include "common/log.hpp"
#include "common/privsep/service.hpp"
#include "common/session_interface.hpp"
#include "pop3d/framed_session.hpp"
#include "pop3d/maildir_store.hpp"
#include "pop3d/mbox_store.hpp"
#include "pop3d/session_engine.hpp"

namespace {

namespace si = pbx::session_interface;
using namespace pbx;

constexpr size_t kOutputHighWater = 256 * 1024;
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kFeedMax = 64 * 1024;
constexpr timeval kKeepAlive{60, 0};

std::string env(std::string_view name) {
    const char* v = std::getenv(std::string(name).c_str());
    return v ? v : "";
}

class Session : public event::StreamHandler {
  public:
    Status start(ServiceContext& ctx) {
        base_ = ctx.base.get();
        user_ = env(si::kEnvUser);
        client_ = env(si::kEnvClientAddress);
        id_ = env(si::kEnvSessionId);
        const std::string mailbox = env(si::kEnvMailbox);
        const std::string format = env(si::kEnvMailboxFormat);
        if (mailbox.empty()) return fail("PBX_MAILBOX is not set");
        const std::string proxy = env(si::kEnvProxy);
        if (!proxy.empty() && proxy != si::kProxyFrames)
            return fail("PBX_PROXY is neither empty nor \"frames\"");
        const bool frames = proxy == si::kProxyFrames;
        auto c = event::StreamConnection::create(base_, UniqueFd(si::kClientFd), *this);
        if (!c) return Err{c.error()};
        conn_ = std::move(c).value();
        conn_->set_whole_reads(true);  // pipelined commands in one read
        if (auto s = conn_->start(); !s) return s;
        conn_->set_idle_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(
            ctx.config.duration("pop3_autologout")));
        pop3::SessionLimits limits;
        limits.max_bad_commands = static_cast<int>(ctx.config.integer("pop3_max_bad_commands"));

        Result<std::unique_ptr<pop3::Store>, pop3::StoreOpenError> store =
            Err{pop3::StoreOpenError{pop3::OpenError::Failed, "unknown mailbox format " + format}};
        if (format == "mbox") {
            pop3::MboxStoreOptions options;
            if (std::string home = env("HOME"); !home.empty())
                options.journal = home + "/.pillarbox-pop3-journal";
            auto m = pop3::MboxStore::open(mailbox, options);
            if (m && !m.value()->recovered().empty())
                log::warn("session of ", user_, ": ", mailbox, ": ", m.value()->recovered());
            if (m)
                store = std::unique_ptr<pop3::Store>(std::move(m).value());
            else
                store = Err{m.error()};
        } else if (format == "maildir") {
            auto m = pop3::MaildirStore::open(mailbox);
            if (m)
                store = std::unique_ptr<pop3::Store>(std::move(m).value());
            else
                store = Err{m.error()};
        }
        if (store) {
            store_ = std::move(store).value();
            engine_ = std::make_unique<pop3::SessionEngine>(*store_, limits);
            if (frames) start_frames();
            engine_->start();
            uint64_t octets = 0;
            for (const auto& m : store_->messages()) octets += m.size;
            log::info("session of ", user_, " from ", client_, " (", id_, "): ", format, " ",
                      mailbox, ", ", store_->messages().size(), " messages, ", octets, " octets");
            // What opening needed (directory listings, the size cache) is
            // freed: give its pages back, the session may last long.
            malloc_trim(0);
            keep_alive_.reset(evtimer_new(base_, keep_alive_cb, this));
            event_add(keep_alive_.get(), &kKeepAlive);
        } else {
            empty_ = std::make_unique<EmptyStore>();
            engine_ = std::make_unique<pop3::SessionEngine>(*empty_, limits);
            if (frames) start_frames();
            const auto& e = store.error();
            log::warn("session of ", user_, " from ", client_, " (", id_,
                      "): cannot open the mailbox: ", e.message);
            engine_->refuse(e.kind == pop3::OpenError::InUse
                                ? "-ERR [IN-USE] The mailbox is in use by another session.\r\n"
                                : "-ERR [SYS/TEMP] The mailbox cannot be opened; try again "
                                  "later.\r\n");
        }
        pump();
        return {};
    }

    void stop() {
        if (!engine_) {
            event_base_loopexit(base_, nullptr);
            return;
        }
        log::info("session of ", user_, ": stopping (nothing deleted)");
        engine_->shutting_down();
        pump();
    }

    void on_input(event::StreamConnection&) noexcept override { pump(); }
    void on_drained(event::StreamConnection&) noexcept override { pump(); }
    void on_tls_ready(event::StreamConnection&) noexcept override {}
    void on_timeout(event::StreamConnection&) noexcept override {
        log::info("session of ", user_, ": autologout (nothing deleted)");
        engine_->timed_out();
        pump();
    }
    void on_closed(event::StreamConnection&, const event::CloseInfo& info) noexcept override {
        if (!engine_->closed())
            log::info("session of ", user_, " (", id_, "): connection closed without QUIT",
                      info.detail.empty() ? "" : ": ", info.detail, "; nothing deleted");
        else
            log::info("session of ", user_, " (", id_, "): logged out");
        event_base_loopexit(base_, nullptr);
    }

  private:
    // The store of a session that could not open its mailbox.
    struct EmptyStore final : pop3::Store {
        std::vector<pop3::MessageInfo> none;
        const std::vector<pop3::MessageInfo>& messages() const override { return none; }
        Result<std::string> content(size_t) override { return fail("no mailbox"); }
        Status commit(const std::vector<bool>&) override { return {}; }
    };

    // PBX_PROXY=frames: output as proxy frames, idle frames with offers
    // (framed_session.hpp); the hello goes first.
    void start_frames() {
        framed_ = std::make_unique<pop3::FramedSession>(*engine_);
        event::write_through(*conn_, pop3::FramedSession::hello());
    }

    void write_output() {
        if (framed_)
            event::write_through(*conn_, framed_->take_frame(kChunk));  // never TLS
        else
            event::write_through(*conn_, engine_->take_output(kChunk));
    }

    size_t feed(std::string_view v) { return framed_ ? framed_->feed(v) : engine_->feed(v); }

    void pump() {
        if (!conn_ || conn_->closing()) return;
        for (;;) {
            while (engine_->has_output() && conn_->output_size() < kOutputHighWater) write_output();
            if (engine_->has_output() || conn_->closing()) return;  // on_drained goes on
            if (engine_->closed()) {
                conn_->close_after_flush();
                return;
            }
            const size_t avail = conn_->input_size();
            if (avail == 0) break;
            std::string_view v = conn_->peek(std::min(avail, kFeedMax));
            const size_t used = feed(v);
            conn_->drain(used);
            if (used == 0 && !engine_->has_output()) break;
        }
        if (conn_->at_eof() && !engine_->has_output()) {
            conn_->close();
            return;
        }
        // Idle until the next command: the answer went to the socket above
        // (write-through), so preparing the next RETR's answer now overlaps
        // with the proxy and the client handling this one.
        if (!engine_->has_output() && conn_->input_size() == 0 && conn_->output_size() == 0) {
            if (framed_)
                event::write_through(*conn_, framed_->idle());  // prefetches, then offers
            else
                engine_->prefetch();
        }
    }

    static void keep_alive_cb(evutil_socket_t, short, void* self) noexcept {
        auto* s = static_cast<Session*>(self);
        if (s->store_) s->store_->keep_alive();
        event_add(s->keep_alive_.get(), &kKeepAlive);
    }

    event_base* base_ = nullptr;
    std::string user_, client_, id_;
    std::unique_ptr<event::StreamConnection> conn_;
    std::unique_ptr<pop3::Store> store_;
    std::unique_ptr<EmptyStore> empty_;
    std::unique_ptr<pop3::SessionEngine> engine_;
    std::unique_ptr<pop3::FramedSession> framed_;
    EventPtr keep_alive_;
};

}  // namespace

int main(int argc, char** argv) {
    Session session;
    pbx::ServiceSpec spec{
        .name = "pop3d",
        .session = true,
        .post_drop = [&](pbx::ServiceContext& ctx) { return session.start(ctx); },
        .on_stop = [&](pbx::ServiceContext&) { session.stop(); },
    };
    return pbx::run_service(spec, argc, argv);
}
