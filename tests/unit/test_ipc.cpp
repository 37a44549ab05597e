// The frame codec: round trips, the strict decoder's invalid table (fed whole
// and byte by byte), the hello, to_text, and programming errors.
#include <catch2/catch.hpp>

#include <limits>
#include <string>
#include <vector>

#include "tests/unit/test_ipc_common.hpp"

using namespace ipctest;
using pbx::UniqueFd;

namespace {

std::vector<UniqueFd> dup_fds(const std::vector<int>& fds) {
    std::vector<UniqueFd> out;
    for (int fd : fds) out.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    return out;
}

Message sample_deliver() {
    Message m(kTest, 1);
    m.set_u64("id", std::numeric_limits<uint64_t>::max())
        .set_str("sender", "alice@example.test")
        .set_str("rcpt", "bob@example.test")
        .set_str("rcpt", "carol@example.test")
        .set_bytes("blob", std::string("\0\xff\n binary", 10))
        .add_fd("file", devnull())
        .add_fd("extra", devnull())
        .add_fd("extra", devnull());
    return m;
}

std::string ping_frame(uint64_t seq) {
    return build({2, {field(0, be(seq, 8))}});
}

}  // namespace

TEST_CASE("ipc: every field kind survives a round trip", "[ipc]") {
    Message m = sample_deliver();
    auto enc = encode(m);
    REQUIRE(enc.ok());
    CHECK(enc->fds.size() == 3);
    CHECK(enc->bytes.size() == frame_length(enc->bytes));
    auto fds = dup_fds(enc->fds);
    auto d = decode_frame(kTest, enc->bytes, fds);
    REQUIRE(d.ok());
    CHECK(fds.empty());
    CHECK(d->name() == "deliver");
    CHECK(d->get_u64("id") == std::numeric_limits<uint64_t>::max());
    CHECK(d->get_str("sender") == "alice@example.test");
    CHECK(d->get_all("rcpt") ==
          std::vector<std::string_view>{"bob@example.test", "carol@example.test"});
    CHECK(d->get_bytes("blob") == std::string_view("\0\xff\n binary", 10));
    CHECK_FALSE(d->has("note"));
    CHECK_FALSE(d->get_str("note").has_value());
    UniqueFd file = d->take_fd("file");
    CHECK(file.valid());
    CHECK_FALSE(d->take_fd("file").valid());
    CHECK(d->take_all_fds("extra").size() == 2);

    Message bye(kTest, 3);
    auto e2 = encode(bye);
    REQUIRE(e2.ok());
    CHECK(e2->bytes.size() == kHeaderSize);
    std::vector<UniqueFd> none;
    CHECK(decode_frame(kTest, e2->bytes, none).ok());
}

TEST_CASE("ipc: setters replace single fields and append repeated ones", "[ipc]") {
    Message m(kTest, 2);
    m.set_u64("seq", 1).set_u64("seq", 2);
    CHECK(m.fields().size() == 1);
    CHECK(m.get_u64("seq") == 2);
    Message n = Message::named(kTest, "deliver");
    CHECK(n.type() == 1);
}

TEST_CASE("ipc: encode refuses what the peer would refuse", "[ipc]") {
    Message m(kTest, 1);
    m.set_u64("id", 1).set_str("sender", "a");
    auto e = encode(m);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message.find("rcpt") != std::string::npos);

    Message big(kTiny, 1);
    big.set_u64("id", 1).set_str("sender", std::string(100, 'x')).set_str("rcpt", "r");
    auto e2 = encode(big);
    REQUIRE_FALSE(e2.ok());
    CHECK(e2.error().message.find("limit") != std::string::npos);
}

