// Shared by the event and smtpd glue tests: temp directories, a self-signed
// certificate made with the OpenSSL API, and a loop runner with a safety net.
#pragma once

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/c_ptr.hpp"

namespace eventtest {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/pbx-event-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// A self-signed P-256 certificate for "localhost", written as PEM.
struct TestCert {
    TempDir dir;
    std::string cert, key;
    TestCert() {
        cert = dir.path + "/cert.pem";
        key = dir.path + "/key.pem";
        pbx::EvpPkeyPtr pkey(EVP_EC_gen("P-256"));
        REQUIRE(pkey);
        pbx::X509Ptr x(X509_new());
        REQUIRE(x);
        X509_set_version(x.get(), 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
        X509_gmtime_adj(X509_getm_notBefore(x.get()), -60);
        X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
        X509_set_pubkey(x.get(), pkey.get());
        X509_NAME* name = X509_get_subject_name(x.get());
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(x.get(), name);
        REQUIRE(X509_sign(x.get(), pkey.get(), EVP_sha256()) > 0);
        FILE* f = std::fopen(cert.c_str(), "w");
        REQUIRE(f);
        PEM_write_X509(f, x.get());
        std::fclose(f);
        f = std::fopen(key.c_str(), "w");
        REQUIRE(f);
        PEM_write_PrivateKey(f, pkey.get(), nullptr, nullptr, 0, nullptr, nullptr);
        std::fclose(f);
    }
};

inline const TestCert& test_cert() {
    static TestCert c;
    return c;
}

// Runs the loop until done() or a 20 s safety net.
template <class F>
void run_until(event_base* base, F done) {
    using namespace std::chrono_literals;
    const auto stop = std::chrono::steady_clock::now() + 20s;
    pbx::EventPtr tick(evtimer_new(
        base, [](evutil_socket_t, short, void*) {}, nullptr));
    timeval tv{0, 20 * 1000};
    while (!done() && std::chrono::steady_clock::now() < stop) {
        event_add(tick.get(), &tv);  // so that EVLOOP_ONCE never blocks for long
        event_base_loop(base, EVLOOP_ONCE);
    }
    REQUIRE(done());
}

}  // namespace eventtest
