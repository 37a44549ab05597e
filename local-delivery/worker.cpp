#include "local-delivery/worker.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/mailbox/maildir.hpp"
#include "common/mailbox/mbox.hpp"

namespace pbx::local {

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::Sent:
            return "sent";
        case Verdict::Deferred:
            return "deferred";
        case Verdict::Failed:
            return "failed";
    }
    return "deferred";
}

std::string Outcome::reply() const {
    std::string_view code = verdict == Verdict::Sent       ? "250"
                            : verdict == Verdict::Deferred ? "450"
                                                           : "550";
    return std::string(code) + " " + dsn + " " + text;
}

Outcome outcome_for_errno(int err, std::string_view what) {
    std::string text = std::string(what) + ": " + std::strerror(err);
    switch (err) {
        case ENOSPC:
            return {Verdict::Deferred, "4.3.1", text};
        case EDQUOT:
            return {Verdict::Deferred, "4.2.2", text};
        case ELOOP:  // a symlink where the mailbox should be: an attack or a mistake
            return {Verdict::Failed, "5.2.0", text};
        default:  // lock timeouts, missing home, permissions, I/O errors
            return {Verdict::Deferred, "4.2.0", text};
    }
}

namespace {

Outcome read_message(int fd, const WorkerLimits& limits, std::string& out) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return outcome_for_errno(errno, "fstat of the message");
    if (static_cast<uint64_t>(st.st_size) > limits.max_message)
        return {Verdict::Failed, "5.3.4", "message too large for local delivery"};
    out.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out.size()) {
        ssize_t n = pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return outcome_for_errno(errno, "read of the message");
        if (n == 0) break;  // shorter than fstat said: the file is immutable, so odd
        got += static_cast<size_t>(n);
    }
    out.resize(got);
    return {Verdict::Sent, "", ""};
}

}  // namespace

Outcome deliver(const Job& job, const WorkerLimits& limits) {
    std::string message;
    if (Outcome o = read_message(job.message_fd, limits, message); o.verdict != Verdict::Sent)
        return o;
    if (auto loop = mailbox::detect_loop(message, job.rcpt))
        return {Verdict::Failed, "5.4.6", "mail loop (" + *loop + ")"};
    std::string head = mailbox::delivery_headers(message, job.sender, job.rcpt);

    if (job.format_maildir) {
        if (auto st = mailbox::ensure_maildir(job.mailbox); !st)
            return outcome_for_errno(st.error().sys_errno ? st.error().sys_errno : EIO,
                                     st.error().message);
        auto r = mailbox::maildir_deliver(job.mailbox, head + message, job.host, job.counter);
        if (!r)
            return outcome_for_errno(r.error().sys_errno ? r.error().sys_errno : EIO,
                                     r.error().message);
        return {Verdict::Sent, "2.0.0", "delivered to maildir"};
    }
    std::string from = mailbox::mbox_from_line(job.sender, std::time(nullptr));
    auto st = mailbox::mbox_append(job.mailbox, from, mailbox::mboxrd_quote(head + message));
    if (!st) {
        if (st.error().sys_errno == 0)  // not a syscall: a wrong file (links, owner, type)
            return {Verdict::Deferred, "4.2.0", st.error().message};
        return outcome_for_errno(st.error().sys_errno, st.error().message);
    }
    return {Verdict::Sent, "2.0.0", "delivered to mbox"};
}

std::string encode_outcome(const Outcome& o) {
    std::string text = o.text;
    for (char& c : text)
        if (c == '\n' || c == '\r' || c == '\0') c = ' ';
    return std::string(to_string(o.verdict)) + " " + o.dsn + " " + text + "\n";
}

std::optional<Outcome> decode_outcome(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return std::nullopt;
    size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return std::nullopt;
    std::string_view v = line.substr(0, sp1);
    Outcome o;
    if (v == "sent")
        o.verdict = Verdict::Sent;
    else if (v == "deferred")
        o.verdict = Verdict::Deferred;
    else if (v == "failed")
        o.verdict = Verdict::Failed;
    else
        return std::nullopt;
    o.dsn = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
    o.text = std::string(line.substr(sp2 + 1));
    if (o.dsn.size() < 5 || o.dsn.size() > 11 || o.dsn[1] != '.') return std::nullopt;
    if ((o.verdict == Verdict::Sent) != (o.dsn[0] == '2')) return std::nullopt;
    return o;
}

}  // namespace pbx::local
