// Start-up recovery (queue-manager/recovery.hpp) on a temporary spool with
// one file of every kind a crash or a stray hand can leave.
#include <map>

#include "queue-manager/recovery.hpp"
#include "test_queue_common.hpp"

using namespace pbx;
using namespace pbx::qm;
using qtest::list_dir;
using qtest::put_message;
using qtest::sample_envelope;
using qtest::TempSpool;
using qtest::write_file;

TEST_CASE("recovery: classification of every kind of leftover", "[queue][recovery]") {
    TempSpool spool;
    const auto& p = spool.paths();
    auto id = [](int n) { return qtest::id_at(0x60000000000000ull + static_cast<uint64_t>(n)); };

    // Good: loaded.
    put_message(p, sample_envelope(id(1), 100));
    put_message(p, sample_envelope(id(2), 50), /*held=*/true);
    // incoming/ leftovers: removed.
    write_file(p.incoming_file(id(3)), "half a message");
    write_file(p.incoming + "/junk", "x");
    // An interrupted envelope update: removed.
    write_file(p.envelope_file(id(1)) + ".tmp.123.4", "pillarbox-envelope 1\n");
    // Orphans: moved.
    write_file(p.message_file(id(4)), "no envelope");
    write_file(p.envelope_file(id(5)), "no message");
    // Unparsable envelope: both files moved.
    write_file(p.message_file(id(6)), "m");
    write_file(p.envelope_file(id(6)), "pillarbox-envelope 1\nid: x\n");
    // An envelope naming another ID: both moved.
    {
        auto env = sample_envelope(id(8), 1);
        write_file(p.message_file(id(7)), "m");
        write_file(p.envelope_file(id(7)), *spool::write_envelope(env));
    }
    // A message whose size is not the envelope's: both moved.
    {
        auto env = sample_envelope(id(9), 10);
        put_message(p, env);
        write_file(p.message_file(id(9)), "short");
    }
    // Not a queue file name.
    write_file(p.queue + "/README", "hello");
    // A directory in queue/.
    REQUIRE(::mkdir((p.queue + "/" + id(10).str() + ".msg").c_str(), 0700) == 0);

    auto report = recover_spool(p);
    REQUIRE(report.ok());
    CHECK(report->errors.empty());

    REQUIRE(report->entries.size() == 2);
    CHECK(report->entries[0].env.id == id(1));
    CHECK_FALSE(report->entries[0].held);
    CHECK(report->entries[1].env.id == id(2));
    CHECK(report->entries[1].held);

    std::vector<std::string> removed = report->removed;
    std::sort(removed.begin(), removed.end());
    CHECK(removed == std::vector<std::string>{"incoming/" + id(3).str(), "incoming/junk",
                                              "queue/" + id(1).str() + ".env.tmp.123.4"});

    std::map<std::string, std::string> moved;  // from → reason
    for (const auto& m : report->corrupted) {
        CHECK(m.to.rfind("corrupt/", 0) == 0);
        moved[m.from] = m.reason;
    }
    auto q = [](const spool::QueueId& i, const char* suffix) {
        return "queue/" + i.str() + suffix;
    };
    CHECK(moved.size() == 10);
    CHECK(moved[q(id(4), ".msg")] == "message without envelope");
    CHECK(moved[q(id(5), ".env")] == "envelope without message");
    CHECK(moved[q(id(6), ".env")].rfind("unreadable envelope", 0) == 0);
    CHECK(moved.count(q(id(6), ".msg")) == 1);
    CHECK(moved[q(id(7), ".env")].find("is not its file name") != std::string::npos);
    CHECK(moved.count(q(id(7), ".msg")) == 1);
    CHECK(moved[q(id(9), ".msg")].find("octets") != std::string::npos);
    CHECK(moved.count(q(id(9), ".env")) == 1);
    CHECK(moved["queue/README"] == "not a queue file");
    CHECK(moved.count(q(id(10), ".msg")) == 1);

    CHECK(list_dir(p.incoming).empty());
    CHECK(list_dir(p.queue) == std::vector<std::string>{id(1).str() + ".env", id(1).str() + ".msg",
                                                        id(2).str() + ".msg"});
    CHECK(list_dir(p.hold) == std::vector<std::string>{id(2).str() + ".env"});
    CHECK(list_dir(p.corrupt).size() == 10);

    // A second run finds a clean spool and changes nothing.
    auto again = recover_spool(p);
    REQUIRE(again.ok());
    CHECK(again->entries.size() == 2);
    CHECK(again->removed.empty());
    CHECK(again->corrupted.empty());
}

TEST_CASE("recovery: corrupt/ never loses a file of the same name", "[queue][recovery]") {
    TempSpool spool;
    const auto& p = spool.paths();
    auto i = qtest::id_at(0x60000000000001ull);
    write_file(p.corrupt + "/" + i.str() + ".msg", "an older one");
    write_file(p.message_file(i), "orphan");
    auto report = recover_spool(p);
    REQUIRE(report.ok());
    REQUIRE(report->corrupted.size() == 1);
    CHECK(report->corrupted[0].to == "corrupt/" + i.str() + ".msg.1");
    CHECK(qtest::read_file(p.corrupt + "/" + i.str() + ".msg") == "an older one");
}
