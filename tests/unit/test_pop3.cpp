// POP3: the pre-login engine (pop3-login), the session engine (pop3d), the
// command parser, the CRLF/size/UIDL rules and the Maildir and mbox stores.
// Engine transcripts are run with each piece fed whole and again one byte at
// a time; both runs must give the same transcript.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdlib>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "pop3d/login_engine.hpp"
#include "pop3d/maildir_store.hpp"
#include "pop3d/mbox_store.hpp"
#include "pop3d/protocol.hpp"
#include "pop3d/session_engine.hpp"

using namespace pbx;
using namespace pbx::pop3;

namespace {

// ---- pre-login ---------------------------------------------------------------

struct LoginCase {
    std::string name;
    login::ClientFacts facts;
    std::vector<std::string> pieces;
    std::string want;  // the transcript
};

login::ClientFacts plain_facts() {
    login::ClientFacts f;
    f.client_ip = "192.0.2.1";
    f.starttls_offered = true;
    f.hostname = "mail.example.test";
    return f;
}
login::ClientFacts loopback_facts() {
    login::ClientFacts f = plain_facts();
    f.client_ip = "127.0.0.1";
    f.plaintext_allowed = true;
    return f;
}
login::ClientFacts tls_facts() {
    login::ClientFacts f = plain_facts();
    f.tls = true;
    f.starttls_offered = false;
    return f;
}

// Password "good" starts a session (the transcript ends there: the engine is
// done), "temp" is a temporary failure, anything else a wrong password.
std::string run_login(const LoginCase& c, bool bytewise) {
    LoginEngine e(c.facts, LoginLimits{5, 3});
    std::string t;
    bool done = false;
    auto drain = [&](std::string& rest) {
        for (auto& a : e.take_actions()) {
            if (auto* r = std::get_if<login::Reply>(&a)) {
                t += r->text;
            } else if (std::holds_alternative<login::StartTls>(a)) {
                t += "[TLS]";
                rest.clear();  // pipelined plaintext is discarded
                e.tls_started();
            } else if (auto* au = std::get_if<login::Authenticate>(&a)) {
                t += "[AUTH " + au->user + " " + au->password + "]";
                if (au->password == "good") {
                    done = true;
                    return;
                }
                e.auth_result(au->password == "temp" ? login::AuthOutcome::TempFail
                                                     : login::AuthOutcome::Fail);
                for (auto& b : e.take_actions())
                    if (auto* r = std::get_if<login::Reply>(&b))
                        t += r->text;
                    else if (std::holds_alternative<login::Close>(b))
                        t += "[CLOSE]";
            } else if (std::holds_alternative<login::Close>(a)) {
                t += "[CLOSE]";
            }
        }
    };
    e.start();
    std::string none;
    drain(none);
    for (const auto& piece : c.pieces) {
        std::string rest = piece;
        while (!rest.empty() && !done && !e.closed()) {
            size_t n = e.feed(std::string_view(rest).substr(0, bytewise ? 1 : rest.size()));
            rest.erase(0, n);
            drain(rest);
            if (n == 0 && !e.waiting()) break;
        }
        if (done || e.closed()) break;
    }
    return t;
}

const std::string kGreeting = "+OK mail.example.test POP3 server ready.\r\n";
const std::string kAuthFailed = "-ERR [AUTH] Authentication failed.\r\n";
const std::string kPlainRefused =
    "-ERR [AUTH] Plaintext authentication is not allowed without TLS: use STLS first.\r\n";
// "\0alice\0good", "\0alice\0bad", "bob\0alice\0good"
const std::string kPlainGood = "AGFsaWNlAGdvb2Q=";
const std::string kPlainBad = "AGFsaWNlAGJhZA==";
const std::string kPlainOther = "Ym9iAGFsaWNlAGdvb2Q=";

}  // namespace

