#include "tools/submit.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/ipc/channel.hpp"
#include "common/ipc/queue_msgs.hpp"
#include "common/spool/maildrop.hpp"
#include "common/unique_fd.hpp"
#include "tools/mail_input.hpp"

namespace pbx::mail {

namespace qp = ipc::queue;

ipc::Message make_begin(const Submission& s) {
    ipc::Message m = ipc::Message::named(qp::kProtocol, "begin");
    // origin and protocol are what the queue-manager records for root; for
    // any other uid it sets them itself from SO_PEERCRED.
    m.set_str("origin", "sendmail");
    m.set_str("sender", s.sender);
    m.set_str("protocol", "local");
    if (!s.body.empty()) m.set_str("body", s.body);
    if (s.smtputf8) m.set_u64("smtputf8", 1);
    m.set_u64("size_declared", s.message.size());
    if (!s.ret.empty()) m.set_str("ret", s.ret);
    if (!s.envid.empty()) m.set_str("envid", s.envid);
    return m;
}

ipc::Message make_rcpt(const Recipient& r) {
    ipc::Message m = ipc::Message::named(qp::kProtocol, "rcpt");
    m.set_str("address", r.address);
    if (r.notify != 0) m.set_u64("notify", r.notify);
    if (!r.orcpt.empty()) m.set_str("orcpt", r.orcpt);
    return m;
}

void ensure_std_fds() {
    for (int fd = 0; fd < 3; ++fd) {
        if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        int n = ::open("/dev/null", O_RDWR);
        if (n != fd) std::_Exit(kExOsErr);
    }
}

SubmitResult submit_to_queue(const std::string& socket_path, const Submission& s,
                             const Timeouts& t) {
    auto unreachable = [](std::string why) {
        return SubmitResult{Outcome::Unreachable, std::move(why)};
    };
    auto fd = ipc::connect_unix(socket_path);
    if (!fd) return unreachable(fd.error().message);
    if (auto h = ipc::handshake(fd->get(), qp::kProtocol, t.handshake); !h)
        return unreachable(h.error().text);

    // Any transport failure from here on is also "unreachable": the message
    // then goes to maildrop/. Were the queue-manager to die between its
    // commit and its reply, the message would be queued twice; a duplicate
    // is the lesser evil next to a lost message.
    auto send = [&](const ipc::Message& m) { return ipc::send_frame(fd->get(), m, t.send); };
    if (auto r = send(make_begin(s)); !r) return unreachable(r.error().text);
    for (const Recipient& rcpt : s.recipients)
        if (auto r = send(make_rcpt(rcpt)); !r) return unreachable(r.error().text);
    std::string_view rest = s.message;
    while (!rest.empty()) {
        size_t n = std::min(rest.size(), qp::kMaxChunk);
        ipc::Message d = ipc::Message::named(qp::kProtocol, "data");
        d.set_bytes("bytes", rest.substr(0, n));
        if (auto r = send(d); !r) return unreachable(r.error().text);
        rest.remove_prefix(n);
    }
    if (auto r = send(ipc::Message::named(qp::kProtocol, "commit")); !r)
        return unreachable(r.error().text);
    auto reply = ipc::recv_frame(fd->get(), qp::kProtocol, t.reply);
    if (!reply) return unreachable("no reply: " + reply.error().text);
    if (reply->name() == "queued")
        return {Outcome::Queued, std::string(reply->get_str("queue_id").value_or(""))};
    if (reply->name() == "failed") {
        bool temp = reply->get_u64("temporary").value_or(1) != 0;
        return {temp ? Outcome::TempFail : Outcome::PermFail,
                std::string(reply->get_str("text").value_or(""))};
    }
    return {Outcome::TempFail, "unexpected reply '" + std::string(reply->name()) + "'"};
}

AdminResult admin_request(const std::string& socket_path, std::string_view op, const Timeouts& t) {
    AdminResult out;
    auto fd = ipc::connect_unix(socket_path);
    if (!fd) {
        out.text = fd.error().message;
        return out;
    }
    if (auto h = ipc::handshake(fd->get(), qp::kProtocol, t.handshake); !h) {
        out.text = h.error().text;
        return out;
    }
    ipc::Message m = ipc::Message::named(qp::kProtocol, "admin");
    m.set_str("op", op);
    if (auto r = ipc::send_frame(fd->get(), m, t.send); !r) {
        out.text = r.error().text;
        return out;
    }
    auto reply = ipc::recv_frame(fd->get(), qp::kProtocol, t.reply);
    if (!reply) {
        out.text = "no reply: " + reply.error().text;
        return out;
    }
    out.reachable = true;
    if (reply->name() != "admin_reply") {
        out.text = "unexpected reply '" + std::string(reply->name()) + "'";
        return out;
    }
    out.ok = reply->get_u64("ok").value_or(0) == 1;
    out.text = std::string(reply->get_str("text").value_or(""));
    return out;
}

int exit_code_for_refusal(bool temporary, std::string_view text) {
    if (temporary) return kExTempFail;
    if (text.starts_with("5.1.")) return kExNoUser;
    if (text.starts_with("5.3.4") || text.starts_with("5.2.3")) return kExDataErr;
    if (text.starts_with("5.7.")) return kExNoPerm;
    return kExUnavailable;
}

Result<std::string> make_maildrop_input(const Submission& s, uint32_t uid, std::time_t now,
                                        uint64_t max_message_size) {
    spool::Maildrop d;
    d.uid = uid;
    d.time = spool::Seconds(std::chrono::seconds(now));
    d.sender = s.sender;
    for (const Recipient& r : s.recipients) d.recipients.push_back(r.address);
    d.message = s.message;
    spool::MaildropLimits limits;
    limits.max_message_size = max_message_size;
    auto w = spool::write_maildrop(d, limits);
    if (!w) return fail(w.error().to_string());
    return std::move(*w);
}

Result<std::string> rewrite_maildrop_input(std::string_view input, uint32_t uid, std::time_t now,
                                           uint64_t max_message_size) {
    spool::MaildropLimits limits;
    limits.max_message_size = max_message_size;
    auto d = spool::read_maildrop(input, limits);
    if (!d) return fail(d.error().to_string());
    d->uid = uid;
    d->time = spool::Seconds(std::chrono::seconds(now));
    auto w = spool::write_maildrop(*d, limits);
    if (!w) return fail(w.error().to_string());
    return std::move(*w);
}

namespace {

// SIGPIPE ignored for the lifetime of the object: postdrop may exit early
// (bad configuration) and the write must then fail with EPIPE, not kill us.
class IgnoreSigpipe {
  public:
    IgnoreSigpipe() {
        struct sigaction sa {};
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, &old_);
    }
    ~IgnoreSigpipe() { sigaction(SIGPIPE, &old_, nullptr); }
    IgnoreSigpipe(const IgnoreSigpipe&) = delete;
    IgnoreSigpipe& operator=(const IgnoreSigpipe&) = delete;

