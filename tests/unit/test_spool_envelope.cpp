// The envelope format (queue/ID.env): a valid sample read field by field,
// round trips (fixed and random), and the invalid table, each case with its
// error and line. The reader takes a whole buffer, so "byte by byte" here
// means: every proper prefix of a valid file is rejected (a truncated write is
// never mistaken for a complete one).
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "common/spool/envelope.hpp"
#include "common/spool/queue_id.hpp"

using namespace pbx::spool;
using std::string;
using std::string_view;

namespace {

std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

pbx::spool::TimePoint at_micros(int64_t us) {
    return pbx::spool::TimePoint(std::chrono::microseconds(us));
}

}  // namespace

// ---------------------------------------------------------------- envelope

namespace {

// A valid envelope, one string per line (line N is index N-1).
std::vector<string> base_lines() {
    return {
        "pillarbox-envelope 1",                   // 1
        "id: 060a24181e40000004d2",               // 2
        "arrival: 1700000000",                    // 3
        "origin: smtp",                           // 4
        "client-address: 192.0.2.7",              // 5
        "client-hostname: mx.example.net",        // 6
        "helo: mx.example.net",                   // 7
        "protocol: ESMTPS",                       // 8
        "tls: TLSv1.3+20TLS_AES_256_GCM_SHA384",  // 9
        "auth-user:",                             // 10
        "sender: alice@example.net",              // 11
        "body: 8bitmime",                         // 12
        "smtputf8: no",                           // 13
        "size: 1234",                             // 14
        "ret: full",                              // 15
        "envid: QQ314159",                        // 16
        "delay-notice-sent: no",                  // 17
        "rcpt: to=bob@example.org state=pending attempts=0 next=0 last=0 "
        "notify=FAILURE,DELAY orcpt=rfc822;bob@example.org reply=",  // 18
        "rcpt: to=carol@example.org state=deferred attempts=2 next=1700003600 "
        "last=1700001800 notify= orcpt= reply=451+204.3.0+20try+20later",  // 19
        "end",                                                             // 20
    };
}

string base_text() {
    return join_lines(base_lines());
}

string rcpt_line(string fields) {
    return "rcpt: " + fields;
}
const string kRcptOk =
    "to=bob@example.org state=pending attempts=0 next=0 last=0 notify= orcpt= reply=";

Envelope sample_envelope() {
    Envelope e;
    e.id = *QueueId::parse("060a24181e40000004d2");
    e.arrival = Seconds(std::chrono::seconds(1700000000));
    e.origin = Origin::Sendmail;
    e.origin_uid = 1000;
    e.client_address = "";
    e.helo = "weird helo = + name";
    e.protocol = "local";
    e.tls = "";
    e.auth_user = "user\twith tab";
    e.sender = "";
    e.body = BodyType::BinaryMime;
    e.smtputf8 = true;
    e.size = 9007199254740993ULL;
    e.ret = DsnRet::Headers;
    e.envid = "id+with=specials";
    e.delay_notice_sent = true;
    Recipient r1;
    r1.address =
        "j\xc3\xb6rg@b\xc3\xbc"
        "cher.example";
    r1.orcpt = "utf-8;j\\x{00F6}rg@example";
    r1.notify = kNotifyNever;
    r1.state = RcptState::Failed;
    r1.attempts = 4294967295u;
    r1.next_attempt = Seconds(std::chrono::seconds(253402300799));
    r1.last_attempt = Seconds(std::chrono::seconds(1));
    r1.last_reply = "550 5.1.1 <j\xc3\xb6rg@example>: no such user \x7f";
    Recipient r2;
    r2.address = "x@y";
    r2.notify = kNotifySuccess | kNotifyFailure | kNotifyDelay;
    r2.state = RcptState::Delivered;
    e.recipients = {r1, r2};
    return e;
}

}  // namespace

