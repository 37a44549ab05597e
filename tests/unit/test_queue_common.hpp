// Helpers shared by the queue-manager's unit tests: a temporary spool
// directory, file helpers and a sample envelope.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/spool/envelope.hpp"
#include "common/spool/layout.hpp"

namespace qtest {

// A spool_dir with its five subdirectories, removed at the end.
class TempSpool {
  public:
    TempSpool() : paths_(make()) {
        for (const std::string* d :
             {&paths_.incoming, &paths_.queue, &paths_.hold, &paths_.corrupt, &paths_.maildrop})
            REQUIRE(::mkdir(d->c_str(), 0700) == 0);
    }
    ~TempSpool() {
        std::error_code ec;
        std::filesystem::remove_all(paths_.root, ec);
    }
    TempSpool(const TempSpool&) = delete;
    TempSpool& operator=(const TempSpool&) = delete;

    const pbx::spool::SpoolPaths& paths() const { return paths_; }
    std::string path(const std::string& rel) const { return paths_.root + "/" + rel; }

  private:
    static pbx::spool::SpoolPaths make() {
        char tmpl[] = "/tmp/pbx-queue-test.XXXXXX";
        char* p = ::mkdtemp(tmpl);
        REQUIRE(p != nullptr);
        return pbx::spool::SpoolPaths(p);
    }
    pbx::spool::SpoolPaths paths_;
};

// Sorted names in a directory.
inline std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

inline void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
    REQUIRE(out.good());
}

inline pbx::spool::Seconds at(int64_t secs) {
    return pbx::spool::Seconds{std::chrono::seconds{secs}};
}

// A fixed ID: 14 hex digits of microseconds, 6 of pid.
inline pbx::spool::QueueId id_at(uint64_t micros, uint32_t tag = 0x1234) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%014llx%06x", static_cast<unsigned long long>(micros), tag);
    return *pbx::spool::QueueId::parse(buf);
}

// An SMTP envelope with two recipients.
inline pbx::spool::Envelope sample_envelope(const pbx::spool::QueueId& id, uint64_t size = 0) {
    pbx::spool::Envelope env;
    env.id = id;
    env.arrival = at(1700000000);
    env.origin = pbx::spool::Origin::Smtp;
    env.client_address = "192.0.2.7";
    env.client_hostname = "client.example.net";
    env.helo = "client.example.net";
    env.protocol = "ESMTPS";
    env.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
    env.sender = "alice@example.net";
    env.size = size;
    pbx::spool::Recipient a;
    a.address = "bob@example.test";
    pbx::spool::Recipient b;
    b.address = "carol@example.org";
    env.recipients = {a, b};
    return env;
}

// Writes queue/ID.msg (of env.size octets) and the envelope, as a commit would.
inline void put_message(const pbx::spool::SpoolPaths& paths, const pbx::spool::Envelope& env,
                        bool held = false) {
    write_file(paths.message_file(env.id), std::string(env.size, 'x'));
    auto text = pbx::spool::write_envelope(env);
    REQUIRE(text.ok());
    write_file(held ? paths.held_envelope_file(env.id) : paths.envelope_file(env.id), *text);
}

}  // namespace qtest
