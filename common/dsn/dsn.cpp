#include "common/dsn/dsn.hpp"

#include <algorithm>
#include <cctype>

#include "common/smtp/received.hpp"

namespace pbx::dsn {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr size_t kFoldAt = 78;      // fold a header line beyond this, at a space
constexpr size_t kHardBreak = 900;  // a run without a space is broken here

bool any_action(const Report& r, Action a) {
    return std::any_of(r.recipients.begin(), r.recipients.end(),
                       [a](const RecipientReport& x) { return x.action == a; });
}

// Printable ASCII only: anything else becomes '?' (CR, LF, TAB included,
// so a value can never start a line of its own).
std::string seven_bit(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u < 0x20 || u > 0x7e) c = '?';
    }
    return out;
}

// "Name: value" folded: at spaces past kFoldAt, and a run of kHardBreak
// octets without a space is broken with CRLF SP (which adds a space, the
// only way to keep a line under 998 octets).
std::string field(std::string_view name, std::string_view value) {
    std::string line = std::string(name) + ": ";
    std::string out;
    size_t col = line.size();
    out = line;
    std::string v = seven_bit(value);
    size_t i = 0;
    bool first_word = true;
    while (i < v.size()) {
        size_t sp = v.find(' ', i);
        std::string_view word =
            std::string_view(v).substr(i, sp == std::string::npos ? std::string::npos : sp - i);
        i = sp == std::string::npos ? v.size() : sp + 1;
        if (!first_word) {
            if (col + 1 + word.size() > kFoldAt) {
                out += "\r\n ";
                col = 1;
            } else {
                out += ' ';
                ++col;
            }
        }
        first_word = false;
        while (col + word.size() > kHardBreak) {
            size_t take = kHardBreak > col ? kHardBreak - col : 1;
            out += word.substr(0, take);
            out += "\r\n ";
            col = 1;
            word = word.substr(take);
        }
        out += word;
        col += word.size();
    }
    out += kCrlf;
    return out;
}

// Wraps text into lines of at most kFoldAt columns where spaces allow
// (kHardBreak otherwise), each line indented by `indent`.
std::string wrap(std::string_view text, std::string_view indent) {
    std::string v = seven_bit(text);
    std::string out(indent);
    size_t col = indent.size();
    size_t i = 0;
    bool first_word = true;
    while (i < v.size()) {
        size_t sp = v.find(' ', i);
        std::string_view word =
            std::string_view(v).substr(i, sp == std::string::npos ? std::string::npos : sp - i);
        i = sp == std::string::npos ? v.size() : sp + 1;
        if (word.empty()) continue;
        if (!first_word) {
            if (col + 1 + word.size() > kFoldAt) {
                out += kCrlf;
                out += indent;
                col = indent.size();
            } else {
                out += ' ';
                ++col;
            }
        }
        first_word = false;
        while (col + word.size() > kHardBreak) {
            size_t take = kHardBreak > col ? kHardBreak - col : 1;
            out += word.substr(0, take);
            out += kCrlf;
            out += indent;
            col = indent.size();
            word = word.substr(take);
        }
        out += word;
        col += word.size();
    }
    out += kCrlf;
    return out;
}

std::string date(std::time_t t, int offset) {
    return smtp::rfc5322_date(t, offset);
}

bool is_status(std::string_view s) {
    // class "." subject "." detail: [245] "." 1*3digit "." 1*3digit
    if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
    size_t i = 2;
    for (int part = 0; part < 2; ++part) {
        size_t start = i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && i - start < 4) ++i;
        size_t n = i - start;
        if (n == 0 || n > 3) return false;
        if (part == 0) {
            if (i >= s.size() || s[i] != '.') return false;
            ++i;
        }
    }
    return i == s.size();
}

// "rfc822;a+b@x" → "rfc822; a+b@x" (the envelope holds ORCPT decoded).
std::string original_recipient(std::string_view orcpt) {
    size_t semi = orcpt.find(';');
    if (semi == std::string_view::npos || semi == 0) return std::string(orcpt);
    return std::string(orcpt.substr(0, semi)) + "; " + std::string(orcpt.substr(semi + 1));
}