TEST_CASE("envelope: the sample file parses to the expected fields", "[spool][envelope]") {
    auto r = read_envelope(base_text());
    INFO((r.ok() ? "" : r.error().to_string()));
    REQUIRE(r.ok());
    const Envelope& e = *r;
    CHECK(e.format_version == 1);
    CHECK(e.id.str() == "060a24181e40000004d2");
    CHECK(e.arrival.time_since_epoch().count() == 1700000000);
    CHECK(e.origin == Origin::Smtp);
    CHECK(e.client_address == "192.0.2.7");
    CHECK(e.client_hostname == "mx.example.net");
    CHECK(e.helo == "mx.example.net");
    CHECK(e.protocol == "ESMTPS");
    CHECK(e.tls == "TLSv1.3 TLS_AES_256_GCM_SHA384");
    CHECK(e.auth_user.empty());
    CHECK(e.sender == "alice@example.net");
    CHECK(e.body == BodyType::EightBitMime);
    CHECK_FALSE(e.smtputf8);
    CHECK(e.size == 1234);
    CHECK(e.ret == DsnRet::Full);
    CHECK(e.envid == "QQ314159");
    CHECK_FALSE(e.delay_notice_sent);
    REQUIRE(e.recipients.size() == 2);
    CHECK(e.recipients[0].address == "bob@example.org");
    CHECK(e.recipients[0].orcpt == "rfc822;bob@example.org");
    CHECK(e.recipients[0].notify == (kNotifyFailure | kNotifyDelay));
    CHECK(e.recipients[0].state == RcptState::Pending);
    CHECK(e.recipients[1].state == RcptState::Deferred);
    CHECK(e.recipients[1].attempts == 2);
    CHECK(e.recipients[1].next_attempt.time_since_epoch().count() == 1700003600);
    CHECK(e.recipients[1].last_attempt.time_since_epoch().count() == 1700001800);
    CHECK(e.recipients[1].last_reply == "451 4.3.0 try later");
    CHECK(e.recipients[1].notify == 0);

    // The text form is canonical: writing what was read gives the same bytes.
    auto w = write_envelope(e);
    REQUIRE(w.ok());
    CHECK(*w == base_text());
}

TEST_CASE("envelope: round trip of every field", "[spool][envelope]") {
    Envelope e = sample_envelope();
    auto w = write_envelope(e);
    INFO((w.ok() ? *w : w.error().to_string()));
    REQUIRE(w.ok());
    // One line per recipient, no raw control octet anywhere.
    for (char c : *w) {
        unsigned char u = static_cast<unsigned char>(c);
        REQUIRE((c == '\n' || (u >= 32 && u < 127)));
    }
    auto r = read_envelope(*w);
    INFO((r.ok() ? "" : r.error().to_string()));
    REQUIRE(r.ok());
    CHECK(*r == e);
    auto w2 = write_envelope(*r);
    REQUIRE(w2.ok());
    CHECK(*w2 == *w);
}

TEST_CASE("envelope: random envelopes round-trip", "[spool][envelope]") {
    std::mt19937 rng(12345);
    auto rnd_str = [&](size_t max) {
        string s(rng() % (max + 1), ' ');
        for (char& c : s) {
            do {
                c = static_cast<char>(rng() % 256);
            } while (c == '\0' || c == '\r' || c == '\n');
        }
        return s;
    };
    for (int iter = 0; iter < 300; ++iter) {
        Envelope e;
        QueueIdGenerator gen(static_cast<pid_t>(rng() % 4000000));
        e.id = gen.next(at_micros(static_cast<int64_t>(rng()) * 1000));
        e.arrival = Seconds(std::chrono::seconds(rng()));
        e.origin = static_cast<Origin>(rng() % 5);
        if (e.origin == Origin::Sendmail) e.origin_uid = static_cast<uint32_t>(rng());
        e.client_address = rnd_str(40);
        e.client_hostname = rnd_str(40);
        e.helo = rnd_str(40);
        e.protocol = "P" + rnd_str(8);
        e.tls = rnd_str(40);
        e.auth_user = rnd_str(20);
        e.sender = rnd_str(60);
        e.body = static_cast<BodyType>(rng() % 3);
        e.smtputf8 = rng() % 2;
        e.size = rng();
        e.ret = static_cast<DsnRet>(rng() % 3);
        e.envid = rnd_str(30);
        e.delay_notice_sent = rng() % 2;
        size_t n = 1 + rng() % 5;
        for (size_t i = 0; i < n; ++i) {
            Recipient r;
            r.address = "a" + rnd_str(60);
            r.orcpt = rnd_str(60);
            r.notify =
                rng() % 4 == 0 ? uint8_t{kNotifyNever} : static_cast<uint8_t>((rng() % 8) << 1);
            r.state = static_cast<RcptState>(rng() % 4);
            r.attempts = static_cast<uint32_t>(rng());
            r.next_attempt = Seconds(std::chrono::seconds(rng()));
            r.last_attempt = Seconds(std::chrono::seconds(rng()));
            r.last_reply = rnd_str(200);
            r.notified = rng() % 2;
            e.recipients.push_back(r);
        }
        auto w = write_envelope(e);
        INFO((w.ok() ? "" : w.error().to_string()));
        REQUIRE(w.ok());
        auto r = read_envelope(*w);
        INFO((r.ok() ? "" : r.error().to_string()));
        REQUIRE(r.ok());
        REQUIRE(*r == e);
    }
}

