// The queue listing and `show` (queue-manager/listing.hpp): the mailq text
// against a golden file, the JSON forms, and the JSON string escaper.
#include "queue-manager/listing.hpp"
#include "test_queue_common.hpp"

#ifndef PBX_SOURCE_DIR
#error "tests/meson.build passes -DPBX_SOURCE_DIR"
#endif

using namespace pbx;
using namespace pbx::qm;
using qtest::at;

namespace {

// Three messages: one pending (agent not running), one deferred with two
// different replies and one delivered recipient, one held from the null sender.
std::vector<Entry> sample_queue() {
    std::vector<Entry> q(3);
    q[0].env = qtest::sample_envelope(qtest::id_at(0x6000000000a000ull), 1234);
    q[0].env.arrival = at(1700000000);  // Tue Nov 14 22:13:20 UTC
    q[0].note = "local-delivery is not running";
    q[0].in_delivery = 1;

    q[1].env = qtest::sample_envelope(qtest::id_at(0x6000000000b000ull), 20000);
    q[1].env.arrival = at(1700003600);
    q[1].env.sender = "bounces+x@lists.example.org";
    auto& r = q[1].env.recipients;
    r[0].state = spool::RcptState::Deferred;
    r[0].attempts = 2;
    r[0].last_reply = "4.4.1 connect to mx.example.test: Connection refused";
    r[1].state = spool::RcptState::Delivered;
    spool::Recipient third;
    third.address = "dave@example.com";
    third.state = spool::RcptState::Deferred;
    third.last_reply = "451 4.7.1 greylisted, try again";
    r.push_back(third);

    q[2].env = qtest::sample_envelope(qtest::id_at(0x6000000000c000ull), 300);
    q[2].env.arrival = at(1700100000);
    q[2].env.sender = "";
    q[2].env.recipients.resize(1);
    q[2].held = true;
    return q;
}

std::vector<const Entry*> pointers(const std::vector<Entry>& q) {
    std::vector<const Entry*> out;
    for (const Entry& e : q) out.push_back(&e);
    return out;
}

}  // namespace

TEST_CASE("listing: mailq text (golden file)", "[queue][listing]") {
    auto q = sample_queue();
    std::string expected = qtest::read_file(PBX_SOURCE_DIR "/tests/data/queue_mailq.ref");
    REQUIRE_FALSE(expected.empty());
    CHECK(list_text(pointers(q), 0) == expected);
}

TEST_CASE("listing: empty queue, singular, time zone", "[queue][listing]") {
    CHECK(list_text({}, 0) == "Mail queue is empty\n");
    auto q = sample_queue();
    q.resize(1);
    std::string one = list_text(pointers(q), 60);
    CHECK(one.find("Tue Nov 14 23:13:20") != std::string::npos);
    CHECK(one.find("-- 2 Kbytes in 1 Request.\n") != std::string::npos);
}

TEST_CASE("listing: JSON, one object per message", "[queue][listing]") {
    auto q = sample_queue();
    std::string j = list_json(pointers(q));
    std::string first =
        "{\"queue_name\":\"active\",\"queue_id\":\"" + q[0].env.id.str() +
        "\",\"arrival_time\":1700000000,\"message_size\":1234,\"sender\":\"alice@example.net\","
        "\"recipients\":[{\"address\":\"bob@example.test\",\"state\":\"pending\","
        "\"delay_reason\":\"local-delivery is not running\"},{\"address\":\"carol@example.org\","
        "\"state\":\"pending\",\"delay_reason\":\"local-delivery is not running\"}]}\n";
    REQUIRE(j.rfind(first, 0) == 0);
    CHECK(std::count(j.begin(), j.end(), '\n') == 3);
    CHECK(j.find("\"queue_name\":\"deferred\"") != std::string::npos);
    CHECK(j.find("\"queue_name\":\"hold\"") != std::string::npos);
    CHECK(j.find("carol") == j.rfind("carol"));  // delivered recipients are not listed
}

TEST_CASE("listing: show", "[queue][listing]") {
    auto q = sample_queue();
    std::string s = show_text(q[1], 0);
    CHECK(s.rfind("id: " + q[1].env.id.str() + "\nqueue: deferred\n", 0) == 0);
    CHECK(s.find("client: client.example.net[192.0.2.7]\n") != std::string::npos);
    CHECK(s.find("sender: <bounces+x@lists.example.org>\n") != std::string::npos);
    CHECK(s.find("recipient: <bob@example.test>\n  state: deferred\n  attempts: 2\n") !=
          std::string::npos);
    CHECK(s.find("  last-reply: 4.4.1 connect to mx.example.test: Connection refused\n") !=
          std::string::npos);
    CHECK(s.find("recipient: <carol@example.org>\n  state: delivered\n") != std::string::npos);
    std::string j = show_json(q[1]);
    CHECK(j.front() == '{');
    CHECK(j.find("\"attempts\":2") != std::string::npos);
}

TEST_CASE("listing: json_string table", "[queue][listing]") {
    struct Row {
        std::string in, out;
    };
    const Row table[] = {
        {"", "\"\""},
        {"plain", "\"plain\""},
        {"a\"b\\c", "\"a\\\"b\\\\c\""},
        {"tab\there", "\"tab\\u0009here\""},
        {std::string("nul\0x", 5), "\"nul\\u0000x\""},
        {"\x7f", "\"\\u007f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},             // valid UTF-8 passes
        {"\xe2\x82\xac", "\"\xe2\x82\xac\""},           // €
        {"\xf0\x9f\x93\xab", "\"\xf0\x9f\x93\xab\""},   // 📫
        {"bad\xff", "\"bad\\u00ff\""},                  // invalid bytes are escaped
        {"\xc3", "\"\\u00c3\""},                        // truncated sequence
        {"\xc0\xaf", "\"\\u00c0\\u00af\""},             // overlong
        {"\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""},  // surrogate
    };
    for (const Row& r : table) {
        INFO(r.out);
        CHECK(json_string(r.in) == r.out);
    }
}

TEST_CASE("listing: control characters never reach the terminal", "[queue][listing]") {
    auto q = sample_queue();
    q.resize(1);
    q[0].env.sender = "evil\x1b[2J@example.org";
    std::string t = list_text(pointers(q), 0);
    CHECK(t.find('\x1b') == std::string::npos);
    CHECK(t.find("evil?[2J@example.org") != std::string::npos);
}
