// pop3_load: the lean POP3 load client of bench/pop3_retr.py (CLIENT=c).
//
// The Python client it replaces ran its parallel sessions as threads of one
// process, serialized by the GIL, and cost 29-47 us of CPU per RETR, about
// half of what either server costs, on the same 2 cores as the servers.
//
//   pop3_load --port P --password PW --users U1[,U2...] --expected FILE [--hold]
//
// One session per user, all at once, driven by one epoll loop in one thread
// (non-blocking sockets: no lock, no thread switch between sessions, and one
// wake-up serves every answer that has arrived). Each session: connect to
// 127.0.0.1:P (TCP_NODELAY), greeting, USER, PASS, STAT (must say as many
// messages as FILE holds), then RETR 1..N one command at a time (no
// pipelining: the next RETR is sent when the whole answer to the previous
// one is in), every answer compared byte for byte with "+OK ...\r\n"
// followed by the expected wire form of message i, then QUIT. Every reply
// other than +OK, a closed connection, no answer within 120 s, bytes nobody
// asked for or an answer that differs by one byte ends the program with exit
// status 1 and one line on stderr saying which user, which command and how.
//
// FILE: for each message 1..N, its length in decimal, "\n", then that many
// bytes: what RETR must send after its "+OK" line (CRLF line ends,
// dot-stuffed, ending in ".\r\n").
//
// --hold: once every session has had the answer to its last RETR, the
// sessions stay open and the program prints "HOLD" on stdout and waits for a
// line (or EOF) on stdin before sending the QUITs, so the caller can measure
// the server's session processes while they are open. The pause does not
// count in the times below.
//
// On stdout, one line per session, then one summary (times and CPU in
// microseconds):
//   session user=U retrs=N bytes=B session_us=T retr_us=T recvs=R
//   total sessions=S retrs=N wall_us=T retr_wall_us=T cpu_us=C rusage_us=C
//         user_us=C sys_us=C sleeps=V preempted=I
// session_us: connect() to the QUIT reply; retr_us: first RETR sent to last
// answer received; recvs: recv() calls in RETR answers; wall_us: the first
// connect() to the last QUIT reply; retr_wall_us: the first RETR sent to the
// last answer received, over all sessions; cpu_us: the loop's thread from
// before the first connect() to the last RETR answer (what the Python
// clients measured per session, summed); rusage_us: the whole process
// (getrusage, reading FILE included), user_us and sys_us its user and system
// parts (the system part is mostly loopback TCP and wake-ups, which any
// client pays); sleeps and preempted: the process's voluntary and
// involuntary context switches. Built by pop3_retr.py with g++; not part of
// the meson build.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Failure {
    std::string what;
};

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "pop3_load: %s\n", what.c_str());
    std::fflush(stderr);
    std::_Exit(1);
}

double thread_cpu_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

double us(Clock::duration d) {
    return std::chrono::duration<double, std::micro>(d).count();
}

std::string printable(std::string_view s, size_t max = 120) {
    std::string out;
    for (char c : s.substr(0, max)) {
        if (c == '\r')
            out += "\\r";
        else if (c == '\n')
            out += "\\n";
        else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            out += '?';
        else
            out += c;
    }
    if (s.size() > max) out += "...";
    return out;
}

// The expected answers, read once and shared read-only by every session (in
// place: msgs point into data).
struct Expected {
    std::string data;
    std::vector<std::string_view> msgs;
    size_t longest = 0;
};

void load_expected(const char* path, Expected& e) {
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) die(std::string("cannot read ") + path);
    e.data.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < e.data.size()) {
        ssize_t n = ::read(fd, e.data.data() + got, e.data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die(std::string("cannot read ") + path);
        got += static_cast<size_t>(n);
    }
    ::close(fd);
    std::string_view rest(e.data);
    while (!rest.empty()) {
        size_t nl = rest.find('\n');
        if (nl == std::string_view::npos || nl == 0 || nl > 12) die("bad expected file");
        size_t len = 0;
        for (char c : rest.substr(0, nl)) {
            if (c < '0' || c > '9') die("bad expected file");
            len = len * 10 + static_cast<size_t>(c - '0');
        }
        rest.remove_prefix(nl + 1);
        if (len > rest.size()) die("expected file truncated");
        e.msgs.push_back(rest.substr(0, len));
        e.longest = std::max(e.longest, len);
        rest.remove_prefix(len);
    }
    if (e.msgs.empty()) die("no messages in the expected file");
}

