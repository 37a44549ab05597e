#include "pop3d/session_engine.hpp"

#include "pop3d/sha256.hpp"

#include <algorithm>

namespace pbx::pop3 {

std::string to_crlf(std::string_view content) {
    std::string out;
    out.reserve(content.size() + content.size() / 32 + 2);
    for (size_t i = 0; i < content.size(); ++i) {
        const char c = content[i];
        if (c == '\n' && (i == 0 || content[i - 1] != '\r')) out.push_back('\r');
        out.push_back(c);
    }
    if (!content.empty() && content.back() != '\n') out += "\r\n";
    return out;
}

namespace {

// The multi-line answer of RETR or TOP in one pass: every LF without a CR
// gets one, a last line without a line end gets CRLF, a line starting with
// "." gets another (RFC 1939 byte-stuffing), and ".\r\n" ends it.
std::string stuffed(std::string_view content) {
    std::string out;
    out.reserve(content.size() + content.size() / 32 + 8);
    size_t i = 0;
    while (i < content.size()) {
        if (content[i] == '.') out.push_back('.');
        const size_t lf = content.find('\n', i);
        if (lf == std::string_view::npos) {
            out.append(content.substr(i));
            out += "\r\n";
            break;
        }
        out.append(content.substr(i, lf - i));
        if (lf == 0 || content[lf - 1] != '\r') out.push_back('\r');
        out.push_back('\n');
        i = lf + 1;
    }
    out += ".\r\n";
    return out;
}

}  // namespace

uint64_t crlf_size(std::string_view content) {
    uint64_t n = content.size();
    for (size_t i = 0; i < content.size(); ++i)
        if (content[i] == '\n' && (i == 0 || content[i - 1] != '\r')) ++n;
    if (!content.empty() && content.back() != '\n') n += 2;
    return n;
}

std::string uidl_for(std::string_view name) {
    bool ok = !name.empty() && name.size() <= 70;
    for (char c : name)
        if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
            ok = false;
    if (ok) return std::string(name);
    return "H" + sha256_hex({name}, 16);
}

SessionEngine::SessionEngine(Store& store, SessionLimits limits)
    : store_(store), limits_(limits), deleted_(store.messages().size(), false) {}

void SessionEngine::start() {
    out_ += "+OK Logged in.\r\n";
}

void SessionEngine::refuse(std::string reply_line) {
    close_with(std::move(reply_line));
}

size_t SessionEngine::deleted_count() const {
    return static_cast<size_t>(std::count(deleted_.begin(), deleted_.end(), true));
}

void SessionEngine::bad(std::string text) {
    if (++bad_ >= limits_.max_bad_commands) {
        close_with("-ERR Too many bad commands, closing.\r\n");
        return;
    }
    out_ += text;
}

void SessionEngine::close_with(std::string text) {
    out_ += text;
    closed_ = true;
}

void SessionEngine::end_chain() {
    chain_.clear();
    chain_bytes_ = 0;
    chain_lines_ = 0;
}

void SessionEngine::timed_out() {
    end_chain();
    if (closed_) return;
    transfer_ = Transfer{};
    close_with("-ERR Autologout: idle for too long; nothing was deleted.\r\n");
}

void SessionEngine::shutting_down() {
    end_chain();
    if (closed_) return;
    transfer_ = Transfer{};
    close_with("-ERR [SYS/TEMP] Server shutting down; nothing was deleted.\r\n");
}

size_t SessionEngine::feed(std::string_view bytes) {
    size_t used = 0;
    // The chain first, at the offset each offer was made for: the same test
    // as the login process's (reply_ahead.hpp).
    while (!chain_.empty() && !closed_ && !has_output()) {
        const std::string_view rest = bytes.substr(used);
        const Offered& o = chain_.front();
        if (rest.starts_with(o.line)) {
            // The client has the answer: what RETR does, without output.
            if (prefetched_.index == o.index) prefetched_ = Prefetched{};
            next_retr_ = o.index + 1;
            ++answered_ahead_;
            used += o.line.size();
            silent_bytes_ += o.line.size();
            chain_bytes_ -= o.answer_size;
            chain_lines_ -= o.line.size();
            chain_.pop_front();
        } else if (std::string_view(o.line).starts_with(rest)) {
            return used;  // nothing more, or a prefix: more bytes decide
        } else {
            end_chain();
        }
    }
    while (used < bytes.size() && !closed_ && !has_output()) {
        std::optional<LineReader::Line> l;
        used += reader_.feed(bytes.substr(used), l);
        if (l) line(*l);
    }
    return used;
}

std::string SessionEngine::take_output(size_t max) {
    std::string chunk;
    if (max == 0) max = 1;
    if (!out_.empty()) {
        const size_t n = std::min(max, out_.size());
        chunk = out_.substr(0, n);
        out_.erase(0, n);
        if (chunk.size() >= max) return chunk;
    }
    Transfer& t = transfer_;
    if (t.active && chunk.size() < max) {
        const size_t n = std::min(max - chunk.size(), t.data.size() - t.pos);
        chunk.append(t.data, t.pos, n);
        t.pos += n;
        if (t.pos >= t.data.size()) t = Transfer{};
    }
    return chunk;
}

void SessionEngine::line(const LineReader::Line& l) {
    if (l.too_long) return bad("-ERR Command line too long (255 octets at most).\r\n");
    ParseResult p = parse_command(l.text);
    if (!p.command) return bad("-ERR " + std::string(to_string(p.error)) + ".\r\n");
    command(*p.command);
}

std::optional<size_t> SessionEngine::message_arg(const std::string& arg) {
    auto n = parse_number(arg);
    if (!n) {
        bad("-ERR Invalid message number: " + arg.substr(0, 20) + "\r\n");
        return std::nullopt;
    }
    if (*n > deleted_.size()) {
        bad("-ERR No such message (the mailbox has " + std::to_string(deleted_.size()) + ").\r\n");
        return std::nullopt;
    }
    if (deleted_[*n - 1]) {
        bad("-ERR Message " + std::to_string(*n) + " is deleted.\r\n");
        return std::nullopt;
    }
    return *n - 1;
}

void SessionEngine::command(const Command& c) {
    const std::string& v = c.verb;
    const auto& msgs = store_.messages();
    auto want_args = [&](size_t lo, size_t hi) {
        if (c.args.size() < lo || c.args.size() > hi) {
            bad("-ERR Wrong number of arguments for " + v + ".\r\n");
            return false;
        }
        return true;
    };
    if (v == "STAT") {
        if (!want_args(0, 0)) return;
        uint64_t count = 0, octets = 0;
        for (size_t i = 0; i < msgs.size(); ++i) {
            if (deleted_[i]) continue;
            ++count;
            octets += msgs[i].size;
        }
        out_ += "+OK " + std::to_string(count) + " " + std::to_string(octets) + "\r\n";
        return;
    }
    if (v == "LIST" || v == "UIDL") {
        if (!want_args(0, 1)) return;
        const bool uidl = v == "UIDL";
        if (c.args.size() == 1) {
            auto i = message_arg(c.args[0]);
            if (!i) return;
            out_ += "+OK " + std::to_string(*i + 1) + " " +
                    (uidl ? msgs[*i].uidl : std::to_string(msgs[*i].size)) + "\r\n";
            return;
        }
        out_ += uidl ? "+OK Unique-ID listing follows\r\n" : "+OK Scan listing follows\r\n";
        for (size_t i = 0; i < msgs.size(); ++i) {
            if (deleted_[i]) continue;
            out_ += std::to_string(i + 1) + " " +
                    (uidl ? msgs[i].uidl : std::to_string(msgs[i].size)) + "\r\n";
        }
        out_ += ".\r\n";
        return;
    }
    if (v == "RETR") {
        if (!want_args(1, 1)) return;
        auto i = message_arg(c.args[0]);
        if (i) send_message(*i, std::nullopt);
        return;
    }
    if (v == "TOP") {
        if (!want_args(2, 2)) return;
        auto i = message_arg(c.args[0]);
        if (!i) return;
        auto lines = parse_number(c.args[1], 1u << 30, true);
        if (!lines) return bad("-ERR Invalid number of lines: " + c.args[1].substr(0, 20) + "\r\n");
        send_message(*i, *lines);
        return;
    }
    if (v == "DELE") {
        if (!want_args(1, 1)) return;
        auto i = message_arg(c.args[0]);
        if (!i) return;
        deleted_[*i] = true;
        out_ += "+OK Message " + std::to_string(*i + 1) + " deleted (at QUIT).\r\n";
        return;
    }
    if (v == "NOOP") {
        if (!want_args(0, 0)) return;
        out_ += "+OK\r\n";
        return;
    }
    if (v == "RSET") {
        if (!want_args(0, 0)) return;
        std::fill(deleted_.begin(), deleted_.end(), false);
        out_ += "+OK " + std::to_string(msgs.size()) + " messages, none deleted.\r\n";
        return;
    }
    if (v == "QUIT") return quit();
    if (v == "CAPA") {
        out_ +=
            "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
            "PIPELINING\r\nIMPLEMENTATION Pillarbox\r\n.\r\n";
        return;
    }
    if (v == "USER" || v == "PASS" || v == "AUTH" || v == "APOP" || v == "STLS")
        return bad("-ERR Already logged in.\r\n");
    bad("-ERR Unknown command.\r\n");
}

void SessionEngine::send_message(size_t index, std::optional<size_t> top_lines) {
    std::string data;
    if (!top_lines && prefetched_.index == index) {
        data = std::move(prefetched_.data);  // prepared by prefetch()
    } else {
        auto content = store_.content(index);
        if (!content) {
            out_ += "-ERR [SYS/TEMP] Message " + std::to_string(index + 1) +
                    " cannot be read (removed by another program?).\r\n";
            return;
        }
        if (top_lines) {
            // The header, the blank line, then that many body lines.
            std::string crlf = to_crlf(*content);
            size_t end = crlf.size();
            size_t hdr = crlf.starts_with("\r\n") ? 0 : crlf.find("\r\n\r\n");
            if (hdr != std::string::npos) {
                size_t pos = hdr == 0 ? 2 : hdr + 4;
                size_t n = *top_lines;
                while (n > 0 && pos < crlf.size()) {
                    size_t lf = crlf.find('\n', pos);
                    pos = lf == std::string::npos ? crlf.size() : lf + 1;
                    --n;
                }
                end = pos;
            }
            data = stuffed(std::string_view(crlf).substr(0, end));
        } else {
            data = stuffed(*content);
        }
    }
    prefetched_ = Prefetched{};
    if (top_lines) {
        out_ += "+OK Top of message follows\r\n";
    } else {
        out_ += "+OK " + std::to_string(store_.messages()[index].size) + " octets\r\n";
        next_retr_ = index + 1;
    }
    transfer_.active = true;
    transfer_.data = std::move(data);
    transfer_.pos = 0;
}

bool SessionEngine::prefetch() {
    if (closed_ || has_output() || !next_retr_ || prefetched_.index) return false;
    const size_t i = *next_retr_;
    next_retr_.reset();
    if (i >= deleted_.size() || deleted_[i] || store_.messages()[i].size > kMaxPrefetch)
        return false;
    auto content = store_.content(i);
    if (!content) return false;  // the RETR, if it comes, says so
    prefetched_.data = stuffed(*content);
    prefetched_.index = i;
    return true;
}

std::optional<SessionEngine::Offer> SessionEngine::offer(size_t max_answer) {
    if (closed_ || has_output() || reader_.partial()) return std::nullopt;
    size_t i;
    if (!chain_.empty())
        i = chain_.back().index + 1;
    else if (prefetched_.index)
        i = *prefetched_.index;
    else if (next_retr_)
        i = *next_retr_;
    else
        return std::nullopt;
    if (i >= deleted_.size() || deleted_[i] || store_.messages()[i].size > kMaxPrefetch)
        return std::nullopt;
    std::string head = "+OK " + std::to_string(store_.messages()[i].size) + " octets\r\n";
    std::string data;
    if (prefetched_.index == i) {
        if (head.size() + prefetched_.data.size() > max_answer) return std::nullopt;
        data = std::move(prefetched_.data);
        prefetched_ = Prefetched{};
    } else {
        // Its size (the CRLF form's, known before reading: W= or the size
        // cache) plus ".\r\n" is a lower bound of the answer: a message
        // over the limit is not read here.
        if (head.size() + store_.messages()[i].size + 3 > max_answer) return std::nullopt;
        auto content = store_.content(i);
        if (!content) return std::nullopt;  // the RETR, if it comes, says so
        data = stuffed(*content);
        if (head.size() + data.size() > max_answer) return std::nullopt;
    }
    Offer o;
    o.line = "RETR " + std::to_string(i + 1) + "\r\n";
    o.answer = std::move(head);
    o.answer += data;
    o.skip = chain_lines_;
    chain_.push_back(Offered{o.line, i, o.answer.size()});
    chain_bytes_ += o.answer.size();
    chain_lines_ += o.line.size();
    return o;
}

void SessionEngine::quit() {
    const size_t n = deleted_count();
    if (n == 0) {
        store_.release();
        return close_with("+OK Logging out.\r\n");
    }
    auto s = store_.commit(deleted_);
    store_.release();
    if (!s)
        return close_with("-ERR [SYS/TEMP] Some deleted messages were not removed: " +
                          s.error().message.substr(0, 120) + "\r\n");
    close_with("+OK Logging out, " + std::to_string(n) + " messages deleted.\r\n");
}

}  // namespace pbx::pop3
