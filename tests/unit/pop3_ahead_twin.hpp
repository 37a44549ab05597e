// The twin-engine check of reply-ahead, shared by tests/unit/test_pop3_ahead.cpp
// (random scripts from seeds) and fuzz/fuzz_pop3_ahead.cpp (scripts and
// interleavings from the fuzzer's bytes).
//
// One client script (POP3 command bytes after login) goes
//   (a) through pop3::SessionEngine alone, fed the whole script, and
//   (b) through the login process's ReplyAhead and pop3d's FramedSession +
//       SessionEngine, the two pipes between them (login → pop3d raw bytes,
//       pop3d → login frames) delivered in pieces of random size, the
//       client's bytes arriving in pieces of random size, and every step
//       (client sends, a pipe delivers, pop3d runs its loop, now and then
//       the login's timer passes the taken lines it holds back on) in a
//       random order; then everything is let run to the end.
// The client must receive the very same bytes both ways. pop3d's loop here
// is session_main.cpp's pump() with strings for sockets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/ipc/proxy_msgs.hpp"
#include "common/login/reply_ahead.hpp"
#include "pop3d/framed_session.hpp"
#include "pop3d/session_engine.hpp"
#include "pop3d/store.hpp"

namespace pbx::pop3::twin {

struct TwinStore : Store {
    std::vector<std::string> texts;
    std::vector<MessageInfo> infos;
    explicit TwinStore(std::vector<std::string> t) : texts(std::move(t)) {
        for (size_t i = 0; i < texts.size(); ++i)
            infos.push_back({crlf_size(texts[i]), "uid" + std::to_string(i + 1)});
    }
    const std::vector<MessageInfo>& messages() const override { return infos; }
    Result<std::string> content(size_t i) override { return texts.at(i); }
    Status commit(const std::vector<bool>&) override { return {}; }
};

// A mailbox with small messages, dots to stuff, a message without a final
// line end, an empty one and one whose answer is over the offer limit.
inline std::vector<std::string> mailbox() {
    return {"Subject: one\n\nhello\n.dot line\n..two dots\n",
            "Subject: two\r\n\r\nbody\r\nline 2\r\n",
            "Subject: three\n\nno final newline",
            "",
            "Subject: big\n\n" + std::string(20000, 'x') + "\n.\n",
            "Subject: six\n\nsix\n",
            "Subject: seven\n\n.\n..\n...\n"};
}

// pick(n): a number in [0, n) (n >= 1).
using Pick = std::function<size_t(size_t)>;

// A random script of `commands` command lines, biased towards what a
// fetching client does (RETR n, RETR n+1, ...) so that offers are made and
// taken, with the variants that must not be answered ahead.
inline std::string make_script(const Pick& pick, size_t commands, size_t messages) {
    std::string s;
    size_t next = 1;
    auto num = [&] { return std::to_string(pick(messages + 2)); };  // 0 .. n+1
    for (size_t i = 0; i < commands; ++i) {
        const std::string n = std::to_string(next);
        switch (pick(20)) {
            case 0:
            case 1:
            case 2:
            case 3:
            case 4:
            case 5:
                s += "RETR " + n + "\r\n";
                ++next;
                break;
            case 6:
                s += "retr " + n + "\r\n";
                ++next;
                break;
            case 7:
                s += "RETR  " + n + "\r\n";
                ++next;
                break;
            case 8:
                s += "RETR " + n + "\n";
                ++next;
                break;
            case 9:
                s += "RETR " + num() + "\r\n";
                break;
            case 10:
                s += "DELE " + n + "\r\n";
                break;
            case 11:
                s += "TOP " + num() + " " + std::to_string(pick(3)) + "\r\n";
                break;
            case 12:
                s += "RSET\r\n";
                break;
            case 13:
                s += "NOOP\r\n";
                break;
            case 14:
                s += "XYZZY\r\n";
                break;
            case 15:
                s += "LIST\r\nUIDL " + num() + "\r\n";
                break;
            case 16:
                s += "RETR " + n + " \r\n";
                ++next;
                break;
            case 17:
                s += "RETR 0" + n + "\r\n";
                ++next;
                break;
            case 18:
                s += "STAT\r\n";
                break;
            case 19:
                if (pick(8) == 0) {
                    s += "QUIT\r\n";
                } else {
                    next = 1 + pick(messages + 1);
                    s += "RETR " + std::to_string(next) + "\r\n";
                    ++next;
                }
                break;
        }
    }
    return s;
}

// (a): the engine alone.
inline std::string run_plain(Store& store, std::string_view script, SessionLimits limits) {
    SessionEngine e(store, limits);
    e.start();
    std::string out;
    size_t pos = 0;
    for (;;) {
        while (e.has_output()) out += e.take_output(64 * 1024);
        if (e.closed() || pos >= script.size()) break;
        const size_t n = e.feed(script.substr(pos));
        pos += n;
        if (n == 0 && !e.has_output()) break;
    }
    return out;
}

struct AheadResult {
    std::string client;  // what the client received
    std::string error;   // the login's error, if a frame was refused
    uint64_t answered_by_login = 0;
    uint64_t skipped_by_pop3d = 0;
};

// (b): login + pop3d, interleaved by `pick`, at most `steps` random steps
// before everything is run to the end in a fixed order.
inline AheadResult run_ahead(Store& store, std::string_view script, SessionLimits limits,
                             const Pick& pick, size_t steps) {
    SessionEngine engine(store, limits);
    FramedSession framed(engine);
    login::ReplyAhead login;
    AheadResult r;
    std::string l2s, s2l, pop3d_in;
    size_t cpos = 0;
    bool pop3d_closed = false;
    s2l += FramedSession::hello();
    engine.start();

    auto collect = [&] {
        r.client += login.to_client();
        login.to_client().clear();
        l2s += login.to_session();
        login.to_session().clear();
    };
    // pop3d's loop (session_main.cpp, pump()); true if it did something.
    auto pop3d = [&](size_t chunk) {
        if (pop3d_closed) return false;
        const size_t sent = s2l.size();
        const uint64_t consumed = framed.consumed();
        for (;;) {
            while (engine.has_output()) s2l += framed.take_frame(chunk);
            if (engine.closed()) {
                pop3d_closed = true;
                return true;
            }
            if (pop3d_in.empty()) break;
            const size_t used = framed.feed(pop3d_in);
            pop3d_in.erase(0, used);
            if (used == 0 && !engine.has_output()) break;
        }
        if (!engine.has_output() && pop3d_in.empty()) s2l += framed.idle();
        return s2l.size() != sent || framed.consumed() != consumed;
    };
    auto client_send = [&](size_t k) {
        if (cpos >= script.size()) return false;
        const size_t n = login.from_client(script.substr(cpos, k));
        cpos += n;
        collect();
        return n > 0;
    };
    auto to_pop3d = [&](size_t k) {
        if (l2s.empty() || pop3d_closed) return false;
        k = std::min(k, l2s.size());
        pop3d_in += l2s.substr(0, k);
        l2s.erase(0, k);
        return true;
    };
    auto to_login = [&](size_t k) {
        if (s2l.empty()) return false;
        k = std::min(k, s2l.size());
        const bool ok = login.from_session(std::string_view(s2l).substr(0, k));
        s2l.erase(0, k);
        collect();
        if (!ok) r.error = login.error();
        return true;
    };
    // The login's timer: taken lines it held back go on.
    auto timer = [&] {
        if (login.taken_held() == 0) return false;
        login.release_taken();
        collect();
        return true;
    };
    auto size = [&](size_t max) { return pick(4) == 0 ? 1 + pick(max) : 1 + pick(8); };

    for (size_t i = 0; i < steps && r.error.empty(); ++i) {
        if (pick(64) == 0) {
            timer();
            continue;
        }
        switch (pick(4)) {
            case 0:
                client_send(size(64));
                break;
            case 1:
                to_pop3d(size(64));
                break;
            case 2:
                pop3d(pick(4) == 0 ? 1 + pick(100) : 64 * 1024);
                break;
            case 3:
                to_login(size(40000));
                break;
        }
    }
    for (bool progress = true; progress && r.error.empty();) {
        progress = false;
        progress |= client_send(script.size());
        progress |= to_pop3d(l2s.size());
        progress |= pop3d(64 * 1024);
        progress |= to_login(s2l.size());
        if (!progress) progress |= timer();
    }
    r.answered_by_login = login.answered();
    r.skipped_by_pop3d = engine.answered_ahead();
    return r;
}

}  // namespace pbx::pop3::twin