TEST_CASE("pop3-login: the pre-login state machine", "[pop3][login]") {
    const std::vector<LoginCase> cases = {
        {"USER/PASS over TLS",
         tls_facts(),
         {"USER alice\r\n", "PASS good\r\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH alice good]"},
        {"lower-case verbs, password with spaces",
         tls_facts(),
         {"user alice\r\npass a b c\r\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH alice a b c]" + kAuthFailed},
        {"bare LF line ends",
         tls_facts(),
         {"USER alice\nPASS good\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH alice good]"},
        {"wrong password, then right",
         tls_facts(),
         {"USER alice\r\nPASS bad\r\n", "USER alice\r\nPASS good\r\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH alice bad]" + kAuthFailed +
             "+OK Send your password.\r\n[AUTH alice good]"},
        {"temporary failure",
         tls_facts(),
         {"USER alice\r\nPASS temp\r\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH alice temp]" +
             "-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n"},
        {"three failures close",
         tls_facts(),
         {"USER a\r\nPASS x\r\n", "USER a\r\nPASS y\r\n", "USER a\r\nPASS z\r\n", "USER a\r\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH a x]" + kAuthFailed +
             "+OK Send your password.\r\n[AUTH a y]" + kAuthFailed +
             "+OK Send your password.\r\n[AUTH a z]" +
             "-ERR [AUTH] Authentication failed; too many attempts, closing.\r\n[CLOSE]"},
        {"PASS without USER",
         tls_facts(),
         {"PASS good\r\n"},
         kGreeting + "-ERR No user name given: send USER first.\r\n"},
        {"AUTH PLAIN with initial response",
         tls_facts(),
         {"AUTH PLAIN " + kPlainGood + "\r\n"},
         kGreeting + "[AUTH alice good]"},
        {"AUTH PLAIN with continuation",
         tls_facts(),
         {"AUTH PLAIN\r\n", kPlainGood + "\r\n"},
         kGreeting + "+ \r\n[AUTH alice good]"},
        {"AUTH PLAIN wrong password",
         tls_facts(),
         {"AUTH PLAIN " + kPlainBad + "\r\n"},
         kGreeting + "[AUTH alice bad]" + kAuthFailed},
        {"AUTH PLAIN cancelled",
         tls_facts(),
         {"AUTH PLAIN\r\n", "*\r\n"},
         kGreeting + "+ \r\n-ERR [AUTH] Authentication cancelled.\r\n"},
        {"AUTH PLAIN bad base64",
         tls_facts(),
         {"AUTH PLAIN !!!!\r\n"},
         kGreeting + "-ERR [AUTH] Malformed authentication data.\r\n"},
        {"AUTH PLAIN as another user",
         tls_facts(),
         {"AUTH PLAIN " + kPlainOther + "\r\n"},
         kGreeting + "-ERR [AUTH] Logging in as another user is not allowed.\r\n"},
        {"AUTH LOGIN",
         tls_facts(),
         {"AUTH LOGIN\r\n", "YWxpY2U=\r\n", "Z29vZA==\r\n"},
         kGreeting + "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n[AUTH alice good]"},
        {"AUTH without mechanism lists them",
         tls_facts(),
         {"AUTH\r\n"},
         kGreeting + "+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"},
        {"AUTH unknown mechanism",
         tls_facts(),
         {"AUTH CRAM-MD5\r\n"},
         kGreeting + "-ERR Unsupported authentication mechanism.\r\n"},
        {"CAPA over plaintext: STLS, no USER",
         plain_facts(),
         {"CAPA\r\n"},
         kGreeting + "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
                     "AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION Pillarbox\r\n.\r\n"},
        {"CAPA over TLS: USER and SASL, no STLS",
         tls_facts(),
         {"CAPA\r\n"},
         kGreeting + "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
                     "AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\n"
                     "IMPLEMENTATION Pillarbox\r\n.\r\n"},
        {"passwords refused before TLS",
         plain_facts(),
         {"USER alice\r\n", "PASS good\r\n", "AUTH PLAIN " + kPlainGood + "\r\n"},
         kGreeting + kPlainRefused + kPlainRefused + kPlainRefused},
        {"loopback may log in without TLS",
         loopback_facts(),
         {"USER alice\r\nPASS good\r\n"},
         kGreeting + "+OK Send your password.\r\n[AUTH alice good]"},
        {"STLS, then login",
         plain_facts(),
         {"STLS\r\n", "USER alice\r\nPASS good\r\n"},
         kGreeting +
             "+OK Begin TLS negotiation now.\r\n[TLS]+OK Send your password.\r\n[AUTH alice good]"},
        {"STLS injection: pipelined commands are discarded",
         plain_facts(),
         {"STLS\r\nUSER evil\r\nPASS good\r\n", "CAPA\r\n"},
         kGreeting + "+OK Begin TLS negotiation now.\r\n[TLS]" +
             "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
             "AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\n"
             "IMPLEMENTATION Pillarbox\r\n.\r\n"},
        {"STLS forgets USER",
         plain_facts(),
         {"STLS\r\n", "PASS good\r\n"},
         kGreeting + "+OK Begin TLS negotiation now.\r\n[TLS]" +
             "-ERR No user name given: send USER first.\r\n"},
        {"STLS twice", tls_facts(), {"STLS\r\n"}, kGreeting + "-ERR TLS is already active.\r\n"},
        {"STLS with an argument",
         plain_facts(),
         {"STLS now\r\n"},
         kGreeting + "-ERR STLS takes no arguments.\r\n"},
        {"QUIT", plain_facts(), {"QUIT\r\nCAPA\r\n"}, kGreeting + "+OK Logging out.\r\n[CLOSE]"},
        {"transaction commands before login",
         tls_facts(),
         {"STAT\r\nLIST\r\nRETR 1\r\nNOOP\r\n"},
         kGreeting + "-ERR Log in first.\r\n-ERR Log in first.\r\n-ERR Log in first.\r\n"
                     "-ERR Log in first.\r\n"},
        {"bad commands, then too many",
         tls_facts(),
         {"XYZZY\r\n\r\nAPOP a b\r\nHELLO x\r\nX\r\nCAPA\r\n"},
         kGreeting + "-ERR Unknown command.\r\n-ERR Empty command.\r\n"
                     "-ERR APOP is not supported: use USER/PASS or AUTH.\r\n"
                     "-ERR Unknown command.\r\n-ERR Too many bad commands, closing.\r\n[CLOSE]"},
        {"control characters",
         tls_facts(),
         {std::string("USER a\0b\r\n", 10)},
         kGreeting + "-ERR Control characters in the command.\r\n"},
        {"line too long",
         tls_facts(),
         {"USER " + std::string(300, 'a') + "\r\nCAPA x\r\n"},
         kGreeting + "-ERR Command line too long (255 octets at most).\r\n"
                     "-ERR CAPA takes no arguments.\r\n"},
        {"USER with two names",
         tls_facts(),
         {"USER a b\r\n"},
         kGreeting + "-ERR Usage: USER name\r\n"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        CHECK(run_login(c, false) == c.want);
        CHECK(run_login(c, true) == c.want);
    }
}

TEST_CASE("pop3-login: timeout and shutdown", "[pop3][login]") {
    LoginEngine e(plain_facts(), LoginLimits{});
    e.start();
    (void)e.take_actions();
    e.timed_out();
    auto a = e.take_actions();
    REQUIRE(a.size() == 2);
    CHECK(std::get<login::Reply>(a[0]).text == "-ERR Disconnected for inactivity.\r\n");
    CHECK(std::holds_alternative<login::Close>(a[1]));
    CHECK(e.closed());
    CHECK(e.feed("CAPA\r\n") == 0);
}

// ---- the parser and the message forms ----------------------------------------

TEST_CASE("pop3: command parser", "[pop3][parser]") {
    struct C {
        std::string line;
        bool ok;
        std::string verb;
        size_t args;
    };
    const C cases[] = {
        {"STAT", true, "STAT", 0},
        {"retr 1", true, "RETR", 1},
        {"TOP 1 10", true, "TOP", 2},
        {"LIST  2", true, "LIST", 1},
        {"", false, "", 0},
        {"ST", false, "", 0},
        {"STATS", false, "", 0},
        {"ST1T", false, "", 0},
        {"RETR\t1", false, "", 0},
        {"A B C D E F G H I", false, "", 0},
        {"PASS a b c", true, "PASS", 3},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        auto r = parse_command(c.line);
        CHECK(r.command.has_value() == c.ok);
        if (r.command) {
            CHECK(r.command->verb == c.verb);
            CHECK(r.command->args.size() == c.args);
        }
    }
    CHECK(parse_number("1") == 1u);
    CHECK(parse_number("0") == std::nullopt);
    CHECK(parse_number("0", 10, true) == 0u);
    CHECK(parse_number("-1") == std::nullopt);
    CHECK(parse_number("+1") == std::nullopt);
    CHECK(parse_number("1x") == std::nullopt);
    CHECK(parse_number("99999999999") == std::nullopt);
    CHECK(parse_number("11", 10) == std::nullopt);
}

TEST_CASE("pop3: CRLF form, sizes and UIDLs", "[pop3]") {
    const std::string cases[] = {"",       "a",         "a\n",           "a\r\n",
                                 "a\nb",   "\n\n",      "a\r\nb\nc\r\n", ".\n..\n",
                                 "x\ry\n", "\r\n\r\n\n"};
    for (const auto& c : cases) {
        INFO(c);
        CHECK(crlf_size(c) == to_crlf(c).size());
    }
    CHECK(to_crlf("a\nb") == "a\r\nb\r\n");
    CHECK(to_crlf("a\r\nb\n") == "a\r\nb\r\n");
    CHECK(uidl_for("1700000000.M1P2Q3.host,S=12") == "1700000000.M1P2Q3.host,S=12");
    const std::string long_name(80, 'x');
    CHECK(uidl_for(long_name).size() == 33);
    CHECK(uidl_for(long_name)[0] == 'H');
    CHECK(uidl_for("a b") != "a b");
}

// ---- the session -------------------------------------------------------------

namespace {

struct MemStore : Store {
    std::vector<std::string> texts;
    std::vector<MessageInfo> infos;
    std::vector<bool> committed;
    bool fail_commit = false;
    explicit MemStore(std::vector<std::string> t) : texts(std::move(t)) {
        for (size_t i = 0; i < texts.size(); ++i)
            infos.push_back({crlf_size(texts[i]), "uid" + std::to_string(i + 1)});
    }
    const std::vector<MessageInfo>& messages() const override { return infos; }
    Result<std::string> content(size_t i) override { return texts.at(i); }
    Status commit(const std::vector<bool>& d) override {
        if (fail_commit) return fail("disk on fire");
        committed = d;
        return {};
    }
};

std::string run_session(MemStore& store, const std::vector<std::string>& pieces, bool bytewise,
                        size_t chunk = 7) {
    SessionEngine e(store, SessionLimits{4});
    e.start();
    std::string out;
    auto flush = [&] {
        while (e.has_output()) out += e.take_output(chunk);
    };
    flush();
    for (const auto& p : pieces) {
        std::string rest = p;
        while (!rest.empty() && !e.closed()) {
            size_t n = e.feed(std::string_view(rest).substr(0, bytewise ? 1 : rest.size()));
            rest.erase(0, n);
            flush();
        }
    }
    if (e.closed()) out += "[CLOSE]";
    return out;
}

const std::vector<std::string> kMessages = {"Subject: one\n\nhello\n.dot line\n..two dots\n",
                                            "Subject: two\r\n\r\nbody\r\nline 2\r\n",
                                            "Subject: three\n\nno final newline"};

}  // namespace

TEST_CASE("pop3d: the session state machine", "[pop3][session]") {
    const std::string s1 = std::to_string(crlf_size(kMessages[0]));
    const std::string s2 = std::to_string(crlf_size(kMessages[1]));
    const std::string s3 = std::to_string(crlf_size(kMessages[2]));
    const std::string total =
        std::to_string(crlf_size(kMessages[0]) + crlf_size(kMessages[1]) + crlf_size(kMessages[2]));
    struct C {
        std::string name;
        std::vector<std::string> pieces;
        std::string want;
        std::vector<bool> committed;
    };
    const std::vector<C> cases = {
        {"STAT, LIST, UIDL",
         {"STAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n"},
         "+OK Logged in.\r\n+OK 3 " + total + "\r\n+OK Scan listing follows\r\n1 " + s1 + "\r\n2 " +
             s2 + "\r\n3 " + s3 + "\r\n.\r\n+OK 2 " + s2 +
             "\r\n+OK Unique-ID listing follows\r\n1 uid1\r\n2 uid2\r\n3 uid3\r\n.\r\n"
             "+OK 3 uid3\r\n",
         {}},
        {"RETR: CRLF and dot-stuffing",
         {"RETR 1\r\n"},
         "+OK Logged in.\r\n+OK " + s1 +
             " octets\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n...two dots\r\n.\r\n",
         {}},
        {"RETR of a message without a final newline",
         {"RETR 3\r\n"},
         "+OK Logged in.\r\n+OK " + s3 +
             " octets\r\nSubject: three\r\n\r\nno final newline\r\n.\r\n",
         {}},
        {"TOP",
         {"TOP 2 1\r\nTOP 2 0\r\nTOP 1 99\r\n"},
         "+OK Logged in.\r\n+OK Top of message follows\r\nSubject: two\r\n\r\nbody\r\n.\r\n"
         "+OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n"
         "+OK Top of message follows\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n"
         "...two dots\r\n.\r\n",
         {}},
        {"DELE applies at QUIT",
         {"DELE 2\r\nSTAT\r\nLIST 2\r\nQUIT\r\n"},
         "+OK Logged in.\r\n+OK Message 2 deleted (at QUIT).\r\n+OK 2 " +
             std::to_string(crlf_size(kMessages[0]) + crlf_size(kMessages[2])) +
             "\r\n-ERR Message 2 is deleted.\r\n+OK Logging out, 1 messages deleted.\r\n[CLOSE]",
         {false, true, false}},
        {"RSET undeletes",
         {"DELE 1\r\nRSET\r\nQUIT\r\n"},
         "+OK Logged in.\r\n+OK Message 1 deleted (at QUIT).\r\n+OK 3 messages, none "
         "deleted.\r\n+OK Logging out.\r\n[CLOSE]",
         {}},
        {"no QUIT: nothing deleted",
         {"DELE 1\r\nDELE 2\r\n"},
         "+OK Logged in.\r\n+OK Message 1 deleted (at QUIT).\r\n+OK Message 2 deleted (at "
         "QUIT).\r\n",
         {}},
        {"bad message numbers",
         {"RETR 0\r\nRETR 4\r\nDELE x\r\n"},
         "+OK Logged in.\r\n-ERR Invalid message number: 0\r\n-ERR No such message (the "
         "mailbox has 3).\r\n-ERR Invalid message number: x\r\n",
         {}},
        {"too many bad commands",
         {"FOO\r\nUSER x\r\nRETR\r\nNOOP\r\nNOOP x\r\nNOOP\r\n"},
         "+OK Logged in.\r\n-ERR Unknown command.\r\n-ERR Already logged in.\r\n-ERR Wrong number "
         "of arguments for RETR.\r\n+OK\r\n-ERR Too many bad commands, closing.\r\n[CLOSE]",
         {}},
        {"NOOP, CAPA",
         {"NOOP\r\nCAPA\r\n"},
         "+OK Logged in.\r\n+OK\r\n+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\n"
         "RESP-CODES\r\nPIPELINING\r\nIMPLEMENTATION Pillarbox\r\n.\r\n",
         {}},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        for (bool bytewise : {false, true}) {
            for (size_t chunk : {size_t(1), size_t(7), size_t(65536)}) {
                MemStore st(kMessages);
                CHECK(run_session(st, c.pieces, bytewise, chunk) == c.want);
                CHECK(st.committed == c.committed);
            }
        }
    }
}

TEST_CASE("pop3d: a failed commit says so", "[pop3][session]") {
    MemStore st(kMessages);
    st.fail_commit = true;
    CHECK(run_session(st, {"DELE 1\r\nQUIT\r\n"}, false) ==
          "+OK Logged in.\r\n+OK Message 1 deleted (at QUIT).\r\n-ERR [SYS/TEMP] Some deleted "
          "messages were not removed: disk on fire\r\n[CLOSE]");
}

TEST_CASE("pop3d: RETR bytes equal the LIST size", "[pop3][session]") {
    for (size_t i = 0; i < kMessages.size(); ++i) {
        MemStore st(kMessages);
        std::string out = run_session(st, {"RETR " + std::to_string(i + 1) + "\r\n"}, false);
        size_t start = out.find(" octets\r\n") + 9;
        std::string body = out.substr(start, out.size() - start - 3);
        // Undo the dot-stuffing as a client does.
        std::string unstuffed;
        std::istringstream in(body);
        for (std::string line; std::getline(in, line);)
            unstuffed += (line.starts_with("..") ? line.substr(1) : line) + "\n";
        CHECK(unstuffed.size() == st.infos[i].size);
    }
}

TEST_CASE("pop3d: prefetch of the next RETR's answer changes no byte", "[pop3][session]") {
    struct CountingStore : MemStore {
        using MemStore::MemStore;
        std::vector<int> reads;
        Result<std::string> content(size_t i) override {
            reads.push_back(static_cast<int>(i) + 1);
            return MemStore::content(i);
        }
    };
    const std::vector<std::string> script = {
        "STAT\r\n", "RETR 1\r\n", "RETR 2\r\n", "RETR 3\r\n", "RETR 1\r\n",
        "DELE 2\r\n", "RETR 2\r\n", "TOP 3 0\r\n", "RETR 3\r\n", "NOOP\r\n",
        "QUIT\r\n"};
    CountingStore plain_store(kMessages);
    const std::string expected = run_session(plain_store, script, false);
    for (size_t chunk : {size_t{3}, size_t{1} << 16}) {
        INFO(chunk);
        CountingStore st(kMessages);
        SessionEngine e(st, SessionLimits{4});
        e.start();
        std::string out;
        CHECK_FALSE(e.prefetch());  // output waiting, and no RETR yet
        while (e.has_output()) out += e.take_output(chunk);
        CHECK_FALSE(e.prefetch());  // no RETR yet
        std::vector<bool> did;
        for (const auto& cmd : script) {
            REQUIRE(e.feed(cmd) == cmd.size());
            CHECK_FALSE(e.prefetch());  // the answer is not taken yet
            while (e.has_output()) out += e.take_output(chunk);
            did.push_back(e.prefetch());
        }
        out += e.closed() ? "[CLOSE]" : "";
        CHECK(out == expected);
        // After RETR 1 message 2 is prepared, after RETR 2 message 3, none
        // after the last one; RETR 1 again prepares 2, which DELE then
        // makes useless; TOP reads for itself and prepares nothing.
        CHECK(did == std::vector<bool>{false, true, true, false, true, false, false, false, false,
                                       false, false});
        CHECK(st.reads == std::vector<int>{1, 2, 3, 1, 2, 3, 3});
    }
}

// ---- stores ------------------------------------------------------------------

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-pop3-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("pop3d: Maildir store", "[pop3][maildir]") {
    TempDir d;
    const std::string md = d.path + "/Maildir";
    for (const char* sub : {"", "/new", "/cur", "/tmp"}) ::mkdir((md + sub).c_str(), 0700);
    write_file(md + "/new/1000.M1P1.host,S=10", "A: 1\n\nbody\n");
    write_file(md + "/cur/1001.M1P1.host,S=10:2,S", "A: 2\r\n\r\nbody\r\n");
    write_file(md + "/new/.hidden", "x");
    {
        auto s = MaildirStore::open(md);
        REQUIRE(s);
        auto& st = *s.value();
        REQUIRE(st.messages().size() == 2);
        CHECK(st.messages()[0].uidl == "1000.M1P1.host,S=10");
        CHECK(st.messages()[1].uidl == "1001.M1P1.host,S=10");
        CHECK(st.messages()[0].size == 14);
        CHECK(st.messages()[1].size == 14);
        // A second session is refused while this one runs.
        auto second = MaildirStore::open(md);
        REQUIRE_FALSE(second);
        CHECK(second.error().kind == OpenError::InUse);
        // Another program moves message 1 to cur/: it is found by base name.
        REQUIRE(::rename((md + "/new/1000.M1P1.host,S=10").c_str(),
                         (md + "/cur/1000.M1P1.host,S=10:2,S").c_str()) == 0);
        CHECK(st.content(0).value() == "A: 1\n\nbody\n");
        REQUIRE(st.commit({true, false}));
    }
    auto again = MaildirStore::open(md);
    REQUIRE(again);
    REQUIRE(again.value()->messages().size() == 1);
    CHECK(again.value()->messages()[0].uidl == "1001.M1P1.host,S=10");
    CHECK(read_file(md + "/pillarbox-pop3.sizes").find("1001.M1P1.host,S=10") != std::string::npos);
}

TEST_CASE("pop3d: Maildir sizes from W= in the name, unread and uncached", "[pop3][maildir]") {
    TempDir d;
    const std::string md = d.path + "/Maildir";
    for (const char* sub : {"", "/new", "/cur", "/tmp"}) ::mkdir((md + sub).c_str(), 0700);
    // The W= sizes are deliberately not the files' CRLF sizes (14): they
    // prove that pop3d took them from the name and read no message.
    write_file(md + "/new/1000.M1P1.host,S=10,W=77", "A: 1\n\nbody\n");
    write_file(md + "/cur/1001.M1P1.host,W=88,S=10:2,S", "A: 2\n\nbody\n");
    // Not a W= field: read and cached as usual.
    write_file(md + "/new/1002.M1P1.host,S=10,W=9x", "A: 3\n\nbody\n");
    write_file(md + "/new/1003.M1P1.host,S=10,XW=5", "A: 4\n\nbody\n");
    {
        auto s = MaildirStore::open(md);
        REQUIRE(s);
        auto& st = *s.value();
        REQUIRE(st.messages().size() == 4);
        CHECK(st.messages()[0].size == 77);
        CHECK(st.messages()[1].size == 88);
        CHECK(st.messages()[2].size == 14);
        CHECK(st.messages()[3].size == 14);
        CHECK(st.messages()[1].uidl == "1001.M1P1.host,W=88,S=10");
    }
    const std::string cache = read_file(md + "/pillarbox-pop3.sizes");
    CHECK(cache.find(",W=77") == std::string::npos);
    CHECK(cache.find(",W=88") == std::string::npos);
    CHECK(cache.find("14 1002.M1P1.host,S=10,W=9x\n") != std::string::npos);
    CHECK(cache.find("14 1003.M1P1.host,S=10,XW=5\n") != std::string::npos);
}

TEST_CASE("pop3d: mbox parsing", "[pop3][mbox]") {
    const std::string box =
        "From a@b Thu Nov 26 00:00:00 2026\nSubject: 1\n\n>From here\n>>From there\n\n"
        "From c@d Thu Nov 26 00:00:01 2026\nSubject: 2\n\nx\n\n";
    auto msgs = split_mbox(box);
    REQUIRE(msgs.size() == 2);
    CHECK(mboxrd_unquote(
              std::string_view(box).substr(msgs[0].body, msgs[0].body_end - msgs[0].body)) ==
          "Subject: 1\n\nFrom here\n>From there\n");
    CHECK(box.substr(msgs[1].body, msgs[1].body_end - msgs[1].body) == "Subject: 2\n\nx\n");
    CHECK(msgs[1].end == box.size());
}

TEST_CASE("pop3d: mbox store, both commit paths", "[pop3][mbox]") {
    const std::string m1 = "From a@b Thu Nov 26 00:00:00 2026\nSubject: 1\n\none\n\n";
    const std::string m2 = "From a@b Thu Nov 26 00:00:01 2026\nSubject: 2\n\ntwo\n\n";
    const std::string m3 = "From a@b Thu Nov 26 00:00:02 2026\nSubject: 3\n\n>From three\n\n";
    for (bool writable_dir : {true, false}) {
        INFO(writable_dir);
        TempDir d;
        const std::string dir = d.path + "/spool";
        ::mkdir(dir.c_str(), 0700);
        const std::string path = dir + "/user";
        write_file(path, m1 + m2 + m3 + m2);
        std::vector<std::string> uidls;
        {
            if (!writable_dir) ::chmod(dir.c_str(), 0500);
            MboxStoreOptions opt;
            opt.dotlock = writable_dir || getuid() != 0;
            opt.journal = d.path + "/journal";
            auto s = MboxStore::open(path, opt);
            REQUIRE(s);
            auto& st = *s.value();
            REQUIRE(st.messages().size() == 4);
            for (auto& m : st.messages()) uidls.push_back(m.uidl);
            CHECK(uidls[3] == uidls[1] + "-2");
            CHECK(st.content(2).value() == "Subject: 3\n\nFrom three\n");
            CHECK(st.messages()[2].size == crlf_size("Subject: 3\n\nFrom three\n"));
            if (getuid() != 0)  // root ignores the directory's mode
                CHECK(::access((path + ".lock").c_str(), F_OK) == (writable_dir ? 0 : -1));
            REQUIRE(st.commit({false, true, false, false}));
        }
        ::chmod(dir.c_str(), 0700);
        CHECK(read_file(path) == m1 + m3 + m2);
        CHECK(::access((path + ".lock").c_str(), F_OK) == -1);
        auto s = MboxStore::open(path);
        REQUIRE(s);
        REQUIRE(s.value()->messages().size() == 3);
        CHECK(s.value()->messages()[0].uidl == uidls[0]);
        CHECK(s.value()->messages()[1].uidl == uidls[2]);
        CHECK(s.value()->messages()[2].uidl == uidls[1]);
    }
}

TEST_CASE("pop3d: a missing mbox is an empty mailbox", "[pop3][mbox]") {
    TempDir d;
    auto s = MboxStore::open(d.path + "/nobody");
    REQUIRE(s);
    CHECK(s.value()->messages().empty());
    CHECK(s.value()->commit({}));
}
