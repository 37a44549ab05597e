#include "local-delivery/worker.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>

#include "common/mailbox/headers.hpp"
#include "common/mailbox/maildir.hpp"
#include "common/mailbox/mbox.hpp"
#include "common/unique_fd.hpp"
#include "local-delivery/pipe.hpp"
#include "tools/submit.hpp"

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

namespace {

Outcome store_mailbox(const Job& job, const std::string& path, bool maildir,
                      const std::string& message, const std::string& head, std::string_view what) {
    if (maildir) {
        // The Maildir is made (cur/ new/ tmp/) only when a delivery finds it
        // missing: four mkdir calls less for every other delivery.
        std::string content = head + message;
        auto r = mailbox::maildir_deliver(path, content, job.host, job.counter);
        if (!r && r.error().sys_errno == ENOENT) {
            if (auto st = mailbox::ensure_maildir(path); !st)
                return outcome_for_errno(st.error().sys_errno ? st.error().sys_errno : EIO,
                                         st.error().message);
            r = mailbox::maildir_deliver(path, content, job.host, job.counter);
        }
        if (!r)
            return outcome_for_errno(r.error().sys_errno ? r.error().sys_errno : EIO,
                                     r.error().message);
        return {Verdict::Sent, "2.0.0",
                "delivered to " + std::string(what == "file" ? "file" : "maildir")};
    }
    std::string from = mailbox::mbox_from_line(job.sender, std::time(nullptr));
    auto st = mailbox::mbox_append(path, from, mailbox::mboxrd_quote(head + message));
    if (!st) {
        if (st.error().sys_errno == 0)  // not a syscall: a wrong file (links, owner, type)
            return {Verdict::Deferred, "4.2.0", st.error().message};
        return outcome_for_errno(st.error().sys_errno, st.error().message);
    }
    return {Verdict::Sent, "2.0.0",
            "delivered to " + std::string(what == "file" ? "file" : "mbox")};
}

Outcome forward(const Job& job, const std::string& message) {
    mail::Submission sub;
    sub.sender = job.sender;
    for (const std::string& a : job.forward_to) sub.recipients.push_back({a, 0, ""});
    sub.body = job.body;
    sub.smtputf8 = job.smtputf8;
    // The queue takes CRLF text; Delivered-To marks this hop so that a copy
    // that comes back here is recognised as a loop (detect_loop).
    std::string_view eol = mailbox::line_ending(message);
    std::string head = "Delivered-To: " + job.rcpt + "\r\n";
    sub.message = head + (eol == "\r\n" ? message : mailbox::to_crlf(message));
    auto r = mail::submit_to_queue(job.enqueue_socket, sub);
    std::string text = one_line(r.text, 200);
    switch (r.outcome) {
        case mail::Outcome::Queued:
            return {Verdict::Sent, "2.0.0", "forwarded as " + text};
        case mail::Outcome::PermFail: {
            std::string dsn = "5.3.0";
            std::string first = text.substr(0, text.find(' '));
            if (first.size() >= 5 && first.size() <= 9 && first[0] == '5' && first[1] == '.' &&
                first.find_first_not_of("0123456789.") == std::string::npos &&
                std::count(first.begin(), first.end(), '.') == 2)
                dsn = first;
            return {Verdict::Failed, dsn, "forwarding refused: " + text};
        }
        case mail::Outcome::TempFail:
        case mail::Outcome::Unreachable:
            break;
    }
    return {Verdict::Deferred, "4.3.0", "cannot forward now: " + text};
}

}  // namespace

namespace {

// The message of a job, read and checked for a loop; a verdict other than
// Sent ends the job.
Outcome load(const Job& job, const WorkerLimits& limits, std::string& message) {
    if (Outcome o = read_message(job.message_fd, limits, message); o.verdict != Verdict::Sent)
        return o;
    if (auto loop = mailbox::detect_loop(message, job.rcpt))
        return {Verdict::Failed, "5.4.6", "mail loop (" + *loop + ")"};
    return {Verdict::Sent, "", ""};
}

}  // namespace