TEST_CASE("envelope: every truncation is rejected", "[spool][envelope]") {
    string text = base_text();
    for (size_t n = 0; n < text.size(); ++n) {
        INFO("prefix of " << n << " octets");
        auto r = read_envelope(string_view(text).substr(0, n));
        REQUIRE_FALSE(r.ok());
    }
    REQUIRE(read_envelope(text).ok());
}

namespace {

struct Edit {
    enum Kind { Replace, InsertBefore, Delete, Append } kind;
    int line;  // 1-based
    string text;
};

struct InvalidEnvelope {
    const char* what;
    std::vector<Edit> edits;
    EnvelopeErrc code;
    int line;
    EnvelopeLimits limits = {};
    const char* raw = nullptr;  // if set, the whole input instead of edits
    size_t raw_size = 0;
};

string apply(const InvalidEnvelope& c) {
    if (c.raw) return string(c.raw, c.raw_size);
    std::vector<string> lines = base_lines();
    string tail;
    for (const Edit& e : c.edits) {
        size_t i = static_cast<size_t>(e.line - 1);
        switch (e.kind) {
            case Edit::Replace:
                lines[i] = e.text;
                break;
            case Edit::InsertBefore:
                lines.insert(lines.begin() + static_cast<long>(i), e.text);
                break;
            case Edit::Delete:
                lines.erase(lines.begin() + static_cast<long>(i));
                break;
            case Edit::Append:
                tail += e.text;
                break;
        }
    }
    return join_lines(lines) + tail;
}

EnvelopeLimits limits_with(size_t max_line, size_t max_value, size_t max_rcpt) {
    EnvelopeLimits l;
    l.max_line_length = max_line;
    l.max_value_length = max_value;
    l.max_recipients = max_rcpt;
    return l;
}

}  // namespace