std::string diagnostic(std::string_view reply) {
    bool smtp = reply.size() >= 3 && std::isdigit(static_cast<unsigned char>(reply[0])) &&
                std::isdigit(static_cast<unsigned char>(reply[1])) &&
                std::isdigit(static_cast<unsigned char>(reply[2])) &&
                (reply.size() == 3 || reply[3] == ' ' || reply[3] == '-');
    return std::string(smtp ? "smtp; " : "x-pillarbox; ") + std::string(reply);
}

std::string human_part(const Report& r) {
    std::string out;
    auto para = [&](std::string_view text) {
        out += wrap(text, "");
        out += kCrlf;
    };
    para("This is the mail system at host " + r.reporting_mta + ".");
    bool failed = any_action(r, Action::Failed);
    bool delayed = any_action(r, Action::Delayed);
    if (r.postmaster_copy) {
        para("A delivery status notification about message " + r.original_queue_id +
             " could not be delivered; it is attached below. Nothing further will be sent "
             "about it.");
    } else if (failed) {
        para(
            "I'm sorry to have to inform you that your message could not be delivered to one "
            "or more recipients. It is attached below (or its header, when it was large or "
            "you asked for the header only).");
        para("For further assistance, please send mail to postmaster.");
    }
    if (!r.postmaster_copy && delayed) {
        para("THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.");
        para(
            "Your message could not yet be delivered to the recipients marked \"delayed\" "
            "below. The mail system will keep trying until " +
            date(r.will_retry_until, r.utc_offset_minutes) +
            "; you will hear from it again only if it gives up.");
    }
    if (!r.postmaster_copy && (any_action(r, Action::Delivered) || any_action(r, Action::Relayed)))
        para(
            "Your message was delivered to the recipients marked \"delivered\" below; those "
            "marked \"relayed\" were passed on to a server that may not send such reports "
            "itself.");
    for (const RecipientReport& rr : r.recipients) {
        std::string line = "<" + rr.final_recipient + ">: " + std::string(to_string(rr.action));
        if (!rr.remote_mta.empty()) line += " (" + rr.remote_mta + ")";
        if (!rr.reply.empty()) line += ": " + rr.reply;
        out += wrap(line, "");
        out += kCrlf;
    }
    return out;
}

std::string status_part(const Report& r) {
    std::string out;
    out += field("Reporting-MTA", "dns; " + r.reporting_mta);
    out += field("X-Pillarbox-Queue-ID", r.original_queue_id);
    if (!r.original_sender.empty() || !r.postmaster_copy)
        out += field("X-Pillarbox-Sender", "rfc822; " + r.original_sender);
    if (!r.envid.empty()) out += field("Original-Envelope-Id", r.envid);
    out += field("Arrival-Date", date(r.arrival, r.utc_offset_minutes));
    for (const RecipientReport& rr : r.recipients) {
        out += kCrlf;
        if (!rr.original_recipient.empty())
            out += field("Original-Recipient", original_recipient(rr.original_recipient));
        out += field("Final-Recipient", "rfc822; " + rr.final_recipient);
        out += field("Action", to_string(rr.action));
        out += field("Status", status_of(rr.reply, rr.action));
        if (!rr.remote_mta.empty()) out += field("Remote-MTA", "dns; " + rr.remote_mta);
        if (!rr.reply.empty()) out += field("Diagnostic-Code", diagnostic(rr.reply));
        if (rr.last_attempt != 0)
            out += field("Last-Attempt-Date", date(rr.last_attempt, r.utc_offset_minutes));
        if (rr.action == Action::Delayed && r.will_retry_until != 0)
            out += field("Will-Retry-Until", date(r.will_retry_until, r.utc_offset_minutes));
    }
    return out;
}

bool has_8bit(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

}  // namespace

std::string_view to_string(Action a) {
    switch (a) {
        case Action::Failed:
            return "failed";
        case Action::Delayed:
            return "delayed";
        case Action::Delivered:
            return "delivered";
        case Action::Relayed:
            return "relayed";
    }
    return "failed";
}

