// Internal to common/spool: the keywords of the envelope format, shared by
// its writer and reader so the two cannot drift apart. Not a public API.
#pragma once

#include <array>
#include <string_view>

#include "common/spool/envelope.hpp"

namespace pbx::spool::detail {

// Header keys, in the order the writer emits them.
enum class Key {
    Id,
    Arrival,
    Origin,
    Uid,
    ClientAddress,
    ClientHostname,
    Helo,
    Protocol,
    Tls,
    AuthUser,
    Sender,
    Body,
    Smtputf8,
    Size,
    Ret,
    Envid,
    DelayNoticeSent,
};

inline constexpr std::array<std::string_view, 17> kKeyNames = {
    "id",
    "arrival",
    "origin",
    "uid",
    "client-address",
    "client-hostname",
    "helo",
    "protocol",
    "tls",
    "auth-user",
    "sender",
    "body",
    "smtputf8",
    "size",
    "ret",
    "envid",
    "delay-notice-sent",
};

inline constexpr std::string_view kRcptKey = "rcpt";
inline constexpr std::string_view kEndMarker = "end";

// rcpt fields, in their required order; the last one ("notified") is
// optional (written only when true; envelopes from before it lack it).
inline constexpr std::array<std::string_view, 9> kRcptFields = {
    "to", "state", "attempts", "next", "last", "notify", "orcpt", "reply", "notified",
};
inline constexpr size_t kRcptRequiredFields = 8;

// Largest time value accepted: 9999-12-31T23:59:59Z.
inline constexpr uint64_t kMaxTimeValue = 253402300799;

inline constexpr std::array<std::string_view, 5> kOriginWords = {"smtp", "submission", "sendmail",
                                                                 "dsn", "postmaster-notice"};
inline constexpr std::array<std::string_view, 3> kBodyWords = {"7bit", "8bitmime", "binarymime"};
inline constexpr std::array<std::string_view, 3> kRetWords = {"", "full", "hdrs"};
inline constexpr std::array<std::string_view, 4> kStateWords = {"pending", "deferred", "delivered",
                                                                "failed"};

template <size_t N>
int find_word(const std::array<std::string_view, N>& words, std::string_view w) {
    for (size_t i = 0; i < N; ++i)
        if (words[i] == w) return static_cast<int>(i);
    return -1;
}

// Values may not carry octets that would let a consumer split them.
inline bool has_line_breaking_octet(std::string_view v) {
    return v.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos;
}

}  // namespace pbx::spool::detail
