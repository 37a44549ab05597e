// imap_load: the lean load generator of bench/imap_mixed.py.
//
// One thread per client, blocking sockets, commands built once, responses
// parsed only as far as needed: lines, literals ({N} skipped by count), the
// tagged reply, and the few checks the mix needs (EXISTS, FETCH line count,
// BODY[], * SEARCH, APPENDUID). The same program drives both servers, so
// the ratio measures the servers and not the client (the Python client it
// replaces took about as much CPU as both servers on 2 cores).
//
//   imap_load PORT SECONDS N USER... [-w]
//
// Each client (one USER each) loops over LOGIN, SELECT INBOX, FETCH 20
// (FLAGS RFC822.SIZE ENVELOPE), FETCH 1 BODY.PEEK[], STORE +FLAGS (\Seen),
// STORE -FLAGS (\Seen), SEARCH UNSEEN, SEARCH SUBJECT, APPEND, UID STORE
// +FLAGS.SILENT (\Deleted) of the appended message, EXPUNGE, LOGOUT until
// SECONDS have passed (-w: exactly one loop per user, for warm-up). Any
// tagged reply other than OK, and any failed check, is an error: the loop
// ends there, the error is counted and the client starts a new loop after
// 100 ms. On stdout, one line:
//   cmds LOOPS_CMDS loops LOOPS errors ERRORS elapsed SECONDS cpu CPU_SECONDS
// and the first errors on stderr. Built by imap_mixed.py with g++ -O2;
// not part of the meson build.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr char kPassword[] = "pw";
using Clock = std::chrono::steady_clock;

struct Failure {
    std::string what;
};

class Conn {
  public:
    explicit Conn(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw Failure{"socket: " + std::string(strerror(errno))};
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            throw Failure{"connect: " + std::string(strerror(errno))};
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval tv{120, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string_view g = line();
        if (g.substr(0, 4) != "* OK") throw Failure{"greeting: " + std::string(g.substr(0, 200))};
    }
    ~Conn() { ::close(fd_); }
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    void send(std::string_view s) {
        while (!s.empty()) {
            ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                throw Failure{"send: " + std::string(strerror(errno))};
            }
            s.remove_prefix(static_cast<size_t>(n));
        }
    }

    // One protocol line without CRLF, literals folded in (their bytes are
    // skipped, replaced by "{N}"); valid until the next call.
    std::string_view line() {
        cur_.clear();
        for (;;) {
            size_t i = buf_.find("\r\n", pos_);
            while (i == std::string::npos) {
                fill();
                i = buf_.find("\r\n", pos_);
            }
            std::string_view l(buf_.data() + pos_, i - pos_);
            pos_ = i + 2;
            cur_.append(l);
            size_t n = literal_size(l);
            if (n == kNoLiteral) return cur_;
            while (buf_.size() - pos_ < n) {
                n -= buf_.size() - pos_;
                pos_ = buf_.size();
                fill();
            }
            pos_ += n;
        }
    }

    // Sends TAG + " " + cmd + CRLF and reads the response; the untagged
    // lines go to lines (if given). Returns the tagged line; a non-OK one
    // is an error.
    std::string cmd(std::string_view text, std::vector<std::string>* lines = nullptr,
                    std::string_view literal = {}) {
        std::string tag = "t" + std::to_string(++n_);
        std::string out = tag + " ";
        out.append(text);
        if (!literal.empty()) {
            out += " {" + std::to_string(literal.size()) + "}\r\n";
            send(out);
            std::string_view c = line();
            if (c.empty() || c[0] != '+')
                throw Failure{"no continuation: " + std::string(c.substr(0, 200))};
            out.assign(literal);
        }
        out += "\r\n";
        send(out);
        return response(tag, lines);
    }

  private:
    static constexpr size_t kNoLiteral = static_cast<size_t>(-1);

    static size_t literal_size(std::string_view l) {
        if (l.empty() || l.back() != '}') return kNoLiteral;
        size_t open = l.rfind('{');
        if (open == std::string_view::npos || open + 2 > l.size() - 1) return kNoLiteral;
        size_t n = 0;
        for (char c : l.substr(open + 1, l.size() - open - 2)) {
            if (c < '0' || c > '9') return kNoLiteral;
            n = n * 10 + static_cast<size_t>(c - '0');
        }
        return n;
    }

    void fill() {
        if (pos_ > 0 && pos_ == buf_.size()) {
            buf_.clear();
            pos_ = 0;
        } else if (pos_ > (1 << 16)) {
            buf_.erase(0, pos_);
            pos_ = 0;
        }
        char tmp[1 << 16];
        ssize_t n;
        do n = ::recv(fd_, tmp, sizeof tmp, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0) throw Failure{"recv: " + std::string(strerror(errno))};
        if (n == 0) throw Failure{"connection closed"};
        buf_.append(tmp, static_cast<size_t>(n));
    }

    std::string response(const std::string& tag, std::vector<std::string>* lines) {
        if (lines) lines->clear();
        for (;;) {
            std::string_view l = line();
            if (l.size() > tag.size() && l.substr(0, tag.size()) == tag && l[tag.size()] == ' ') {
                std::string_view rest = l.substr(tag.size() + 1);
                if (rest.substr(0, 2) != "OK")
                    throw Failure{"tagged: " + std::string(l.substr(0, 300))};
                return std::string(l);
            }
            if (lines) lines->emplace_back(l);
        }
    }

    int fd_ = -1;
    std::string buf_;
    size_t pos_ = 0;
    std::string cur_;
    unsigned n_ = 0;
};