Outcome deliver(const Job& job, const WorkerLimits& limits) {
    std::string message;
    if (Outcome o = load(job, limits, message); o.verdict != Verdict::Sent) return o;
    if (job.kind == JobKind::Forward) return forward(job, message);
    std::string head = mailbox::delivery_headers(message, job.sender, job.rcpt);
    switch (job.kind) {
        case JobKind::Mailbox:
            return store_mailbox(job, job.mailbox, job.format_maildir, message, head, "mailbox");
        case JobKind::File: {
            bool maildir = !job.path.empty() && job.path.back() == '/';
            return store_mailbox(job, job.path, maildir, message, head, "file");
        }
        case JobKind::Pipe: {
            PipeSpec spec;
            spec.command = job.command;
            spec.env = pipe_environment(
                {job.sender, job.rcpt, job.user, job.home, job.recipient_delimiter});
            spec.cwd = job.home;
            spec.input = mailbox::to_lf(head + message);
            message.clear();
            spec.time_limit = job.time_limit;
            spec.output_limit = job.output_limit;
            return pipe_outcome(run_pipe(spec), job.time_limit);
        }
        case JobKind::Forward:
            break;
    }
    return {Verdict::Deferred, "4.3.0", "unknown delivery kind"};
}

DotForward read_dotforward(const std::string& home, uid_t uid, size_t max_size) {
    DotForward d;
    if (home.empty() || home[0] != '/') return d;
    std::string path = (home.back() == '/' ? home : home + "/") + ".forward";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR) return d;
        if (e == ELOOP) {
            d.note = path + " is a symbolic link: ignored";
            return d;
        }
        if (e == EACCES) {
            d.note = path + " cannot be read by its user: ignored";
            return d;
        }
        d.state = DotForward::State::Error;
        d.error = outcome_for_errno(e, "open " + path);
        return d;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        d.state = DotForward::State::Error;
        d.error = outcome_for_errno(errno, "fstat " + path);
        return d;
    }
    if (!S_ISREG(st.st_mode)) {
        d.note = path + " is not a regular file: ignored";
        return d;
    }
    if (st.st_uid != uid) {
        d.note = path + " belongs to uid " + std::to_string(st.st_uid) + ", not to uid " +
                 std::to_string(uid) + ": ignored";
        return d;
    }
    if ((st.st_mode & 022) != 0) {
        d.note = path + " is writable by group or others: ignored";
        return d;
    }
    if (static_cast<uint64_t>(st.st_size) > max_size) {
        d.note = path + " is larger than " + std::to_string(max_size) + " bytes: ignored";
        return d;
    }
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            d.state = DotForward::State::Error;
            d.error = outcome_for_errno(errno, "read " + path);
            return d;
        }
        if (n == 0) break;
        if (text.size() + static_cast<size_t>(n) > max_size) {
            d.note = path + " is larger than " + std::to_string(max_size) + " bytes: ignored";
            return d;
        }
        text.append(buf, static_cast<size_t>(n));
    }
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) return d;  // empty: as none
    d.state = DotForward::State::Text;
    d.text = std::move(text);
    return d;
}

namespace {

// The ~/.forward step of a mailbox job: a complete report when the file
// decides the job (its text, or an error), else nullopt with any note
// appended to `notes`.
std::optional<std::string> dotforward_step(const Job& job, const WorkerLimits& limits,
                                           std::string& notes) {
    if (job.kind != JobKind::Mailbox || !job.dotforward) return std::nullopt;
    DotForward d = read_dotforward(job.home, geteuid(), limits.max_dotforward);
    switch (d.state) {
        case DotForward::State::Text:
            return "dotforward " + std::to_string(d.text.size()) + "\n" + d.text;
        case DotForward::State::Error:
            return encode_outcome(d.error);
        case DotForward::State::None:
            if (!d.note.empty()) notes += "note " + one_line(d.note, limits.max_outcome) + "\n";
            break;
    }
    return std::nullopt;
}

}  // namespace