  private:
    struct sigaction old_ {};
};

}  // namespace

DropResult run_postdrop(const std::string& program, const std::string& config_path,
                        std::string_view input) {
    DropResult out;
    int data[2], status_pipe[2];
    if (::pipe2(data, O_CLOEXEC) != 0) {
        out.error = std::string("pipe: ") + std::strerror(errno);
        return out;
    }
    UniqueFd data_r(data[0]), data_w(data[1]);
    // Tells the parent why execve() failed: closed unread (CLOEXEC) on success.
    if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
        out.error = std::string("pipe: ") + std::strerror(errno);
        return out;
    }
    UniqueFd status_r(status_pipe[0]), status_w(status_pipe[1]);

    std::vector<std::string> args = {program};
    if (!config_path.empty()) args.insert(args.end(), {"-c", config_path});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    char* envp[] = {nullptr};

    IgnoreSigpipe guard;
    pid_t pid = ::fork();
    if (pid < 0) {
        out.error = std::string("fork: ") + std::strerror(errno);
        return out;
    }
    if (pid == 0) {
        if (::dup2(data_r.get(), 0) < 0) _exit(kExOsErr);
        ::execve(program.c_str(), argv.data(), envp);
        int e = errno;
        ssize_t ignored = ::write(status_w.get(), &e, sizeof e);
        (void)ignored;
        _exit(kExUnavailable);
    }
    data_r.reset();
    status_w.reset();

    int write_errno = 0;
    while (!input.empty()) {
        ssize_t n = ::write(data_w.get(), input.data(), input.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            write_errno = errno;  // postdrop stopped reading; its status says why
            break;
        }
        input.remove_prefix(static_cast<size_t>(n));
    }
    data_w.reset();

    int exec_errno = 0;
    ssize_t got;
    do {
        got = ::read(status_r.get(), &exec_errno, sizeof exec_errno);
    } while (got < 0 && errno == EINTR);

    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            out.error = std::string("waitpid: ") + std::strerror(errno);
            return out;
        }
    }
    if (got == static_cast<ssize_t>(sizeof exec_errno)) {
        out.error = "cannot run " + program + ": " + std::strerror(exec_errno);
        return out;
    }
    if (WIFSIGNALED(status)) {
        out.error = program + " was killed by signal " + std::to_string(WTERMSIG(status));
        return out;
    }
    out.exit_status = WEXITSTATUS(status);
    if (out.exit_status == 0 && write_errno != 0) {
        // It cannot have stored a message it did not read in full.
        out.exit_status = DropResult::kExitNotRun;
        out.error = std::string("writing to ") + program + ": " + std::strerror(write_errno);
    }
    return out;
}

}  // namespace pbx::mail
