// The DSN composer (common/dsn/dsn.hpp): the result is split back into its
// MIME parts by a small parser here and each part checked; tables of RET
// FULL/HDRS, ENVID, ORCPT, several recipients, a huge original cut to its
// header, a boundary that the content tries to contain, and the line limits.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "common/dsn/dsn.hpp"

using namespace pbx::dsn;

namespace {

const std::string kOriginal =
    "Received: by mail.example.test (Pillarbox) id 060a24181e40000004d2\r\n"
    "From: <alice@example.test>\r\n"
    "Subject: lunch\r\n"
    "\r\n"
    "Shall we?\r\n";

Report base_report() {
    Report r;
    r.reporting_mta = "mail.example.test";
    r.to = "alice@example.test";
    r.message_id = "060a2418200000000001@mail.example.test";
    r.date = 1700000600;
    r.arrival = 1700000000;
    r.original_queue_id = "060a24181e40000004d2";
    r.original_sender = "alice@example.test";
    RecipientReport rr;
    rr.final_recipient = "nosuch@example.test";
    rr.action = Action::Failed;
    rr.reply = "550 5.1.1 <nosuch@example.test>: user unknown";
    rr.last_attempt = 1700000500;
    r.recipients.push_back(rr);
    r.return_full = true;
    r.original = kOriginal;
    return r;
}

struct Part {
    std::map<std::string, std::string> headers;  // lower-case name → unfolded value
    std::string body;
};

// Unfolded header fields of a header block (CRLF lines).
std::map<std::string, std::string> parse_headers(const std::string& block,
                                                 std::vector<std::string>* order = nullptr) {
    std::map<std::string, std::string> out;
    std::string last;
    size_t pos = 0;
    while (pos < block.size()) {
        size_t e = block.find("\r\n", pos);
        if (e == std::string::npos) e = block.size();
        std::string line = block.substr(pos, e - pos);
        pos = e + 2;
        if (line.empty()) continue;
        if (line[0] == ' ' || line[0] == '\t') {
            out[last] += " " + line.substr(1);
            continue;
        }
        size_t colon = line.find(':');
        REQUIRE(colon != std::string::npos);
        last = line.substr(0, colon);
        for (char& c : last) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string v = line.substr(colon + 1);
        if (!v.empty() && v[0] == ' ') v.erase(0, 1);
        REQUIRE(out.count(last) == 0);
        out[last] = v;
        if (order) order->push_back(last);
    }
    return out;
}

std::string boundary_of(const std::string& content_type) {
    size_t b = content_type.find("boundary=\"");
    REQUIRE(b != std::string::npos);
    size_t start = b + 10;
    return content_type.substr(start, content_type.find('"', start) - start);
}

struct Parsed {
    std::map<std::string, std::string> headers;
    std::vector<Part> parts;
};

Parsed parse(const std::string& text) {
    Parsed p;
    size_t hend = text.find("\r\n\r\n");
    REQUIRE(hend != std::string::npos);
    p.headers = parse_headers(text.substr(0, hend + 2));
    std::string boundary = boundary_of(p.headers["content-type"]);
    std::string delim = "\r\n--" + boundary;
    size_t pos = text.find("--" + boundary + "\r\n");
    REQUIRE(pos != std::string::npos);
    pos += boundary.size() + 4;
    for (;;) {
        size_t next = text.find(delim, pos);
        REQUIRE(next != std::string::npos);
        std::string part = text.substr(pos, next - pos);
        size_t ph = part.find("\r\n\r\n");
        REQUIRE(ph != std::string::npos);
        p.parts.push_back({parse_headers(part.substr(0, ph + 2)), part.substr(ph + 4)});
        pos = next + delim.size();
        if (text.compare(pos, 4, "--\r\n") == 0) {
            REQUIRE(pos + 4 == text.size());
            break;
        }
        REQUIRE(text.compare(pos, 2, "\r\n") == 0);
        pos += 2;
    }
    return p;
}

// The delivery-status part: the per-message block and one per recipient.
std::vector<std::map<std::string, std::string>> status_blocks(const std::string& body) {
    std::vector<std::map<std::string, std::string>> out;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t e = body.find("\r\n\r\n", pos);
        std::string block =
            body.substr(pos, e == std::string::npos ? std::string::npos : e + 2 - pos);
        out.push_back(parse_headers(block));
        if (e == std::string::npos) break;
        pos = e + 4;
    }
    return out;
}