namespace {
struct Invalid {
    const char* name;
    std::string bytes;
    int fds;  // fds passed with the frame
    DecodeErrc code;
    bool whole_only = false;  // the case is about the end of a whole buffer
};

std::vector<Invalid> invalid_cases() {
    const std::string seq = field(0, be(7, 8));
    return {
        {"header cut short", be(6, 4) + be(kMagic, 2) + be(1, 1) + be(0, 1) + be(2, 2), 0,
         DecodeErrc::Truncated},
        {"length prefix only", be(0, 4), 0, DecodeErrc::Truncated},
        {"bad magic", build({2, {seq}, 0, -1, 0x4242}), 0, DecodeErrc::BadMagic},
        {"bad wire version", build({2, {seq}, 0, -1, kMagic, 9}), 0, DecodeErrc::BadVersion},
        {"unknown type", build({9, {seq}}), 0, DecodeErrc::UnknownType},
        {"hello type inside a protocol", build({0, {seq}}), 0, DecodeErrc::UnknownType},
        {"unknown field index", build({2, {seq, field(5, "x")}}), 0, DecodeErrc::UnknownField},
        {"missing required field", build({2, {}}), 0, DecodeErrc::MissingField},
        {"missing repeated required field", build({1, {field(0, be(1, 8)), field(1, "a@b")}}), 0,
         DecodeErrc::MissingField},
        {"duplicate field", build({2, {seq, seq}}), 0, DecodeErrc::DuplicateField},
        {"u64 of 4 bytes", build({2, {field(0, be(7, 4))}}), 0, DecodeErrc::BadValue},
        {"u64 of 9 bytes", build({2, {field(0, be(7, 9))}}), 0, DecodeErrc::BadValue},
        {"NUL in a str",
         build({1, {field(0, be(1, 8)), field(1, std::string("a\0b", 3)), field(2, "r")}}), 0,
         DecodeErrc::BadValue},
        {"value runs past the frame", build({2, {be(0, 2) + be(100, 4) + be(7, 8)}}), 0,
         DecodeErrc::Truncated},
        {"field header cut", build({2, {seq}, 0, 2}), 0, DecodeErrc::Truncated},
        {"bytes after the last field", build({2, {seq}, 0, -1, kMagic, kWireVersion, "zz"}), 0,
         DecodeErrc::TrailingBytes},
        {"field count too small", build({2, {seq, seq}, 0, 1}), 0, DecodeErrc::TrailingBytes},
        {"bytes after the frame", ping_frame(7) + "x", 0, DecodeErrc::TrailingBytes, true},
        {"oversize frame", be(0xfffffff0u, 4) + be(kMagic, 2), 0, DecodeErrc::FrameTooLarge},
        {"declared fd not received",
         build({1,
                {field(0, be(1, 8)), field(1, "a"), field(2, "r"), field(5, std::string(1, '\0'))},
                1}),
         0, DecodeErrc::FdMismatch},
        {"fd received, none declared", ping_frame(7), 1, DecodeErrc::FdMismatch},
        {"fd field without fds",
         build(
             {1,
              {field(0, be(1, 8)), field(1, "a"), field(2, "r"), field(5, std::string(1, '\0'))}}),
         0, DecodeErrc::FdMismatch},
        {"fd index out of order",
         build({1,
                {field(0, be(1, 8)), field(1, "a"), field(2, "r"), field(5, "\x01"),
                 field(6, std::string("\x00", 1))},
                2}),
         2, DecodeErrc::FdMismatch},
        {"fd declared but unused",
         build({1, {field(0, be(1, 8)), field(1, "a"), field(2, "r")}, 1}), 1,
         DecodeErrc::FdMismatch},
        {"fd index of 2 bytes",
         build({1, {field(0, be(1, 8)), field(1, "a"), field(2, "r"), field(5, be(0, 2))}, 1}), 1,
         DecodeErrc::BadValue},
        {"too many fds declared", build({2, {seq}, 200}), 0, DecodeErrc::FdMismatch},
    };
}
}  // namespace

TEST_CASE("ipc: the valid frames decode whole and byte by byte", "[ipc]") {
    const std::string frames[] = {
        ping_frame(0), ping_frame(~0ull), build({3, {}}),
        build(
            {1, {field(2, "r"), field(1, "s"), field(0, be(5, 8)), field(2, "r2"), field(3, "")}})};
    for (const auto& f : frames) {
        std::vector<UniqueFd> none;
        CHECK(decode_frame(kTest, f, none).ok());
        Decoder dec(kTest, false);
        int got = 0;
        for (char c : f) {
            dec.feed(std::string_view(&c, 1));
            auto r = dec.next();
            REQUIRE(r.ok());
            got += r->has_value() ? 1 : 0;
        }
        CHECK(got == 1);
        CHECK(dec.finish().ok());
    }
}

TEST_CASE("ipc: every malformed frame is rejected, whole and byte by byte", "[ipc]") {
    for (const Invalid& c : invalid_cases()) {
        INFO(c.name);
        std::vector<UniqueFd> fds;
        std::vector<int> raw;
        for (int i = 0; i < c.fds; ++i) {
            fds.push_back(devnull());
            raw.push_back(fds.back().get());
        }
        auto whole = decode_frame(kTest, c.bytes, fds);
        REQUIRE_FALSE(whole.ok());
        CHECK(to_string(whole.error().code) == to_string(c.code));
        CHECK(!whole.error().text.empty());
        for (int fd : raw) CHECK_FALSE(fd_open(fd));  // an error closes the frame's fds
        if (c.whole_only) continue;

        for (bool trickle : {false, true}) {
            INFO((trickle ? "byte by byte" : "whole"));
            Decoder dec(kTest);
            dec.feed(build({0, {field(0, "test"), field(1, be(3, 8))}}));  // the hello
            std::optional<DecodeErrc> err;
            const size_t step = trickle ? 1 : c.bytes.size();
            for (size_t at = 0; at < c.bytes.size() && !err; at += step) {
                dec.feed(std::string_view(c.bytes).substr(at, step));
                if (at == 0)
                    for (int i = 0; i < c.fds; ++i) dec.add_fd(devnull());
                auto r = dec.next();
                if (!r.ok())
                    err = r.error().code;
                else
                    CHECK_FALSE(r->has_value());
            }
            if (!err) {
                auto end = dec.finish();
                REQUIRE_FALSE(end.ok());
                err = end.error().code;
            }
            CHECK(to_string(*err) == to_string(c.code));
            CHECK_FALSE(dec.next().ok());  // a failed decoder stays failed
            CHECK(dec.pending_fds() == 0);
        }
    }
}