enum class State { Greeting, User, Pass, Stat, Retr, Held, Quit, Done };

const char* state_name(State st) {
    switch (st) {
        case State::Greeting:
            return "greeting";
        case State::User:
            return "USER";
        case State::Pass:
            return "PASS";
        case State::Stat:
            return "STAT";
        case State::Retr:
            return "RETR";
        case State::Held:
            return "held open";
        case State::Quit:
            return "QUIT";
        case State::Done:
            return "done";
    }
    return "?";
}

// One session: a state machine fed by the loop whenever its socket is
// readable. Throws Failure on anything but the expected answer.
class Session {
  public:
    Session(std::string user, const Expected& exp, const std::string& password)
        : user_(std::move(user)),
          exp_(exp),
          password_(password),
          buf_(exp.longest + (1 << 16) + 1024) {}
    ~Session() {
        if (fd_ >= 0) ::close(fd_);
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void connect(int port, int epfd, uint32_t index) {
        start = Clock::now();
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw Failure{"socket: " + std::string(std::strerror(errno))};
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            throw Failure{"connect: " + std::string(std::strerror(errno))};
        int one = 1;
        if (::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            throw Failure{"TCP_NODELAY: " + std::string(std::strerror(errno))};
        if (::fcntl(fd_, F_SETFL, O_NONBLOCK) != 0)
            throw Failure{"O_NONBLOCK: " + std::string(std::strerror(errno))};
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = index;
        if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd_, &ev) != 0)
            throw Failure{"epoll_ctl: " + std::string(std::strerror(errno))};
    }

    // The socket is readable: one recv(), then whatever the bytes complete.
    void readable() {
        ssize_t n;
        do n = ::recv(fd_, buf_.data() + len_, buf_.size() - len_, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            throw Failure{what() + ": recv: " + std::string(std::strerror(errno))};
        }
        if (n == 0) throw Failure{what() + ": connection closed by the server"};
        len_ += static_cast<size_t>(n);
        if (state == State::Retr) {
            ++recvs;
            retr_data();
            return;
        }
        if (state == State::Held || state == State::Done)
            throw Failure{what() +
                          ": unexpected bytes: " + printable(std::string_view(buf_.data(), len_))};
        std::string l;
        if (!line(l)) return;
        switch (state) {
            case State::Greeting:
                send("USER " + user_ + "\r\n");
                state = State::User;
                break;
            case State::User:
                send("PASS " + password_ + "\r\n");
                state = State::Pass;
                break;
            case State::Pass:
                send("STAT\r\n");
                state = State::Stat;
                break;
            case State::Stat: {
                size_t count = 0;
                if (std::sscanf(l.c_str(), "+OK %zu", &count) != 1 || count != exp_.msgs.size())
                    throw Failure{"STAT: \"" + printable(l) + "\", want " +
                                  std::to_string(exp_.msgs.size()) + " messages"};
                state = State::Retr;
                first_retr = Clock::now();
                send_retr();
                break;
            }
            case State::Quit:
                end = Clock::now();
                ::close(fd_);  // also leaves the epoll set
                fd_ = -1;
                state = State::Done;
                break;
            default:
                break;
        }
    }

    void quit() {
        send("QUIT\r\n");
        state = State::Quit;
    }

    std::string what() const {
        return state == State::Retr ? "RETR " + std::to_string(next_) : state_name(state);
    }
    const std::string& user() const { return user_; }

    State state = State::Greeting;
    size_t retrs = 0, bytes = 0, recvs = 0;
    Clock::time_point start, first_retr, last_answer, held, end;

