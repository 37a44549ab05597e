#include "local-delivery/pipe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>

#include "common/unique_fd.hpp"

namespace pbx::local {
namespace {

using Clock = std::chrono::steady_clock;

std::string env_value(std::string_view v) {
    size_t nul = v.find('\0');
    return std::string(nul == std::string_view::npos ? v : v.substr(0, nul));
}

bool write_all_fd(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// In the forked child: never returns.
[[noreturn]] void exec_command(const PipeSpec& spec, int in, int out) {
    (void)setsid();
    // Signal state is inherited across exec for ignored signals and the mask.
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2})
        (void)signal(sig, SIG_DFL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) _exit(75);
    (void)close_range(3, UINT_MAX, 0);
    if (spec.cwd.empty() || chdir(spec.cwd.c_str()) != 0) (void)!chdir("/");
    std::vector<char*> argv{const_cast<char*>("sh"), const_cast<char*>("-c"),
                            const_cast<char*>(spec.command.c_str()), nullptr};
    std::vector<char*> envp;
    for (const std::string& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execve(spec.shell.c_str(), argv.data(), envp.data());
    static const char msg[] = "cannot run the shell\n";
    (void)!::write(2, msg, sizeof msg - 1);
    _exit(75);  // no shell: an administrator can fix that; try again later
}

}  // namespace

std::vector<std::string> pipe_environment(const PipeEnv& e) {
    std::string_view rcpt = e.recipient;
    size_t at = rcpt.rfind('@');
    std::string_view local = at == std::string_view::npos ? rcpt : rcpt.substr(0, at);
    std::string_view domain = at == std::string_view::npos ? "" : rcpt.substr(at + 1);
    std::string_view extension;
    if (!e.recipient_delimiter.empty()) {
        size_t cut = local.find_first_of(e.recipient_delimiter);
        if (cut != std::string_view::npos && cut > 0) extension = local.substr(cut + 1);
    }
    return {
        "SENDER=" + env_value(e.sender),
        "RECIPIENT=" + env_value(e.recipient),
        "LOCAL=" + env_value(local),
        "EXTENSION=" + env_value(extension),
        "DOMAIN=" + env_value(domain),
        "USER=" + env_value(e.user),
        "LOGNAME=" + env_value(e.user),
        "HOME=" + env_value(e.home),
        "SHELL=/bin/sh",
        "PATH=/usr/bin:/bin",
    };
}

PipeResult run_pipe(const PipeSpec& spec) {
    PipeResult r;
    auto not_started = [&](std::string what) {
        r.end = PipeResult::End::NotStarted;
        r.error = what + ": " + std::strerror(errno);
        return r;
    };
    UniqueFd in(memfd_create("pbx-message", MFD_CLOEXEC));
    if (!in) return not_started("memfd_create");
    if (!write_all_fd(in.get(), spec.input)) return not_started("write of the message");
    if (lseek(in.get(), 0, SEEK_SET) != 0) return not_started("lseek");
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return not_started("pipe");
    UniqueFd rd(p[0]), wr(p[1]);
    pid_t pid = fork();
    if (pid < 0) return not_started("fork");
    if (pid == 0) exec_command(spec, in.get(), wr.get());
    wr.reset();
    in.reset();
    (void)fcntl(rd.get(), F_SETFL, O_NONBLOCK);

    const auto deadline = Clock::now() + spec.time_limit;
    constexpr auto kGrace = std::chrono::milliseconds(200);
    std::optional<Clock::time_point> exited_at;
    int wstatus = 0;
    bool eof = false, timed_out = false;
    char buf[8192];
    for (;;) {
        if (!exited_at) {
            pid_t w = waitpid(pid, &wstatus, WNOHANG);
            if (w == pid) exited_at = Clock::now();
            if (w < 0 && errno == ECHILD) {  // reaped elsewhere (SIGCHLD ignored)
                wstatus = 0xff00;            // reported as exit status 255
                exited_at = Clock::now();
            }
        }
        if (eof && exited_at) break;
        auto now = Clock::now();
        if (exited_at && now >= *exited_at + kGrace) break;  // a background process holds the pipe
        if (!exited_at && now >= deadline) {
            timed_out = true;
            break;
        }
        int wait_ms = 50;  // waitpid is polled: no SIGCHLD handler in this process
        if (!eof) {
            struct pollfd pfd {
                rd.get(), POLLIN, 0
            };
            int n = poll(&pfd, 1, wait_ms);
            if (n < 0 && errno != EINTR) eof = true;
            if (n > 0) {
                for (;;) {
                    ssize_t got = ::read(rd.get(), buf, sizeof buf);
                    if (got > 0) {
                        size_t room = spec.output_limit > r.output.size()
                                          ? spec.output_limit - r.output.size()
                                          : 0;
                        r.output.append(buf, std::min(room, static_cast<size_t>(got)));
                        continue;
                    }
                    if (got < 0 && errno == EINTR) continue;
                    if (got == 0 || errno != EAGAIN) eof = true;
                    break;
                }
            }
        } else {
            usleep(static_cast<useconds_t>(wait_ms) * 1000);
        }
    }
    if (timed_out) {
        (void)kill(-pid, SIGKILL);
        (void)kill(pid, SIGKILL);
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
        }
        r.end = PipeResult::End::TimedOut;
        return r;
    }
    if (WIFEXITED(wstatus)) {
        r.end = PipeResult::End::Exited;
        r.code = WEXITSTATUS(wstatus);
    } else {
        r.end = PipeResult::End::Signaled;
        r.code = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    }
    return r;
}

std::string one_line(std::string_view text, size_t max) {
    std::string out;
    bool space = false;
    for (char c : text) {
        unsigned char u = static_cast<unsigned char>(c);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = !out.empty();
            continue;
        }
        if (space) {
            if (out.size() + 1 >= max) break;
            out += ' ';
            space = false;
        }
        if (out.size() >= max) break;
        out += (u < 0x20 || u >= 0x7f) ? '?' : c;
    }
    if (out.size() > max) out.resize(max);
    return out;
}

Outcome pipe_outcome(const PipeResult& r, std::chrono::milliseconds time_limit) {
    constexpr size_t kShown = 300;  // bytes of output in the reply
    std::string out = one_line(r.output, kShown);
    auto with_output = [&](std::string text) {
        if (!out.empty()) text += ": " + out;
        return text;
    };
    switch (r.end) {
        case PipeResult::End::NotStarted:
            return {Verdict::Deferred, "4.3.0", "cannot run the command: " + r.error};
        case PipeResult::End::TimedOut:
            return {Verdict::Failed, "5.3.0",
                    with_output("command killed after the time limit of " +
                                std::to_string(time_limit.count() / 1000) + "s")};
        case PipeResult::End::Signaled:
            return {Verdict::Failed, "5.3.0",
                    with_output("command killed by signal " + std::to_string(r.code))};
        case PipeResult::End::Exited:
            break;
    }
    if (r.code == 0) return {Verdict::Sent, "2.0.0", "delivered to command"};
    if (r.code == 75)
        return {Verdict::Deferred, "4.3.0", with_output("command deferred delivery (exit 75)")};
    return {Verdict::Failed, "5.3.0",
            with_output("command failed with exit status " + std::to_string(r.code))};
}

}  // namespace pbx::local
