// libFuzzer target: the SASL decoders of submitd (strict base64, PLAIN,
// the PLAIN/LOGIN exchange) and the submission header filter.
//
// Input layout: byte 0 picks what to exercise, the rest is the client's
// bytes (for the exchange: lines separated by '\n'). Checked promises (abort
// on violation):
//   - base64_decode accepts only canonical text: decode then encode gives
//     the input back; encode then decode gives the bytes back;
//   - decode_plain returns non-empty user and password without NUL;
//   - an exchange ends (Done or Failed) within three responses, and Done
//     credentials have a non-empty user and password without NUL;
//   - the header filter passes every byte through (the output is the input
//     with at most the two added fields), whole or byte by byte alike.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/smtp/sasl.hpp"
#include "common/smtp/submission_filter.hpp"

using namespace pbx::smtp;

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

bool clean(const std::string& s) {
    return !s.empty() && s.find('\0') == std::string::npos;
}

void check_base64(std::string_view in) {
    auto d = sasl::base64_decode(in);
    if (d) require(sasl::base64_encode(*d) == in);
    auto back = sasl::base64_decode(sasl::base64_encode(in));
    require(back.ok() && *back == in);
}

void check_plain(std::string_view in) {
    auto c = sasl::decode_plain(in);
    if (c) require(clean(c->authcid) && clean(c->password));
}

void check_exchange(std::string_view in, sasl::Mechanism m, bool initial) {
    sasl::Exchange x(m);
    size_t nl = in.find('\n');
    std::string_view first = in.substr(0, nl);
    auto step = initial ? x.start(first) : x.start(std::nullopt);
    std::string_view rest = initial ? (nl == std::string_view::npos ? "" : in.substr(nl + 1)) : in;
    int rounds = 0;
    while (step.kind == sasl::Exchange::Step::Kind::Challenge) {
        require(++rounds <= 3);
        if (rest.empty()) return;
        nl = rest.find('\n');
        step = x.respond(rest.substr(0, nl));
        rest = nl == std::string_view::npos ? "" : rest.substr(nl + 1);
    }
    if (step.kind == sasl::Exchange::Step::Kind::Done)
        require(clean(x.credentials().authcid) && clean(x.credentials().password));
}

void check_filter(std::string_view in) {
    SubmissionFilter::Options o;
    o.date = "Thu, 1 Jan 2026 00:00:00 +0000";
    o.message_id = "<x@y>";
    o.max_header = 4096;
    SubmissionFilter whole(o), bytes(o);
    std::string a = whole.feed(in);  // before finish(): + would not order them
    a += whole.finish();
    std::string b;
    for (char c : in) b += bytes.feed(std::string_view(&c, 1));
    b += bytes.finish();
    require(a == b);
    require(whole.from() == bytes.from() && whole.problem() == bytes.problem());
    require(a.size() >= in.size() && a.size() <= in.size() + 64);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 6) {
        case 0:
            check_base64(in);
            break;
        case 1:
            check_plain(in);
            break;
        case 2:
            check_exchange(in, sasl::Mechanism::Plain, data[0] & 0x80);
            break;
        case 3:
            check_exchange(in, sasl::Mechanism::Login, data[0] & 0x80);
            break;
        case 4:
            check_filter(in);
            break;
        default:
            if (auto m = sasl::parse_mechanism(in)) require(!sasl::to_string(*m).empty());
            break;
    }
    return 0;
}