  private:
    // Commands are a few bytes: a send() that does not take all of one at
    // once means the peer stopped reading, which is a failure here too.
    void send(std::string_view s) {
        ssize_t n;
        do n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n != static_cast<ssize_t>(s.size()))
            throw Failure{what() +
                          ": send: " + (n < 0 ? std::string(std::strerror(errno)) : "short write")};
    }

    void send_retr() {
        ++next_;
        status_ = std::string_view::npos;
        char cmd[32];
        int n = std::snprintf(cmd, sizeof cmd, "RETR %zu\r\n", next_);
        send(std::string_view(cmd, static_cast<size_t>(n)));
    }

    // A one-line reply, which must be +OK and all the server sent: nothing
    // may follow it (one command at a time). False while incomplete.
    bool line(std::string& out) {
        std::string_view got(buf_.data(), len_);
        size_t e = got.find("\r\n");
        if (e == std::string_view::npos) {
            if (len_ == buf_.size()) throw Failure{what() + ": reply line too long"};
            return false;
        }
        out.assign(got.substr(0, e));
        if (out.compare(0, 3, "+OK") != 0)
            throw Failure{what() + ": server said " + printable(out)};
        if (len_ != e + 2)
            throw Failure{what() +
                          ": unexpected bytes after the reply: " + printable(got.substr(e + 2))};
        len_ = 0;
        return true;
    }

    // RETR's answer must be exactly "+OK ...\r\n" followed by the expected
    // wire form. Complete when it has the status line and that many bytes,
    // or when the data ends in CRLF.CRLF before that (a short answer: the
    // terminator appears nowhere else in a dot-stuffed answer).
    void retr_data() {
        std::string_view want = exp_.msgs[next_ - 1];
        std::string_view got(buf_.data(), len_);
        if (status_ == std::string_view::npos) {
            size_t e = got.find("\r\n");
            if (e == std::string_view::npos) {
                if (len_ == buf_.size()) throw Failure{what() + ": status line too long"};
                return;
            }
            if (got.compare(0, 3, "+OK") != 0)
                throw Failure{what() + ": server said " + printable(got.substr(0, e))};
            status_ = e + 2;
        }
        std::string_view body = got.substr(status_);
        if (body.size() < want.size() && body != ".\r\n" &&
            !(body.size() >= 5 && body.substr(body.size() - 5) == "\r\n.\r\n")) {
            if (len_ == buf_.size()) throw Failure{what() + ": answer too long"};
            return;
        }
        if (body != want) {
            size_t k = 0;
            while (k < body.size() && k < want.size() && body[k] == want[k]) ++k;
            throw Failure{what() + ": answer not byte-exact: " + std::to_string(body.size()) +
                          " bytes after the +OK line, want " + std::to_string(want.size()) +
                          "; first difference at byte " + std::to_string(k) + ": got \"" +
                          printable(body.substr(k, 40)) + "\", want \"" +
                          printable(want.substr(k, 40)) + "\""};
        }
        bytes += body.size();
        ++retrs;
        len_ = 0;
        if (next_ < exp_.msgs.size()) {
            send_retr();
        } else {
            last_answer = held = Clock::now();
            state = State::Held;
        }
    }

    std::string user_;
    const Expected& exp_;
    const std::string& password_;
    int fd_ = -1;
    std::vector<char> buf_;
    size_t len_ = 0;
    size_t next_ = 0;                         // the RETR in flight
    size_t status_ = std::string_view::npos;  // its status line's size with CRLF
};

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: pop3_load --port P --password PW --users U1[,U2...] --expected FILE "
                 "[--hold]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    int port = 0;
    std::string password;
    std::vector<std::string> users;
    const char* expected = nullptr;
    bool hold = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--hold") {
            hold = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char* v = argv[++i];
        if (a == "--port") {
            port = std::atoi(v);
        } else if (a == "--password") {
            password = v;
        } else if (a == "--expected") {
            expected = v;
        } else if (a == "--users") {
            std::string_view s = v;
            while (!s.empty()) {
                size_t k = s.find(',');
                if (k != 0) users.emplace_back(s.substr(0, k));
                if (k == std::string_view::npos) break;
                s.remove_prefix(k + 1);
            }
        } else {
            usage();
        }
    }
    if (port <= 0 || port > 65535 || users.empty() || !expected) usage();
    Expected exp;
    load_expected(expected, exp);

    int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: " + std::string(std::strerror(errno)));
    std::vector<std::unique_ptr<Session>> sessions;
    for (const auto& u : users) sessions.push_back(std::make_unique<Session>(u, exp, password));

    const double cpu0 = thread_cpu_us();
    double cpu = 0;
    Session* cur = nullptr;
    Clock::time_point all_held, released;
    try {
        for (size_t i = 0; i < sessions.size(); ++i) {
            cur = sessions[i].get();
            cur->connect(port, epfd, static_cast<uint32_t>(i));
        }
        size_t held = 0, done = 0;
        bool quitting = false;
        std::vector<epoll_event> evs(sessions.size());
        while (done < sessions.size()) {
            int n = ::epoll_wait(epfd, evs.data(), static_cast<int>(evs.size()), 120000);
            if (n < 0) {
                if (errno == EINTR) continue;
                die("epoll_wait: " + std::string(std::strerror(errno)));
            }
            if (n == 0) {
                for (auto& s : sessions)
                    if (s->state != State::Held && s->state != State::Done) cur = s.get();
                throw Failure{cur->what() + ": no answer within 120 s"};
            }
            for (int k = 0; k < n; ++k) {
                cur = sessions[evs[static_cast<size_t>(k)].data.u32].get();
                State before = cur->state;
                cur->readable();
                if (before != State::Held && cur->state == State::Held) ++held;
                if (before != State::Done && cur->state == State::Done) ++done;
            }
            if (!quitting && held == sessions.size()) {
                cpu = thread_cpu_us() - cpu0;
                all_held = Clock::now();
                if (hold) {
                    std::fputs("HOLD\n", stdout);
                    std::fflush(stdout);
                    char line[64];
                    if (!std::fgets(line, sizeof line, stdin)) { /* EOF releases too */
                    }
                }
                released = Clock::now();
                quitting = true;
                for (auto& s : sessions) {
                    cur = s.get();
                    cur->quit();
                }
            }
        }
    } catch (const Failure& f) {
        die("user " + cur->user() + ": " + f.what);
    }

    Clock::time_point start = sessions[0]->start, end = sessions[0]->end;
    Clock::time_point first_retr = sessions[0]->first_retr;
    Clock::time_point last_answer = sessions[0]->last_answer;
    size_t retrs = 0;
    for (const auto& s : sessions) {
        start = std::min(start, s->start);
        end = std::max(end, s->end);
        first_retr = std::min(first_retr, s->first_retr);
        last_answer = std::max(last_answer, s->last_answer);
        retrs += s->retrs;
        std::printf("session user=%s retrs=%zu bytes=%zu session_us=%.1f retr_us=%.1f recvs=%zu\n",
                    s->user().c_str(), s->retrs, s->bytes,
                    us(s->end - s->start) - us(released - s->held),
                    us(s->last_answer - s->first_retr), s->recvs);
    }
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto tv_us = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
    };
    std::printf(
        "total sessions=%zu retrs=%zu wall_us=%.1f retr_wall_us=%.1f cpu_us=%.1f "
        "rusage_us=%.1f user_us=%.1f sys_us=%.1f sleeps=%ld preempted=%ld\n",
        sessions.size(), retrs, us(end - start) - us(released - all_held),
        us(last_answer - first_retr), cpu, tv_us(ru.ru_utime) + tv_us(ru.ru_stime),
        tv_us(ru.ru_utime), tv_us(ru.ru_stime), ru.ru_nvcsw, ru.ru_nivcsw);
    return 0;
}