std::string run_job(const Job& job, const WorkerLimits& limits) {
    std::string out;
    if (auto done = dotforward_step(job, limits, out)) return *done;
    return out + encode_outcome(deliver(job, limits));
}

std::vector<std::string> run_jobs(const std::vector<Job>& jobs, const WorkerLimits& limits,
                                  size_t batch_bytes, spool::ThreadPool* pool) {
    std::vector<std::string> reports(jobs.size());
    // The Maildir writes waiting for the group's commit.
    struct Staged {
        size_t job;
        std::string content;
    };
    std::vector<Staged> staged;
    size_t staged_bytes = 0;
    auto commit = [&] {
        if (staged.empty()) return;
        std::vector<mailbox::MaildirItem> items;
        items.reserve(staged.size());
        for (const Staged& x : staged) {
            const Job& j = jobs[x.job];
            items.push_back({j.mailbox, x.content, j.host, j.counter});
        }
        mailbox::MaildirBatchOptions opt;
        opt.create_missing = true;
        opt.pool = pool;
        auto results = mailbox::maildir_deliver_batch(items, opt);
        for (size_t k = 0; k < staged.size(); ++k) {
            Outcome o{Verdict::Sent, "2.0.0", "delivered to maildir"};
            if (!results[k]) {
                const Error& e = results[k].error();
                o = outcome_for_errno(e.sys_errno ? e.sys_errno : EIO, e.message);
            }
            reports[staged[k].job] += encode_outcome(o);
        }
        staged.clear();
        staged_bytes = 0;
    };
    for (size_t i = 0; i < jobs.size(); ++i) {
        const Job& job = jobs[i];
        if (auto done = dotforward_step(job, limits, reports[i])) {
            reports[i] = *done;
            continue;
        }
        if (job.kind != JobKind::Mailbox || !job.format_maildir) {
            reports[i] += encode_outcome(deliver(job, limits));
            continue;
        }
        std::string message;
        if (Outcome o = load(job, limits, message); o.verdict != Verdict::Sent) {
            reports[i] += encode_outcome(o);
            continue;
        }
        std::string content = mailbox::delivery_headers(message, job.sender, job.rcpt);
        content += message;
        message.clear();
        staged_bytes += content.size();
        staged.push_back({i, std::move(content)});
        if (staged_bytes >= batch_bytes) commit();
    }
    commit();
    return reports;
}

std::optional<ChildReport> parse_report(std::string_view bytes, const WorkerLimits& limits) {
    ChildReport r;
    while (!bytes.empty()) {
        size_t nl = bytes.find('\n');
        if (nl == std::string_view::npos || nl > limits.max_outcome) return std::nullopt;
        std::string_view line = bytes.substr(0, nl);
        bytes.remove_prefix(nl + 1);
        if (line.starts_with("note ")) {
            if (r.notes.size() >= 8) return std::nullopt;
            r.notes.emplace_back(line.substr(5));
            continue;
        }
        if (line.starts_with("dotforward ")) {
            std::string_view num = line.substr(11);
            size_t n = 0;
            if (num.empty() || num.size() > 9) return std::nullopt;
            for (char c : num) {
                if (c < '0' || c > '9') return std::nullopt;
                n = n * 10 + static_cast<size_t>(c - '0');
            }
            if (n > limits.max_dotforward || bytes.size() != n) return std::nullopt;
            r.dotforward = std::string(bytes);
            return r;
        }
        auto o = decode_outcome(line);
        if (!o || !bytes.empty()) return std::nullopt;
        r.outcome = std::move(o);
        return r;
    }
    return std::nullopt;
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
