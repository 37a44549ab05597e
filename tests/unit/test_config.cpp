#include <catch2/catch.hpp>

#include <string>

#include "common/config/config.hpp"

using pbx::config::Config;

namespace {
struct Invalid {
    const char* text;
    int line;
    const char* fragment;  // must appear in the message
};
}  // namespace

TEST_CASE("config schema is sorted and every default is valid", "[config]") {
    auto keys = pbx::config::schema();
    REQUIRE(keys.size() > 10);
    for (size_t i = 1; i < keys.size(); ++i) {
        INFO(keys[i - 1].name << " before " << keys[i].name);
        CHECK(keys[i - 1].name < keys[i].name);
    }
    for (const auto& k : keys) {
        INFO(k.name);
        CHECK(pbx::config::validate(k.type, k.default_value).ok());
        CHECK(!k.doc.empty());
    }
}

TEST_CASE("config: defaults apply when the file is empty", "[config]") {
    auto c = Config::parse("", "empty.conf");
    REQUIRE(c.ok());
    CHECK(c->str("spool_dir") == "/var/spool/pillarbox");
    CHECK(c->size("message_size_limit") == 50u * 1024 * 1024);
    CHECK(c->duration("maximal_queue_lifetime") == std::chrono::hours(24 * 5));
    CHECK(c->list("trusted_networks").empty());
    CHECK_FALSE(c->is_set("spool_dir"));
}

TEST_CASE("config: valid files", "[config]") {
    const char* text =
        "# a comment\n"
        "\n"
        "spool_dir = /tmp/spool\n"
        "domains = example.test, example.org\n"
        "   other.example\n"
        "message_size_limit=10M\n"
        "log_debug = yes\n"
        "smtp_listen = 127.0.0.1:10025 [::1]:10025\n"
        "minimal_backoff_time = 5m\r\n"
        "smtpd_max_recipients = 7\n";
    auto c = Config::parse(text, "t.conf");
    REQUIRE(c.ok());
    CHECK(c->str("spool_dir") == "/tmp/spool");
    CHECK(c->list("domains") ==
          std::vector<std::string>{"example.test", "example.org", "other.example"});
    CHECK(c->size("message_size_limit") == 10u * 1024 * 1024);
    CHECK(c->boolean("log_debug"));
    auto eps = c->endpoints("smtp_listen");
    REQUIRE(eps.size() == 2);
    CHECK(eps[0].host == "127.0.0.1");
    CHECK(eps[0].port == 10025);
    CHECK(eps[1].host == "::1");
    CHECK(c->duration("minimal_backoff_time") == std::chrono::seconds(300));
    CHECK(c->integer("smtpd_max_recipients") == 7);
    CHECK(c->is_set("domains"));
    CHECK(c->show(false).find("spool_dir = /tmp/spool\n") != std::string::npos);
    CHECK(c->show(true).find("runtime_dir = /run/pillarbox\n") != std::string::npos);
}

TEST_CASE("config: invalid files name file, line and problem", "[config]") {
    const Invalid cases[] = {
        {"no_such_key = 1\n", 1, "unknown key 'no_such_key'"},
        {"# c\nspool_dir /x\n", 2, "expected 'key = value'"},
        {"log_debug = perhaps\n", 1, "expected yes or no"},
        {"\n\nmessage_size_limit = 10Q\n", 3, "bad unit"},
        {"smtpd_max_recipients = -3\n", 1, "whole number"},
        {"smtpd_max_recipients = 3x\n", 1, "whole number"},
        {"minimal_backoff_time = soon\n", 1, "duration"},
        {"smtp_listen = 127.0.0.1\n", 1, "host:port"},
        {"smtp_listen = 127.0.0.1:0\n", 1, "bad port"},
        {"smtp_listen = 127.0.0.1:70000\n", 1, "bad port"},
        {"smtp_listen = ::1:25\n", 1, "brackets"},
        {"domains = a\ndomains = b\n", 2, "already set on line 1"},
        {"  indented = 1\n", 1, "continuation line"},
        {"= 1\n", 1, "missing key"},
        {"log_debug = yes\nlog_debug\n", 2, "expected 'key = value'"},
        {"message_size_limit = 99999999999999999999\n", 1, "expected a size"},
    };
    for (const auto& tc : cases) {
        INFO(tc.text);
        auto c = Config::parse(tc.text, "bad.conf");
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().file == "bad.conf");
        CHECK(c.error().line == tc.line);
        CHECK(c.error().to_string().find(tc.fragment) != std::string::npos);
        CHECK(c.error().to_string().rfind("bad.conf:" + std::to_string(tc.line) + ": ", 0) == 0);
    }
}

TEST_CASE("config: NUL byte and unreadable file", "[config]") {
    std::string text("domains = a\0b\n", 14);
    auto c = Config::parse(text, "nul.conf");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().message.find("NUL") != std::string::npos);
    auto missing = Config::load("/nonexistent/pillarbox.conf");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().to_string().find("/nonexistent/pillarbox.conf: cannot read") == 0);
}

TEST_CASE("config: set() validates like the file", "[config]") {
    Config c;
    CHECK(c.set("smtpd_max_recipients", "5").ok());
    CHECK(c.integer("smtpd_max_recipients") == 5);
    CHECK_FALSE(c.set("smtpd_max_recipients", "five").ok());
    CHECK_FALSE(c.set("nope", "1").ok());
}
