#include "common/smtp/submission_filter.hpp"

#include "common/smtp/mail_headers.hpp"

namespace pbx::smtp {
namespace {

bool named(const mail::HeaderField& f, std::string_view name) {
    std::string_view n = f.name;
    while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
    return mail::iequals(n, name);
}

}  // namespace

std::string SubmissionFilter::feed(std::string_view bytes) {
    if (done_) return std::string(bytes);
    held_.append(bytes);
    // The header section ends at the first empty line; a message that starts
    // with one has no header fields at all.
    const bool empty_line =
        held_.starts_with("\r\n") || held_.find("\r\n\r\n") != std::string::npos;
    if (empty_line) return process_header(false);
    if (held_.size() > options_.max_header) return process_header(false);
    return {};
}

std::string SubmissionFilter::finish() {
    if (done_) return {};
    return process_header(true);
}

std::string SubmissionFilter::process_header(bool at_end) {
    done_ = true;
    std::string text = std::move(held_);
    held_.clear();
    mail::HeaderLimits limits;
    limits.max_header_size = options_.max_header;
    // Before the end of the message only whole lines are judged: a line cut
    // off mid-name must not look like the first body line.
    size_t whole = text.size();
    if (!at_end) {
        size_t crlf = text.rfind("\r\n");
        whole = crlf == std::string::npos ? 0 : crlf + 2;
    }
    auto hs = mail::parse_headers(std::string_view(text).substr(0, whole), limits);
    // A section that did not end within the limit (parse_headers stops at
    // the first line that is not a field, so a body without the empty line
    // still ends it) cannot be checked: the message is refused.
    if (!hs || (!at_end && !hs->has_separator && hs->end >= whole)) {
        problem_ = Problem::HeaderTooLarge;
        return text;
    }
    bool has_date = false, has_id = false;
    for (const mail::HeaderField& f : hs->fields) {
        has_date = has_date || named(f, "Date");
        has_id = has_id || named(f, "Message-ID");
        if (!named(f, "From")) continue;
        auto list = mail::parse_address_list(mail::unfold(f.value));
        if (!list) {
            if (problem_ == Problem::None) problem_ = Problem::BadFrom;
            continue;
        }
        for (std::string& a : *list) {
            if (from_.size() >= options_.max_from) {
                if (problem_ == Problem::None) problem_ = Problem::TooManyFrom;
                break;
            }
            from_.push_back(std::move(a));
        }
    }
    std::string extra;
    // The last field may end the message without its CRLF.
    if (hs->end > 0 && !std::string_view(text).substr(0, hs->end).ends_with("\r\n") &&
        (!has_date || !has_id))
        extra += "\r\n";
    if (!has_date && !options_.date.empty()) {
        extra += "Date: " + options_.date + "\r\n";
        added_.push_back("Date");
    }
    if (!has_id && !options_.message_id.empty()) {
        extra += "Message-ID: " + options_.message_id + "\r\n";
        added_.push_back("Message-ID");
    }
    if (extra.empty()) return text;
    std::string out;
    out.reserve(text.size() + extra.size());
    out.append(text, 0, hs->end);
    out += extra;
    out.append(text, hs->end);
    return out;
}

}  // namespace pbx::smtp
