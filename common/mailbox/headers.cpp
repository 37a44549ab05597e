#include "common/mailbox/headers.hpp"

#include <algorithm>

namespace pbx::mailbox {
namespace {

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lo = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
               return lo(x) == lo(y);
           });
}

bool istarts_with(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequal(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

// "<a@b>" or "a@b" → "a@b".
std::string_view strip_angles(std::string_view v) {
    v = trim(v);
    if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
    return v;
}

}  // namespace

std::string_view line_ending(std::string_view message) {
    size_t nl = message.find('\n');
    if (nl != std::string_view::npos && nl > 0 && message[nl - 1] == '\r') return "\r\n";
    return "\n";
}

std::string delivery_headers(std::string_view message, std::string_view sender,
                             std::string_view rcpt) {
    std::string_view eol = line_ending(message);
    std::string out;
    out.reserve(40 + sender.size() + rcpt.size());
    out.append("Return-Path: <").append(sender).append(">").append(eol);
    out.append("Delivered-To: ").append(rcpt).append(eol);
    return out;
}

std::optional<std::string> detect_loop(std::string_view message, std::string_view rcpt,
                                       const LoopLimits& limits) {
    std::string_view head = message.substr(0, std::min(message.size(), limits.max_header_scan));
    size_t received = 0;
    size_t pos = 0;
    while (pos < head.size()) {
        size_t nl = head.find('\n', pos);
        std::string_view line =
            head.substr(pos, nl == std::string_view::npos ? head.size() - pos : nl - pos);
        pos = nl == std::string_view::npos ? head.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // end of the header
        if (istarts_with(line, "Received:")) {
            if (++received > limits.max_received)
                return "more than " + std::to_string(limits.max_received) + " Received: lines";
        } else if (istarts_with(line, "Delivered-To:")) {
            if (iequal(strip_angles(line.substr(13)), strip_angles(rcpt)))
                return "Delivered-To: " + std::string(rcpt) + " already present";
        }
    }
    return std::nullopt;
}

std::string to_lf(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
        out += text[i];
    }
    return out;
}

std::string to_crlf(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 32);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
        out += text[i];
    }
    return out;
}

}  // namespace pbx::mailbox