TEST_CASE("ipc: the decoder refuses an oversize frame from its prefix alone", "[ipc]") {
    Decoder dec(kTiny, false);
    dec.feed(be(65, 4));
    auto r = dec.next();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == DecodeErrc::FrameTooLarge);
    Decoder ok(kTiny, false);
    ok.feed(be(60, 4));
    CHECK(ok.next().ok());
}

TEST_CASE("ipc: the decoder splits frames and matches fds first in, first out", "[ipc]") {
    Message a = sample_deliver();
    Message b(kTest, 2);
    b.set_u64("seq", 9);
    auto ea = encode(a);
    auto eb = encode(b);
    REQUIRE(ea.ok());
    REQUIRE(eb.ok());
    Decoder dec(kTest);
    dec.feed(encode(make_hello(kTest))->bytes + ea->bytes + eb->bytes + ea->bytes);
    for (auto& fd : dup_fds(ea->fds)) dec.add_fd(std::move(fd));
    for (auto& fd : dup_fds(ea->fds)) dec.add_fd(std::move(fd));
    std::vector<std::string> names;
    for (;;) {
        auto r = dec.next();
        REQUIRE(r.ok());
        if (!r->has_value()) break;
        names.emplace_back((*r)->name());
        if ((*r)->name() == "deliver") CHECK((*r)->take_all_fds("extra").size() == 2);
    }
    CHECK(names == std::vector<std::string>{"deliver", "ping", "deliver"});
    CHECK(dec.finish().ok());
}

TEST_CASE("ipc: the first frame must be a matching hello", "[ipc]") {
    const std::string hello = encode(make_hello(kTest))->bytes;
    {
        Decoder dec(kTest);
        dec.feed(hello + ping_frame(1));
        auto r = dec.next();
        REQUIRE(r.ok());
        REQUIRE(r->has_value());
        CHECK(dec.hello_seen());
    }
    {
        Decoder dec(kTest);
        dec.feed(ping_frame(1));
        auto r = dec.next();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == DecodeErrc::NoHello);
    }
    {
        Decoder dec(kTestV4);
        dec.feed(hello);
        auto r = dec.next();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == DecodeErrc::ProtocolMismatch);
        CHECK(r.error().text.find("version 3") != std::string::npos);
    }
    {
        Decoder dec(kTest);
        dec.feed(build({0, {field(0, "other"), field(1, be(3, 8))}}));
        auto r = dec.next();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == DecodeErrc::ProtocolMismatch);
    }
    {
        Decoder dec(kTest);
        dec.feed(be(100000, 4));  // a "hello" far too big to be one
        auto r = dec.next();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == DecodeErrc::NoHello);
    }
    std::vector<UniqueFd> none;
    auto h = decode_frame(kHelloProtocol, hello, none);
    REQUIRE(h.ok());
    CHECK(check_hello(kTest, *h).ok());
    CHECK(check_hello(kTestV4, *h).error().code == DecodeErrc::ProtocolMismatch);
    Message ping(kTest, 2);
    CHECK(check_hello(kTest, ping).error().code == DecodeErrc::NoHello);
}

TEST_CASE("ipc: to_text prints one escaped line", "[ipc]") {
    Message m(kTest, 1);
    m.set_u64("id", 42)
        .set_str("sender", "a b\\c=d\r\ne")
        .set_str("rcpt", "x@y")
        .set_str("rcpt", "")
        .set_bytes("blob", std::string("\0\x7f\xc3\xa9", 4))
        .add_fd("file", devnull());
    CHECK(to_text(kTest, m) ==
          "type=deliver id=42 sender=a\\x20b\\x5cc=d\\x0d\\x0ae rcpt=x@y rcpt= "
          "blob=\\x00\\x7f\\xc3\\xa9 file=#0");
    Message big(kTest, 1);
    big.set_bytes("blob", std::string(1000, 'z'));
    CHECK(to_text(kTest, big, 4) == "type=deliver blob=zzzz...(+996)");
    CHECK(to_text(kTest, make_hello(kTest)) == "type=hello protocol=test version=3");
    CHECK(escape_value("\t\x01 ok") == "\\x09\\x01\\x20ok");
}

TEST_CASE("ipc: misuse of a message is a programming error", "[ipc]") {
    CHECK(aborts([] { Message m(kTest, 77); }));
    CHECK(aborts([] { (void)Message::named(kTest, "nope"); }));
    CHECK(aborts([] { (void)Message(kTest, 2).get_u64("nope"); }));
    CHECK(aborts([] { (void)Message(kTest, 2).has("nope"); }));
    CHECK(aborts([] { Message(kTest, 2).set_str("seq", "x"); }));
    CHECK(aborts([] { Message(kTest, 1).set_str("sender", std::string("a\0", 2)); }));
    CHECK(aborts([] { Message(kTest, 1).set_bytes("sender", "x"); }));
    CHECK(aborts([] { Message(kTest, 1).add_fd("file", UniqueFd()); }));
    CHECK_FALSE(aborts([] { (void)Message(kTest, 1).get_bytes("sender"); }));
}