struct Shared {
    int port;
    unsigned n;
    Clock::time_point stop_at;
    bool once;
    std::atomic<unsigned> appended{0};
    std::atomic<unsigned long> cmds{0};
    std::atomic<unsigned long> loops{0};
    std::atomic<unsigned long> errors{0};
    std::mutex mu;
    std::vector<std::string> error_texts;
};

std::string new_message(unsigned i) {
    std::string m =
        "From: Client <client@example.net>\r\nTo: alice@example.test\r\nSubject: appended " +
        std::to_string(i) + "\r\nDate: Wed, 2 Feb 2022 11:00:00 +0100\r\nMessage-ID: <a" +
        std::to_string(i) + "@example.net>\r\n\r\n";
    std::string body = "Appended line " + std::to_string(i) + ", a short body.\r\n";
    for (int k = 0; k < 30; ++k) m += body;
    return m;
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

// One pass of the mix; adds the commands answered OK to done.
void one_loop(Shared& sh, const std::string& login, std::mt19937& rnd, unsigned& done) {
    Conn c(sh.port);
    std::vector<std::string> lines;
    c.cmd(login);
    ++done;
    c.cmd("SELECT INBOX", &lines);
    ++done;
    unsigned exists = 0;
    for (const auto& l : lines) {
        unsigned v;
        char word[8];
        if (std::sscanf(l.c_str(), "* %u %7s", &v, word) == 2 && std::strcmp(word, "EXISTS") == 0)
            exists = v;
    }
    if (exists < sh.n || exists < 20)
        throw Failure{std::to_string(exists) + " messages, expected " + std::to_string(sh.n)};
    unsigned k = std::uniform_int_distribution<unsigned>(1, exists - 19)(rnd);
    c.cmd("FETCH " + std::to_string(k) + ":" + std::to_string(k + 19) +
              " (FLAGS RFC822.SIZE ENVELOPE)",
          &lines);
    if (lines.size() != 20)
        throw Failure{"FETCH answered " + std::to_string(lines.size()) + " lines"};
    ++done;
    std::string j = std::to_string(std::uniform_int_distribution<unsigned>(1, exists)(rnd));
    c.cmd("FETCH " + j + " BODY.PEEK[]", &lines);
    if (lines.empty() || lines[0].find("BODY[]") == std::string::npos)
        throw Failure{"FETCH BODY.PEEK[]: no BODY[]"};
    ++done;
    c.cmd("STORE " + j + " +FLAGS (\\Seen)");
    ++done;
    c.cmd("STORE " + j + " -FLAGS (\\Seen)");
    ++done;
    auto has_search = [&] {
        for (const auto& l : lines)
            if (starts_with(l, "* SEARCH")) return true;
        return false;
    };
    c.cmd("SEARCH UNSEEN", &lines);
    if (!has_search()) throw Failure{"no SEARCH answer"};
    ++done;
    unsigned subj = std::uniform_int_distribution<unsigned>(0, sh.n ? sh.n - 1 : 0)(rnd);
    c.cmd("SEARCH SUBJECT \"number " + std::to_string(subj) + "\"", &lines);
    if (!has_search()) throw Failure{"no SEARCH answer"};
    ++done;
    std::string ok = c.cmd("APPEND INBOX (\\Seen)", nullptr, new_message(++sh.appended));
    size_t a = ok.find("[APPENDUID ");
    unsigned uidv = 0, uid = 0;
    if (a == std::string::npos ||
        std::sscanf(ok.c_str() + a, "[APPENDUID %u %u]", &uidv, &uid) != 2)
        throw Failure{"APPEND without APPENDUID: " + ok};
    ++done;
    c.cmd("UID STORE " + std::to_string(uid) + " +FLAGS.SILENT (\\Deleted)");
    ++done;
    c.cmd("EXPUNGE");
    ++done;
    c.cmd("LOGOUT");
    ++done;
}

void client(Shared& sh, std::string user, unsigned seed) {
    std::mt19937 rnd(seed);
    std::string login = "LOGIN " + user + " \"" + kPassword + "\"";
    do {
        unsigned done = 0;
        try {
            one_loop(sh, login, rnd, done);
            sh.cmds += done;
            ++sh.loops;
        } catch (const Failure& f) {
            sh.cmds += done;
            ++sh.errors;
            std::lock_guard<std::mutex> g(sh.mu);
            if (sh.error_texts.size() < 20) sh.error_texts.push_back(user + ": " + f.what);
            if (!sh.once) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    } while (!sh.once && Clock::now() < sh.stop_at);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> users;
    bool once = false;
    for (int i = 4; i < argc; ++i) {
        if (std::strcmp(argv[i], "-w") == 0)
            once = true;
        else
            users.emplace_back(argv[i]);
    }
    if (argc < 5 || users.empty()) {
        std::fprintf(stderr, "usage: imap_load PORT SECONDS N USER... [-w]\n");
        return 2;
    }
    Shared sh;
    sh.port = std::atoi(argv[1]);
    double seconds = std::atof(argv[2]);
    sh.n = static_cast<unsigned>(std::atoi(argv[3]));
    sh.once = once;
    // Subjects of the appended messages differ between runs and servers.
    sh.appended = static_cast<unsigned>(getpid()) * 1000u;
    auto t0 = Clock::now();
    sh.stop_at =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < users.size(); ++i)
        threads.emplace_back(client, std::ref(sh), users[i], static_cast<unsigned>(i));
    for (auto& t : threads) t.join();
    double el = std::chrono::duration<double>(Clock::now() - t0).count();
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::printf("cmds %lu loops %lu errors %lu elapsed %.3f cpu %.3f\n", sh.cmds.load(),
                sh.loops.load(), sh.errors.load(), el, cpu);
    for (const auto& e : sh.error_texts) std::fprintf(stderr, "error: %s\n", e.c_str());
    return 0;
}
