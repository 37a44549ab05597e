// pop3d's crash-safe in-place mbox rewrite (pop3d/mbox_journal.hpp): a crash
// at every stage of the rewrite, followed by mail appended before the next
// session, ends in the same mailbox once that session has opened it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/unique_fd.hpp"
#include "pop3d/mbox_journal.hpp"
#include "pop3d/mbox_store.hpp"

using namespace pbx;
using namespace pbx::pop3;

namespace {

struct JournalDir {
    std::string path;
    JournalDir() {
        char tmpl[] = "/tmp/pbx-mbox-journal-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~JournalDir() { std::system(("rm -rf " + path).c_str()); }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void put(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

void append(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

bool exists(const std::string& path) {
    return ::access(path.c_str(), F_OK) == 0;
}

std::string message(int n, size_t body) {
    return "From a@b Thu Nov 26 00:00:0" + std::to_string(n) +
           " 2026\nSubject: " + std::to_string(n) + "\n\n" + std::string(body, char('a' + n)) +
           "\n\n";
}

}  // namespace

TEST_CASE("mbox journal: a rewrite drops the deleted message and leaves no journal",
          "[pop3][mbox][journal]") {
    JournalDir d;
    const std::string box = d.file("box"), journal = d.file("journal");
    const std::string m1 = message(1, 10), m2 = message(2, 300), m3 = message(3, 20);
    put(box, m1 + m2 + m3);
    UniqueFd fd(::open(box.c_str(), O_RDWR));
    REQUIRE(fd);
    REQUIRE(mbox_rewrite(fd.get(), journal, {m1.size(), (m1 + m2 + m3).size(), m3}));
    CHECK(slurp(box) == m1 + m3);
    CHECK_FALSE(exists(journal));
    CHECK_FALSE(exists(journal + ".tmp"));
    // No journal path: refused, the mailbox untouched.
    CHECK_FALSE(mbox_rewrite(fd.get(), "", {0, (m1 + m3).size(), m3}));
    CHECK(slurp(box) == m1 + m3);
}

TEST_CASE("mbox journal: a crash at any stage is finished by the next session",
          "[pop3][mbox][journal]") {
    enum Stage { JournalOnly, HalfWritten, Written, Truncated };
    for (Stage stage : {JournalOnly, HalfWritten, Written, Truncated}) {
        // Mail appended after the crash, before the next session: none,
        // shorter than the deleted message, and longer than it.
        for (size_t later_body : {size_t{0}, size_t{5}, size_t{900}}) {
            INFO("stage " << stage << ", later mail body " << later_body);
            JournalDir d;
            const std::string box = d.file("box"), journal = d.file("journal");
            const std::string m1 = message(1, 10), m2 = message(2, 300), m3 = message(3, 40);
            const std::string m4 = later_body ? message(4, later_body) : "";
            put(box, m1 + m2 + m3);
            {
                UniqueFd fd(::open(box.c_str(), O_RDWR));
                REQUIRE(fd);
                REQUIRE(
                    mbox_write_journal(fd.get(), journal, {m1.size(), (m1 + m2 + m3).size(), m3}));
                // What the rewrite got done before the "crash".
                if (stage == HalfWritten)
                    REQUIRE(::pwrite(fd.get(), m3.data(), m3.size() / 2, off_t(m1.size())) > 0);
                if (stage >= Written)
                    REQUIRE(::pwrite(fd.get(), m3.data(), m3.size(), off_t(m1.size())) ==
                            ssize_t(m3.size()));
                if (stage == Truncated)
                    REQUIRE(::ftruncate(fd.get(), off_t(m1.size() + m3.size())) == 0);
            }
            append(box, m4);
            MboxStoreOptions opt;
            opt.journal = journal;
            auto s = MboxStore::open(box, opt);
            REQUIRE(s);
            CHECK_FALSE(s.value()->recovered().empty());
            CHECK(slurp(box) == m1 + m3 + m4);
            CHECK(s.value()->messages().size() == (m4.empty() ? 2u : 3u));
            CHECK_FALSE(exists(journal));
        }
    }
}

TEST_CASE("mbox journal: a damaged journal stops the session, another file's is dropped",
          "[pop3][mbox][journal]") {
    JournalDir d;
    const std::string box = d.file("box"), journal = d.file("journal");
    const std::string m1 = message(1, 10), m2 = message(2, 30);
    put(box, m1 + m2);
    {
        const std::string other = d.file("other");
        put(other, m1 + m2);
        UniqueFd fd(::open(other.c_str(), O_RDWR));
        REQUIRE(mbox_write_journal(fd.get(), journal, {0, (m1 + m2).size(), m2}));
    }
    MboxStoreOptions opt;
    opt.journal = journal;
    {
        auto s = MboxStore::open(box, opt);
        REQUIRE(s);
        CHECK(s.value()->recovered().find("replaced") != std::string::npos);
        CHECK(s.value()->messages().size() == 2);
    }
    CHECK_FALSE(exists(journal));
    CHECK(slurp(box) == m1 + m2);

    // Damaged (cut short): nothing is guessed.
    {
        UniqueFd fd(::open(box.c_str(), O_RDWR));
        REQUIRE(mbox_write_journal(fd.get(), journal, {0, (m1 + m2).size(), m2}));
    }
    std::string text = slurp(journal);
    put(journal, text.substr(0, text.size() - 3));
    auto s = MboxStore::open(box, opt);
    REQUIRE_FALSE(s);
    CHECK(s.error().message.find("damaged") != std::string::npos);
    CHECK(slurp(box) == m1 + m2);
}

TEST_CASE("mbox journal: the store's in-place commit goes through the journal",
          "[pop3][mbox][journal]") {
    JournalDir d;
    const std::string box = d.file("box"), journal = d.file("journal");
    const std::string m1 = message(1, 10), m2 = message(2, 30), m3 = message(3, 50);
    put(box, m1 + m2 + m3);
    MboxStoreOptions opt;
    opt.dotlock = false;  // as on a /var/mail the user cannot write
    {
        auto s = MboxStore::open(box, opt);  // no journal path
        REQUIRE(s);
        CHECK_FALSE(s.value()->commit({false, true, false}));
    }
    CHECK(slurp(box) == m1 + m2 + m3);
    opt.journal = journal;
    {
        auto s = MboxStore::open(box, opt);
        REQUIRE(s);
        append(box, m1);  // arrives during the session (a writer ignoring the lock)
        REQUIRE(s.value()->commit({true, false, true}));
    }
    CHECK(slurp(box) == m2 + m1);
    CHECK_FALSE(exists(journal));
}