std::string status_of(std::string_view reply, Action a) {
    std::string_view rest = reply;
    char basic = 0;
    if (rest.size() >= 3 && std::isdigit(static_cast<unsigned char>(rest[0])) &&
        std::isdigit(static_cast<unsigned char>(rest[1])) &&
        std::isdigit(static_cast<unsigned char>(rest[2])) &&
        (rest.size() == 3 || rest[3] == ' ' || rest[3] == '-')) {
        basic = rest[0];
        rest = rest.size() > 4 ? rest.substr(4) : std::string_view();
    }
    std::string_view token = rest.substr(0, rest.find(' '));
    if (is_status(token)) return std::string(token);
    if (basic == '2' || basic == '4' || basic == '5') return std::string(1, basic) + ".0.0";
    switch (a) {
        case Action::Failed:
            return "5.0.0";
        case Action::Delayed:
            return "4.0.0";
        default:
            return "2.0.0";
    }
}

std::string_view header_section(std::string_view message, size_t limit) {
    std::string_view m = message.substr(0, limit);
    size_t pos = 0;
    size_t last_line_end = 0;
    while (pos < m.size()) {
        size_t nl = m.find('\n', pos);
        if (nl == std::string_view::npos) break;
        std::string_view line = m.substr(pos, nl - pos);
        last_line_end = nl + 1;
        if (line.empty() || line == "\r") return m.substr(0, last_line_end);
        pos = nl + 1;
    }
    return m.substr(0, last_line_end);
}

std::string_view subject_of(const Report& r) {
    if (r.postmaster_copy) return "Postmaster Copy: Undelivered Mail";
    if (any_action(r, Action::Failed)) return "Undelivered Mail Returned to Sender";
    if (any_action(r, Action::Delayed)) return "Delayed Mail (still being retried)";
    return "Successful Mail Delivery Report";
}

Composed compose(const Report& r) {
    Composed result;
    std::string human = human_part(r);
    std::string status = status_part(r);
    std::string original;
    if (r.return_full) {
        original = std::string(r.original);
    } else {
        original = std::string(header_section(r.original, r.original.size()));
        // The header section ends with its empty line; the part needs none.
        if (original.size() >= 2 && original.ends_with("\r\n\r\n"))
            original.resize(original.size() - 2);
        else if (original.ends_with("\n\n"))
            original.resize(original.size() - 1);
    }
    if (!original.empty() && original.back() != '\n') original += kCrlf;
    result.eight_bit = has_8bit(original);

    // A boundary that occurs in no part (a line starting "--" + boundary is
    // the only thing that could end a part early; any occurrence at all is
    // refused, which is simpler and stricter).
    std::string base = "=_pbx_" + seven_bit(r.original_queue_id) + "_" + std::to_string(r.date);
    std::string boundary = base;
    for (unsigned n = 1;; ++n) {
        bool clash = human.find(boundary) != std::string::npos ||
                     status.find(boundary) != std::string::npos ||
                     original.find(boundary) != std::string::npos;
        if (!clash) break;
        boundary = base + "." + std::to_string(n);
    }

    std::string& out = result.text;
    out += field("From", "Mail Delivery System <MAILER-DAEMON@" + r.reporting_mta + ">");
    out += field("To", "<" + r.to + ">");
    out += field("Subject", subject_of(r));
    out += field("Date", date(r.date, r.utc_offset_minutes));
    out += field("Message-ID", "<" + r.message_id + ">");
    out += field("Auto-Submitted", "auto-replied");
    out += field("MIME-Version", "1.0");
    out += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" +
           boundary + "\"\r\n";
    out += field("Content-Transfer-Encoding", result.eight_bit ? "8bit" : "7bit");
    out += kCrlf;
    out += "This is a MIME-encapsulated message.\r\n\r\n";
    out += "--" + boundary + "\r\n";
    out += "Content-Description: Notification\r\n";
    out += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    out += human;
    out += "\r\n--" + boundary + "\r\n";
    out += "Content-Description: Delivery report\r\n";
    out += "Content-Type: message/delivery-status\r\n\r\n";
    out += status;
    out += "\r\n--" + boundary + "\r\n";
    if (r.return_full) {
        out += r.postmaster_copy ? "Content-Description: Undelivered notification\r\n"
                                 : "Content-Description: Undelivered Message\r\n";
        out += "Content-Type: message/rfc822\r\n";
    } else {
        out += "Content-Description: Message Headers\r\n";
        out += "Content-Type: text/rfc822-headers\r\n";
    }
    if (result.eight_bit) out += "Content-Transfer-Encoding: 8bit\r\n";
    out += kCrlf;
    out += original;
    out += "\r\n--" + boundary + "--\r\n";
    return result;
}

}  // namespace pbx::dsn