TEST_CASE("envelope: invalid table, each with its error and line", "[spool][envelope]") {
    using E = EnvelopeErrc;
    const auto R = Edit::Replace;
    const auto I = Edit::InsertBefore;
    const auto D = Edit::Delete;
    const auto A = Edit::Append;
    const string long_sender(1025, 'a');
    const InvalidEnvelope cases[] = {
        {"empty file", {}, E::BadVersion, 1, {}, "", 0},
        {"only a newline", {}, E::BadVersion, 1, {}, "\n", 1},
        {"no version line", {{D, 1, ""}}, E::BadVersion, 1},
        {"future version", {{R, 1, "pillarbox-envelope 2"}}, E::UnsupportedVersion, 1},
        {"version 0", {{R, 1, "pillarbox-envelope 0"}}, E::UnsupportedVersion, 1},
        {"leading zero", {{R, 1, "pillarbox-envelope 01"}}, E::BadVersion, 1},
        {"no number", {{R, 1, "pillarbox-envelope"}}, E::BadVersion, 1},
        {"two spaces", {{R, 1, "pillarbox-envelope  1"}}, E::BadVersion, 1},
        {"wrong magic", {{R, 1, "pillarbox-maildrop 1"}}, E::BadVersion, 1},
        {"CR", {{R, 5, "client-address: 192.0.2.7\r"}}, E::CarriageReturn, 5},
        {"NUL", {{R, 6, string("client-hostname: mx\0x", 21)}}, E::NulByte, 6},
        {"unknown key", {{I, 5, "colour: red"}}, E::UnknownKey, 5},
        {"capitalised key", {{R, 11, "Sender: alice@example.net"}}, E::UnknownKey, 11},
        {"duplicate key", {{I, 12, "sender: mallory@example.net"}}, E::DuplicateKey, 12},
        {"duplicate empty key", {{I, 11, "auth-user:"}}, E::DuplicateKey, 11},
        {"missing key", {{D, 7, ""}}, E::MissingKey, 19},
        {"missing end", {{D, 20, ""}}, E::MissingEnd, 20},
        {"end not last", {{A, 0, "x\n"}}, E::TrailingData, 21},
        {"empty line after end", {{A, 0, "\n"}}, E::TrailingData, 21},
        {"second end", {{A, 0, "end\n"}}, E::TrailingData, 21},
        {"end without newline", {{D, 20, ""}, {A, 0, "end"}}, E::UnterminatedLine, 20},
        {"END", {{R, 20, "END"}}, E::BadLine, 20},
        {"end with space", {{R, 20, "end "}}, E::BadLine, 20},
        {"line too long",
         {{R, 11, "sender: " + string(100, 'a')}},
         E::LineTooLong,
         11,
         limits_with(64, 1024, 100)},
        {"too many recipients", {}, E::TooManyRecipients, 19, limits_with(16384, 1024, 1)},
        {"no recipients", {{D, 18, ""}, {D, 18, ""}}, E::NoRecipients, 18},
        {"no colon", {{R, 11, "sender alice@example.net"}}, E::BadLine, 11},
        {"no space", {{R, 11, "sender:alice@example.net"}}, E::BadLine, 11},
        {"trailing space", {{R, 11, "sender: "}}, E::BadLine, 11},
        {"empty key", {{R, 11, ": x"}}, E::BadLine, 11},
        {"empty line", {{I, 11, ""}}, E::BadLine, 11},
        {"two spaces", {{R, 11, "sender:  alice@example.net"}}, E::BadValue, 11},
        {"space in value", {{R, 11, "sender: alice @example.net"}}, E::BadValue, 11},
        {"bad hex", {{R, 11, "sender: alice+2"}}, E::BadValue, 11},
        {"lowercase hex", {{R, 11, "sender: alice+2b"}}, E::BadValue, 11},
        {"equals sign", {{R, 11, "sender: a=b"}}, E::BadValue, 11},
        {"non-canonical xtext", {{R, 11, "sender: +41lice"}}, E::BadValue, 11},
        {"encoded LF", {{R, 11, "sender: a+0Ab"}}, E::BadValue, 11},
        {"encoded NUL", {{R, 16, "envid: a+00"}}, E::BadValue, 16},
        {"value too long", {{R, 11, "sender: " + long_sender}}, E::BadValue, 11},
        {"empty protocol", {{R, 8, "protocol:"}}, E::BadValue, 8},
        {"bad id", {{R, 2, "id: 123"}}, E::BadValue, 2},
        {"uppercase id", {{R, 2, "id: 060A24181E40000004D2"}}, E::BadValue, 2},
        {"size leading zero", {{R, 14, "size: 01234"}}, E::BadValue, 14},
        {"size negative", {{R, 14, "size: -1"}}, E::BadValue, 14},
        {"size overflow", {{R, 14, "size: 99999999999999999999"}}, E::BadValue, 14},
        {"size escaped digit", {{R, 14, "size: +31"}}, E::BadValue, 14},
        {"arrival not a number", {{R, 3, "arrival: 1e9"}}, E::BadValue, 3},
        {"arrival past 9999", {{R, 3, "arrival: 253402300800"}}, E::BadValue, 3},
        {"origin keyword", {{R, 4, "origin: SMTP"}}, E::BadValue, 4},
        {"body keyword", {{R, 12, "body: 8BITMIME"}}, E::BadValue, 12},
        {"ret keyword", {{R, 15, "ret: headers"}}, E::BadValue, 15},
        {"yes/no", {{R, 13, "smtputf8: true"}}, E::BadValue, 13},
        {"uid without sendmail", {{I, 5, "uid: 1000"}}, E::BadValue, 5},
        {"sendmail without uid", {{R, 4, "origin: sendmail"}}, E::MissingKey, 20},
        {"uid not a number", {{R, 4, "origin: sendmail"}, {I, 5, "uid: root"}}, E::BadValue, 5},
        {"uid too large", {{R, 4, "origin: sendmail"}, {I, 5, "uid: 4294967296"}}, E::BadValue, 5},
        {"rcpt empty", {{R, 18, "rcpt:"}}, E::MissingKey, 18},
        {"rcpt missing field",
         {{R, 18, rcpt_line("to=a state=pending attempts=0 next=0 last=0 notify= orcpt=")}},
         E::MissingKey,
         18},
        {"rcpt unknown field", {{R, 18, rcpt_line(kRcptOk + " colour=red")}}, E::UnknownKey, 18},
        {"rcpt notified=no", {{R, 18, rcpt_line(kRcptOk + " notified=no")}}, E::BadValue, 18},
        {"rcpt notified empty", {{R, 18, rcpt_line(kRcptOk + " notified=")}}, E::BadValue, 18},
        {"rcpt field after notified",
         {{R, 18, rcpt_line(kRcptOk + " notified=yes colour=red")}},
         E::UnknownKey,
         18},
        {"rcpt notified twice",
         {{R, 18, rcpt_line(kRcptOk + " notified=yes notified=yes")}},
         E::DuplicateKey,
         18},
        {"origin dsn with uid", {{R, 4, "origin: dsn"}, {I, 5, "uid: 0"}}, E::BadValue, 5},
        {"rcpt duplicate field", {{R, 18, rcpt_line("to=a to=b")}}, E::DuplicateKey, 18},
        {"rcpt out of order",
         {{R, 18, rcpt_line("state=pending to=a attempts=0 next=0 last=0 notify= orcpt= reply=")}},
         E::BadLine,
         18},
        {"rcpt double space",
         {{R, 18, rcpt_line("to=a  state=pending attempts=0 next=0 last=0 notify= orcpt= reply=")}},
         E::BadLine,
         18},
        {"rcpt trailing space", {{R, 18, rcpt_line(kRcptOk + " ")}}, E::BadLine, 18},
        {"rcpt field without =", {{R, 18, rcpt_line("to")}}, E::BadLine, 18},
        {"rcpt empty to",
         {{R, 18, rcpt_line("to= state=pending attempts=0 next=0 last=0 notify= orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt bad state",
         {{R, 18, rcpt_line("to=a state=bounced attempts=0 next=0 last=0 notify= orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt attempts overflow",
         {{R, 18,
           rcpt_line(
               "to=a state=pending attempts=4294967296 next=0 last=0 notify= orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt NEVER with others",
         {{R, 18,
           rcpt_line(
               "to=a state=pending attempts=0 next=0 last=0 notify=NEVER,DELAY orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt notify order",
         {{R, 18,
           rcpt_line(
               "to=a state=pending attempts=0 next=0 last=0 notify=DELAY,FAILURE orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt notify repeated",
         {{R, 18,
           rcpt_line(
               "to=a state=pending attempts=0 next=0 last=0 notify=DELAY,DELAY orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt notify trailing comma",
         {{R, 18,
           rcpt_line("to=a state=pending attempts=0 next=0 last=0 notify=DELAY, orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt notify lowercase",
         {{R, 18,
           rcpt_line("to=a state=pending attempts=0 next=0 last=0 notify=delay orcpt= reply=")}},
         E::BadValue,
         18},
        {"rcpt reply with space",
         {{R, 18,
           rcpt_line("to=a state=pending attempts=0 next=0 last=0 notify= orcpt= reply=a b")}},
         E::BadLine,
         18},
        {"rcpt reply with =",
         {{R, 18,
           rcpt_line("to=a state=pending attempts=0 next=0 last=0 notify= orcpt= reply=a=b")}},
         E::BadValue,
         18},
        {"rcpt bad time",
         {{R, 18, rcpt_line("to=a state=pending attempts=0 next=x last=0 notify= orcpt= reply=")}},
         E::BadValue,
         18},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        string text = apply(c);
        auto r = read_envelope(text, c.limits);
        REQUIRE_FALSE(r.ok());
        INFO(r.error().to_string());
        CHECK(r.error().code == c.code);
        CHECK(r.error().line == c.line);
        CHECK_FALSE(r.error().to_string().empty());
    }
}

TEST_CASE("envelope: the line and recipient limits are exact", "[spool][envelope]") {
    // A line of exactly max_line_length octets is accepted, one more is not.
    std::vector<string> lines = base_lines();
    string text = base_text();
    size_t longest = 0;
    for (const auto& l : lines) longest = std::max(longest, l.size());
    CHECK(read_envelope(text, limits_with(longest, 1024, 2)).ok());
    auto r = read_envelope(text, limits_with(longest - 1, 1024, 2));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == EnvelopeErrc::LineTooLong);
    auto r2 = read_envelope(text, limits_with(16384, 1024, 1));
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().code == EnvelopeErrc::TooManyRecipients);
}

TEST_CASE("envelope: the writer refuses what the reader would reject", "[spool][envelope]") {
    struct Case {
        const char* what;
        void (*edit)(Envelope&);
        EnvelopeErrc code;
    };
    const Case cases[] = {
        {"no recipients", [](Envelope& e) { e.recipients.clear(); }, EnvelopeErrc::NoRecipients},
        {"empty id", [](Envelope& e) { e.id = QueueId(); }, EnvelopeErrc::BadValue},
        {"empty protocol", [](Envelope& e) { e.protocol.clear(); }, EnvelopeErrc::BadValue},
        {"LF in reply", [](Envelope& e) { e.recipients[0].last_reply = "a\nb"; },
         EnvelopeErrc::BadValue},
        {"NUL in sender", [](Envelope& e) { e.sender = string("a\0b", 3); },
         EnvelopeErrc::BadValue},
        {"CR in helo", [](Envelope& e) { e.helo = "a\rb"; }, EnvelopeErrc::BadValue},
        {"empty address", [](Envelope& e) { e.recipients[1].address.clear(); },
         EnvelopeErrc::BadValue},
        {"value too long", [](Envelope& e) { e.envid = string(1025, 'x'); },
         EnvelopeErrc::BadValue},
        {"NEVER with DELAY",
         [](Envelope& e) { e.recipients[0].notify = kNotifyNever | kNotifyDelay; },
         EnvelopeErrc::BadValue},
        {"negative time",
         [](Envelope& e) { e.recipients[0].next_attempt = Seconds(std::chrono::seconds(-1)); },
         EnvelopeErrc::BadValue},
        {"arrival past 9999",
         [](Envelope& e) { e.arrival = Seconds(std::chrono::seconds(253402300800)); },
         EnvelopeErrc::BadValue},
        {"format version", [](Envelope& e) { e.format_version = 2; },
         EnvelopeErrc::UnsupportedVersion},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        Envelope e = sample_envelope();
        c.edit(e);
        auto w = write_envelope(e);
        REQUIRE_FALSE(w.ok());
        CHECK(w.error().code == c.code);
    }
    Envelope e = sample_envelope();
    e.recipients.resize(3, e.recipients[0]);
    EnvelopeLimits two;
    two.max_recipients = 2;
    auto w = write_envelope(e, two);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == EnvelopeErrc::TooManyRecipients);
    EnvelopeLimits narrow;
    narrow.max_line_length = 40;
    auto w2 = write_envelope(sample_envelope(), narrow);
    REQUIRE_FALSE(w2.ok());
    CHECK(w2.error().code == EnvelopeErrc::LineTooLong);
}

TEST_CASE("envelope: sanitize_reply makes any reply storable", "[spool][envelope]") {
    CHECK(sanitize_reply("451-4.3.0 first\r\n451 4.3.0 second\r\n") ==
          "451-4.3.0 first  451 4.3.0 second  ");
    CHECK(sanitize_reply(string("a\0b", 3)) == "a b");
    EnvelopeLimits l;
    l.max_value_length = 5;
    CHECK(sanitize_reply("1234567", l) == "12345");
    Envelope e = sample_envelope();
    e.recipients[0].last_reply = sanitize_reply(string(5000, '\n'));
    CHECK(write_envelope(e).ok());
}

TEST_CASE("envelope: names", "[spool][envelope]") {
    CHECK(to_string(RcptState::Deferred) == "deferred");
    CHECK(to_string(Origin::Submission) == "submission");
    CHECK(to_string(BodyType::SevenBit) == "7bit");
    CHECK(notify_to_string(0).empty());
    CHECK(notify_to_string(kNotifyNever) == "NEVER");
    CHECK(notify_to_string(kNotifyDelay | kNotifySuccess) == "SUCCESS,DELAY");
    EnvelopeError err{EnvelopeErrc::DuplicateKey, 7, "sender"};
    CHECK(err.to_string() == "line 7: duplicate key: sender");
}

TEST_CASE("envelope: notices' origins and the optional notified field", "[spool][envelope]") {
    // Envelopes written before the field existed read as notified=false.
    auto old = read_envelope(base_text());
    REQUIRE(old.ok());
    CHECK_FALSE(old->recipients[0].notified);
    Envelope e = *old;
    e.origin = Origin::Dsn;
    e.sender = "";
    e.recipients[1].notified = true;
    auto text = write_envelope(e);
    REQUIRE(text.ok());
    CHECK(text->find("origin: dsn\n") != string::npos);
    CHECK(text->find("reply=451+204.3.0+20try+20later notified=yes\n") != string::npos);
    // Only a true value is written: an untouched envelope keeps its old text.
    CHECK(write_envelope(*old).value() == base_text());
    auto back = read_envelope(*text);
    REQUIRE(back.ok());
    CHECK(*back == e);
    e.origin = Origin::PostmasterNotice;
    auto pm = write_envelope(e);
    REQUIRE(pm.ok());
    CHECK(pm->find("origin: postmaster-notice\n") != string::npos);
    CHECK(read_envelope(*pm).value() == e);
}
