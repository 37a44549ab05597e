#include "common/smtpserver/feed.hpp"

namespace pbx::smtpserver {

size_t next_feed_size(std::string_view input, smtp::Phase phase) {
    if (input.empty()) return 0;
    if (phase == smtp::Phase::Data) {
        if (input.front() == '.') {
            size_t nl = input.find('\n');
            return nl == std::string_view::npos ? input.size() : nl + 1;
        }
        size_t dot = input.find("\n.");
        return dot == std::string_view::npos ? input.size() : dot + 1;
    }
    size_t nl = input.find('\n');
    return nl == std::string_view::npos ? input.size() : nl + 1;
}

std::string command_verb(std::string_view line) {
    std::string verb;
    for (char c : line) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        if (c < 'A' || c > 'Z') break;
        if (verb.size() == kMaxVerb) return {};
        verb.push_back(c);
    }
    // "MAIL FROM:..." and "QUIT\r\n" end the verb with a space or CR/LF;
    // anything else glued to the letters makes it no verb at all.
    if (verb.size() < line.size()) {
        char next = line[verb.size()];
        if (next != ' ' && next != '\r' && next != '\n') return {};
    }
    return verb;
}

int reply_code(std::string_view reply) {
    if (reply.size() < 3) return 0;
    int code = 0;
    for (size_t i = 0; i < 3; ++i) {
        if (reply[i] < '0' || reply[i] > '9') return 0;
        code = code * 10 + (reply[i] - '0');
    }
    return code;
}

std::string_view last_reply_line(std::string_view reply) {
    while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r')) reply.remove_suffix(1);
    size_t nl = reply.rfind('\n');
    return nl == std::string_view::npos ? reply : reply.substr(nl + 1);
}

std::string logged_path(std::string_view line) {
    size_t open = line.find('<');
    if (open == std::string_view::npos) return {};
    size_t close = line.find('>', open);
    if (close == std::string_view::npos) return {};
    std::string out;
    for (char c : line.substr(open + 1, close - open - 1)) {
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u >= 0x7f ? '?' : c);
    }
    return out;
}

// Postfix's order in its disconnect line.
const std::array<std::string_view, CommandStats::kVerbs> CommandStats::kNames = {
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data",   "bdat",
    "rset", "noop", "vrfy",     "expn", "help", "quit", "unknown"};

size_t CommandStats::index_of(std::string_view verb) {
    for (size_t i = 0; i + 1 < kVerbs; ++i) {
        const auto& name = kNames[i];
        if (name.size() != verb.size()) continue;
        bool same = true;
        for (size_t k = 0; k < name.size() && same; ++k)
            same = name[k] == static_cast<char>(verb[k] | 0x20);
        if (same) return i;
    }
    return kVerbs - 1;  // unknown
}

void CommandStats::command(std::string_view verb) {
    size_t i = index_of(verb);
    ++total_[i];
    awaiting_ = i;
    last_ = i;
}

void CommandStats::reply(int code) {
    if (awaiting_ == kNone) return;
    if (code > 0 && code < 400) ++ok_[awaiting_];
    awaiting_ = kNone;
}

std::string CommandStats::summary() const {
    std::string s;
    unsigned all = 0, all_ok = 0;
    for (size_t i = 0; i < kVerbs; ++i) {
        if (total_[i] == 0) continue;
        all += total_[i];
        all_ok += ok_[i];
        if (!s.empty()) s += ' ';
        s += kNames[i];
        s += '=';
        if (ok_[i] != total_[i]) s += std::to_string(ok_[i]) + "/";
        s += std::to_string(total_[i]);
    }
    if (all == 0) return "commands=0";
    s += " commands=";
    if (all_ok != all) s += std::to_string(all_ok) + "/";
    s += std::to_string(all);
    return s;
}

std::string CommandStats::last() const {
    if (last_ == kNone) return "CONNECT";
    std::string up(kNames[last_]);
    for (char& c : up) c = static_cast<char>(c - 'a' + 'A');
    return up;
}

std::string_view CommandStats::awaiting_verb() const {
    return awaiting_ == kNone ? std::string_view() : kNames[awaiting_];
}

}  // namespace pbx::smtpserver