void check_lines(const std::string& text) {
    size_t pos = 0;
    while (pos < text.size()) {
        size_t e = text.find('\n', pos);
        REQUIRE(e != std::string::npos);  // ends with a line end
        REQUIRE(e > pos);
        CHECK(text[e - 1] == '\r');  // CRLF only
        CHECK(e - pos - 1 <= 998);
        pos = e + 1;
    }
}

}  // namespace

TEST_CASE("dsn: a failure notice with the whole original", "[dsn]") {
    Report r = base_report();
    Composed c = compose(r);
    check_lines(c.text);
    CHECK_FALSE(c.eight_bit);
    Parsed p = parse(c.text);
    CHECK(p.headers["from"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>");
    CHECK(p.headers["to"] == "<alice@example.test>");
    CHECK(p.headers["subject"] == "Undelivered Mail Returned to Sender");
    CHECK(p.headers["auto-submitted"] == "auto-replied");
    CHECK(p.headers["mime-version"] == "1.0");
    CHECK(p.headers["message-id"] == "<060a2418200000000001@mail.example.test>");
    CHECK(p.headers["date"].find("2023") != std::string::npos);
    CHECK(p.headers["content-type"].rfind("multipart/report; report-type=delivery-status;", 0) ==
          0);
    REQUIRE(p.parts.size() == 3);
    CHECK(p.parts[0].headers["content-type"] == "text/plain; charset=us-ascii");
    CHECK(p.parts[0].body.find("<nosuch@example.test>: failed: 550 5.1.1") != std::string::npos);
    CHECK(p.parts[1].headers["content-type"] == "message/delivery-status");
    auto blocks = status_blocks(p.parts[1].body);
    REQUIRE(blocks.size() == 2);
    CHECK(blocks[0]["reporting-mta"] == "dns; mail.example.test");
    CHECK(blocks[0].count("original-envelope-id") == 0);
    CHECK(blocks[0]["arrival-date"].find("14 Nov 2023") != std::string::npos);
    CHECK(blocks[1]["final-recipient"] == "rfc822; nosuch@example.test");
    CHECK(blocks[1].count("original-recipient") == 0);
    CHECK(blocks[1]["action"] == "failed");
    CHECK(blocks[1]["status"] == "5.1.1");
    CHECK(blocks[1]["diagnostic-code"] == "smtp; 550 5.1.1 <nosuch@example.test>: user unknown");
    CHECK(blocks[1].count("last-attempt-date") == 1);
    CHECK(blocks[1].count("will-retry-until") == 0);
    CHECK(blocks[1].count("remote-mta") == 0);
    CHECK(p.parts[2].headers["content-type"] == "message/rfc822");
    CHECK(p.parts[2].body == kOriginal);
}

TEST_CASE("dsn: RET, ENVID, ORCPT, several recipients", "[dsn]") {
    struct Row {
        const char* name;
        bool full;
        std::string envid;
        std::string orcpt;
        std::string want_orcpt;
        std::string part_type;
    } rows[] = {
        {"full, no envid", true, "", "", "", "message/rfc822"},
        {"headers, envid", false, "QQ314159", "", "", "text/rfc822-headers"},
        {"orcpt", true, "", "rfc822;b+x@example.org", "rfc822; b+x@example.org", "message/rfc822"},
        {"orcpt without type kept", false, "E1", "b@x", "b@x", "text/rfc822-headers"},
    };
    for (const Row& row : rows) {
        INFO(row.name);
        Report r = base_report();
        r.return_full = row.full;
        r.envid = row.envid;
        r.recipients[0].original_recipient = row.orcpt;
        RecipientReport second;
        second.final_recipient = "carol@example.org";
        second.action = Action::Failed;
        second.reply = "4.4.7 message expired: 451 4.3.0 try later";
        second.remote_mta = "mx.example.org";
        r.recipients.push_back(second);
        Composed c = compose(r);
        check_lines(c.text);
        Parsed p = parse(c.text);
        REQUIRE(p.parts.size() == 3);
        auto blocks = status_blocks(p.parts[1].body);
        REQUIRE(blocks.size() == 3);
        if (row.envid.empty())
            CHECK(blocks[0].count("original-envelope-id") == 0);
        else
            CHECK(blocks[0]["original-envelope-id"] == row.envid);
        if (row.want_orcpt.empty())
            CHECK(blocks[1].count("original-recipient") == 0);
        else
            CHECK(blocks[1]["original-recipient"] == row.want_orcpt);
        CHECK(blocks[2]["final-recipient"] == "rfc822; carol@example.org");
        CHECK(blocks[2]["status"] == "4.4.7");
        CHECK(blocks[2]["remote-mta"] == "dns; mx.example.org");
        CHECK(blocks[2]["diagnostic-code"] ==
              "x-pillarbox; 4.4.7 message expired: 451 4.3.0 try later");
        CHECK(blocks[2].count("last-attempt-date") == 0);
        CHECK(p.parts[2].headers["content-type"] == row.part_type);
        if (row.full) {
            CHECK(p.parts[2].body == kOriginal);
        } else {
            CHECK(p.parts[2].body == kOriginal.substr(0, kOriginal.find("\r\n\r\n") + 2));
            CHECK(p.parts[2].body.find("Shall we?") == std::string::npos);
        }
    }
}

TEST_CASE("dsn: delay and success notices", "[dsn]") {
    Report r = base_report();
    r.return_full = false;
    r.recipients[0].action = Action::Delayed;
    r.recipients[0].reply = "451 4.2.0 mailbox busy";
    r.will_retry_until = 1700432000;
    RecipientReport ok;
    ok.final_recipient = "bob@example.test";
    ok.action = Action::Delivered;
    ok.reply = "250 2.0.0 delivered to maildir";
    r.recipients.push_back(ok);
    Parsed p = parse(compose(r).text);
    CHECK(p.headers["subject"] == "Delayed Mail (still being retried)");
    auto blocks = status_blocks(p.parts[1].body);
    REQUIRE(blocks.size() == 3);
    CHECK(blocks[1]["action"] == "delayed");
    CHECK(blocks[1]["status"] == "4.2.0");
    CHECK(blocks[1]["will-retry-until"].find("Nov 2023") != std::string::npos);
    CHECK(blocks[2]["action"] == "delivered");
    CHECK(blocks[2]["status"] == "2.0.0");
    CHECK(blocks[2].count("will-retry-until") == 0);
    CHECK(p.parts[0].body.find("WARNING ONLY") != std::string::npos);

    r.recipients.erase(r.recipients.begin());
    CHECK(parse(compose(r).text).headers["subject"] == "Successful Mail Delivery Report");
    r.recipients[0].action = Action::Relayed;
    CHECK(status_blocks(parse(compose(r).text).parts[1].body)[1]["action"] == "relayed");
    r.postmaster_copy = true;
    r.to = "postmaster@mail.example.test";
    r.recipients[0].action = Action::Failed;
    Parsed pm = parse(compose(r).text);
    CHECK(pm.headers["subject"] == "Postmaster Copy: Undelivered Mail");
    CHECK(pm.headers["to"] == "<postmaster@mail.example.test>");
}

TEST_CASE("dsn: a huge original is cut to its header section", "[dsn]") {
    std::string big = "From: <a@example.test>\r\nSubject: big\r\n\r\n";
    for (int i = 0; i < 20000; ++i) big += "0123456789012345678901234567890123456789\r\n";
    Report r = base_report();
    r.return_full = false;
    r.original = big;
    Composed c = compose(r);
    CHECK(c.text.size() < 8000);
    Parsed p = parse(c.text);
    CHECK(p.parts[2].headers["content-type"] == "text/rfc822-headers");
    CHECK(p.parts[2].body == "From: <a@example.test>\r\nSubject: big\r\n");

    // Only a prefix was read, and it ends mid-header: cut at the last line.
    CHECK(header_section("A: 1\r\nB: 2\r\nC: par", 1000) == "A: 1\r\nB: 2\r\n");
    CHECK(header_section("A: 1\r\n\r\nbody", 1000) == "A: 1\r\n\r\n");
    CHECK(header_section("A: 1\r\nB: 2\r\n\r\n", 8) == "A: 1\r\n");
    CHECK(header_section("", 10).empty());
}

TEST_CASE("dsn: the boundary never occurs in the content", "[dsn]") {
    Report r = base_report();
    std::string first = compose(r).text;
    std::string boundary = boundary_of(parse(first).headers["content-type"]);
    // An original that holds the boundary we would have chosen, and the
    // next one, as a delimiter line.
    std::string hostile = kOriginal + "--" + boundary + "\r\n--" + boundary + ".1--\r\n";
    r.original = hostile;
    Composed c = compose(r);
    Parsed p = parse(c.text);
    std::string chosen = boundary_of(p.headers["content-type"]);
    CHECK(chosen != boundary);
    CHECK(chosen != boundary + ".1");
    REQUIRE(p.parts.size() == 3);
    CHECK(p.parts[2].body == hostile);
}

TEST_CASE("dsn: long and hostile replies stay within the line limit", "[dsn]") {
    Report r = base_report();
    r.recipients[0].reply = "550 5.7.1 " + std::string(3000, 'x') + " and " + std::string(50, 'y') +
                            " \xc3\xa9\r\nInjected: yes";
    r.original = "Subject: caf\xc3\xa9\r\n\r\n\xc3\xa9\r\n";
    Composed c = compose(r);
    check_lines(c.text);
    CHECK(c.eight_bit);
    Parsed p = parse(c.text);
    CHECK(p.headers["content-transfer-encoding"] == "8bit");
    CHECK(p.parts[2].headers["content-transfer-encoding"] == "8bit");
    auto blocks = status_blocks(p.parts[1].body);
    CHECK(blocks[1].count("injected") == 0);
    CHECK(blocks[1]["status"] == "5.7.1");
    // Parts 1 and 2 are 7-bit.
    for (int i = 0; i < 2; ++i)
        for (char ch : p.parts[i].body) CHECK(static_cast<unsigned char>(ch) < 0x80);
}

TEST_CASE("dsn: status codes from replies", "[dsn]") {
    struct Row {
        std::string reply;
        Action action;
        std::string want;
    } rows[] = {
        {"550 5.1.1 user unknown", Action::Failed, "5.1.1"},
        {"550-5.7.1 no", Action::Failed, "5.7.1"},
        {"552 5.3.4 Message size exceeds", Action::Failed, "5.3.4"},
        {"4.4.7 message expired: 451 x", Action::Failed, "4.4.7"},
        {"554 transaction failed", Action::Failed, "5.0.0"},
        {"451 try later", Action::Delayed, "4.0.0"},
        {"250 ok", Action::Delivered, "2.0.0"},
        {"", Action::Failed, "5.0.0"},
        {"", Action::Delayed, "4.0.0"},
        {"", Action::Relayed, "2.0.0"},
        {"550 5.1 short", Action::Failed, "5.0.0"},
        {"550 5.1.1234 long", Action::Failed, "5.0.0"},
        {"550 6.1.1 bad class", Action::Failed, "5.0.0"},
        {"garbage", Action::Failed, "5.0.0"},
        {"55", Action::Failed, "5.0.0"},
    };
    for (const Row& row : rows) {
        INFO(row.reply);
        CHECK(status_of(row.reply, row.action) == row.want);
    }
}
