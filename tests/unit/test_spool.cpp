// The spool's building blocks: xtext and queue IDs. The envelope and maildrop
// formats are in test_spool_envelope.cpp and test_spool_maildrop.cpp, file
// I/O in test_spool_io.cpp.
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "common/spool/queue_id.hpp"
#include "common/spool/xtext.hpp"

using namespace pbx::spool;
using std::string;
using std::string_view;

namespace {

TimePoint at_micros(int64_t us) {
    return TimePoint(std::chrono::microseconds(us));
}

}  // namespace

// ---------------------------------------------------------------- xtext

TEST_CASE("xtext: encode and decode, valid table", "[spool][xtext]") {
    struct Case {
        string raw;
        string text;
    };
    const Case cases[] = {
        {"", ""},
        {"alice@example.org", "alice@example.org"},
        {"a+b", "a+2Bb"},
        {"a=b", "a+3Db"},
        {"a b", "a+20b"},
        {string("\0", 1), "+00"},
        {"\r\n", "+0D+0A"},
        {"\x7f\xff", "+7F+FF"},
        {"!~", "!~"},
        {"rfc822;bob@example.org", "rfc822;bob@example.org"},
        {"caf\xc3\xa9", "caf+C3+A9"},
        {"\t", "+09"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        CHECK(xtext_encode(c.raw) == c.text);
        CHECK(xtext_encoded_size(c.raw) == c.text.size());
        auto d = xtext_decode(c.text);
        REQUIRE(d.ok());
        CHECK(*d == c.raw);
    }
    // Non-canonical but valid xtext (RFC 3461 allows escaping any octet).
    auto d = xtext_decode("+41lice");
    REQUIRE(d.ok());
    CHECK(*d == "Alice");
}

TEST_CASE("xtext: invalid table", "[spool][xtext]") {
    struct Case {
        string text;
        XtextError error;
        size_t offset;
    };
    const Case cases[] = {
        {"a b", XtextError::BadChar, 1},  {"a=b", XtextError::BadChar, 1},
        {"\n", XtextError::BadChar, 0},   {string("a\0", 2), XtextError::BadChar, 1},
        {"\x7f", XtextError::BadChar, 0}, {"\x80", XtextError::BadChar, 0},
        {"+", XtextError::BadHex, 0},     {"x+4", XtextError::BadHex, 1},
        {"+4g", XtextError::BadHex, 0},   {"+0a", XtextError::BadHex, 0},
        {"ab+2b", XtextError::BadHex, 2}, {"++41", XtextError::BadHex, 0},
        {"+ 41", XtextError::BadHex, 0},  {"a+G0", XtextError::BadHex, 1},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        size_t off = 99;
        auto d = xtext_decode(c.text, &off);
        REQUIRE_FALSE(d.ok());
        CHECK(d.error() == c.error);
        CHECK(off == c.offset);
    }
}

TEST_CASE("xtext: every octet round-trips", "[spool][xtext]") {
    string all;
    for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
    string enc = xtext_encode(all);
    for (char c : enc) {
        unsigned char u = static_cast<unsigned char>(c);
        REQUIRE(u >= 33);
        REQUIRE(u <= 126);
        REQUIRE(c != '=');
    }
    auto d = xtext_decode(enc);
    REQUIRE(d.ok());
    CHECK(*d == all);
}

// ---------------------------------------------------------------- queue IDs

TEST_CASE("queue id: validate table", "[spool][queueid]") {
    const char* valid[] = {"060a24181e40000004d2", "00000000000000000000", "ffffffffffffffffffff"};
    for (const char* v : valid) {
        INFO(v);
        CHECK(QueueId::validate(v));
        auto id = QueueId::parse(v);
        REQUIRE(id.ok());
        CHECK(id->str() == v);
    }
    const char* invalid[] = {
        "",
        "060a24181e40000004d",    // 19
        "060a24181e40000004d21",  // 21
        "060A24181E40000004D2",   // uppercase
        "060a24181e40000004dg",   // not hex
        "060a24181e40000004d2.msg",
        "../a24181e40000004d2",
        "060a24181e4000 004d2",
        "060a24181e40000004d\n",
    };
    for (const char* v : invalid) {
        INFO(v);
        CHECK_FALSE(QueueId::validate(v));
        CHECK_FALSE(QueueId::parse(v).ok());
    }
    CHECK_FALSE(QueueId::validate(string_view("060a24181e40000004\0d", 20)));
    CHECK_FALSE(QueueId().valid());
}

TEST_CASE("queue id: format, arrival time, fixed clock", "[spool][queueid]") {
    QueueIdGenerator gen(0x4d2);
    QueueId a = gen.next(at_micros(1700000000000000));
    CHECK(a.str() == "060a24181e40000004d2");
    CHECK(a.arrival_time().time_since_epoch().count() == 1700000000000000);
    CHECK(arrival_time(a) == a.arrival_time());
    // The clock stands still, then steps back: IDs still increase.
    QueueId b = gen.next(at_micros(1700000000000000));
    QueueId c = gen.next(at_micros(1600000000000000));
    CHECK(a < b);
    CHECK(b < c);
    CHECK(b.str() == "060a24181e40010004d2");
    // Time order across a digit carry is lexicographic order.
    QueueId d = gen.next(at_micros(0x0fffffffffffff));
    QueueId e = gen.next(at_micros(0x10000000000000));
    CHECK(c < d);
    CHECK(d < e);
    CHECK(d.str() == "0fffffffffffff0004d2");
    CHECK(e.str() == "100000000000000004d2");
}

TEST_CASE("queue id: 100k generated IDs are unique and sorted", "[spool][queueid]") {
    std::vector<QueueId> ids;
    ids.reserve(100000);
    for (int i = 0; i < 100000; ++i) ids.push_back(QueueId::generate());
    std::set<string> seen;
    for (size_t i = 0; i < ids.size(); ++i) {
        REQUIRE(QueueId::validate(ids[i].str()));
        if (i > 0) REQUIRE(ids[i - 1].str() < ids[i].str());
        seen.insert(ids[i].str());
    }
    CHECK(seen.size() == ids.size());
    // The injected clock: a fixed reading far in the past still gives later IDs.
    QueueId later = QueueId::generate(at_micros(1));
    CHECK(ids.back() < later);
}

TEST_CASE("queue id: two forked processes never collide", "[spool][queueid]") {
    constexpr int kPerChild = 20000;
    int fds[2][2];
    pid_t pids[2];
    for (int c = 0; c < 2; ++c) {
        REQUIRE(pipe(fds[c]) == 0);
        pids[c] = fork();
        REQUIRE(pids[c] >= 0);
        if (pids[c] == 0) {
            close(fds[c][0]);
            string out;
            // Both children use the same frozen clock: only the pid part
            // and the per-process increments keep them apart.
            for (int i = 0; i < kPerChild; ++i)
                out += QueueId::generate(at_micros(1700000000000000)).str() + "\n";
            size_t off = 0;
            while (off < out.size()) {
                ssize_t n = write(fds[c][1], out.data() + off, out.size() - off);
                if (n <= 0) _exit(1);
                off += static_cast<size_t>(n);
            }
            _exit(0);
        }
        close(fds[c][1]);
    }
    std::set<string> all;
    for (int c = 0; c < 2; ++c) {
        string data;
        char buf[65536];
        for (;;) {
            ssize_t n = read(fds[c][0], buf, sizeof buf);
            if (n <= 0) break;
            data.append(buf, static_cast<size_t>(n));
        }
        close(fds[c][0]);
        int status = 0;
        REQUIRE(waitpid(pids[c], &status, 0) == pids[c]);
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        size_t count = 0;
        for (size_t pos = 0; pos < data.size();) {
            size_t nl = data.find('\n', pos);
            REQUIRE(nl != string::npos);
            string id = data.substr(pos, nl - pos);
            REQUIRE(QueueId::validate(id));
            all.insert(id);
            pos = nl + 1;
            ++count;
        }
        CHECK(count == kPerChild);
    }
    CHECK(all.size() == 2 * kPerChild);
}
