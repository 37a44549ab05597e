#include "tools/mail_input.hpp"

#include <algorithm>

#include "common/spool/envelope.hpp"

namespace pbx::mail {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

Err<UsageError> usage(std::string message) {
    return Err<UsageError>{UsageError{std::move(message)}};
}

bool has_line_break(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// How an option letter takes its value.
enum class Arg {
    None,      // a flag: -t
    Required,  // -f sender, -fsender
    Attached,  // -q, -q30m: only an attached value, never the next argument
};

struct OptionSpec {
    char letter;
    Arg arg;
};

// Every option sendmail(1) accepts (the man page lists the same). Letters
// that real sendmail and Postfix accept but that mean nothing here (-G, -h,
// -L, -m, -n, -U, -X, -A, -O, most -o) are accepted and ignored so that
// existing scripts keep working.
constexpr OptionSpec kOptions[] = {
    {'A', Arg::Required}, {'B', Arg::Required}, {'C', Arg::Required}, {'F', Arg::Required},
    {'G', Arg::None},     {'I', Arg::None},     {'L', Arg::Required}, {'N', Arg::Required},
    {'O', Arg::Required}, {'R', Arg::Required}, {'U', Arg::None},     {'V', Arg::Required},
    {'X', Arg::Required}, {'b', Arg::Required}, {'f', Arg::Required}, {'h', Arg::Required},
    {'i', Arg::None},     {'m', Arg::None},     {'n', Arg::None},     {'o', Arg::Required},
    {'q', Arg::Attached}, {'r', Arg::Required}, {'t', Arg::None},     {'v', Arg::None},
};

const OptionSpec* find_option(char c) {
    for (const auto& o : kOptions)
        if (o.letter == c) return &o;
    return nullptr;
}

Result<std::string, UsageError> parse_sender(std::string_view v, const ArgLimits& limits) {
    if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
    if (v.size() > limits.max_sender) return usage("-f: the sender address is too long");
    if (has_line_break(v)) return usage("-f: the sender address contains a line break");
    if (v.find_first_of(" \t<>") != std::string_view::npos)
        return usage("-f: give a bare address (user@domain), not '" + std::string(v) + "'");
    return std::string(v);
}

Result<Unit, UsageError> apply(char letter, std::string_view v, Options& o,
                               const ArgLimits& limits) {
    switch (letter) {
        case 'b':
            if (v == "m")
                o.mode = Mode::Deliver;
            else if (v == "s")
                o.mode = Mode::Smtp;
            else if (v == "p")
                o.mode = Mode::ListQueue;
            else if (v == "i")
                o.mode = Mode::Aliases;
            else
                return usage("-b" + std::string(v) +
                             " is not supported (supported: -bm, -bs, -bp, -bi)");
            return Unit{};
        case 'B': {
            std::string b = lower(v);
            if (b == "7bit")
                o.body = "7BIT";
            else if (b == "8bitmime")
                o.body = "8BITMIME";
            else
                return usage("-B takes 7BIT or 8BITMIME, not '" + std::string(v) + "'");
            return Unit{};
        }
        case 'C':
            if (v.empty() || has_line_break(v)) return usage("-C needs a configuration file");
            o.config_path = std::string(v);
            return Unit{};
        case 'F':
            if (v.size() > limits.max_full_name) return usage("-F: the full name is too long");
            if (has_line_break(v)) return usage("-F: the full name contains a line break");
            o.full_name = std::string(v);
            return Unit{};
        case 'f':
        case 'r': {
            auto s = parse_sender(v, limits);
            if (!s) return Err{s.error()};
            o.sender = std::move(*s);
            return Unit{};
        }
        case 'I':
            o.mode = Mode::Aliases;
            return Unit{};
        case 'i':
            o.dot_ends_input = false;
            return Unit{};
        case 't':
            o.extract_recipients = true;
            return Unit{};
        case 'v':
            o.verbose = true;
            return Unit{};
        case 'N': {
            auto n = parse_notify(v);
            if (!n) return Err{n.error()};
            o.notify = *n;
            return Unit{};
        }
        case 'R': {
            std::string r = lower(v);
            if (r == "full")
                o.ret = "FULL";
            else if (r == "hdrs")
                o.ret = "HDRS";
            else
                return usage("-R takes full or hdrs, not '" + std::string(v) + "'");
            return Unit{};
        }
        case 'V':
            if (v.empty() || v.size() > limits.max_envid)
                return usage("-V: the envelope ID must be 1 to " +
                             std::to_string(limits.max_envid) + " characters");
            for (unsigned char c : v)
                if (c < 33 || c > 126)
                    return usage("-V: the envelope ID must be printable ASCII without spaces");
            o.envid = std::string(v);
            return Unit{};
        case 'o':
            // -oi is the old spelling of -i; every other -oX (-oem, -odb,
            // -oQ...) configures sendmail 8 internals that do not exist here.
            if (v == "i")
                o.dot_ends_input = false;
            else
                o.ignored.push_back("-o" + std::string(v));
            return Unit{};
        case 'q':
            if (!v.empty())
                return usage("-q" + std::string(v) +
                             ": a queue-run interval is not supported (the queue-manager"
                             " retries on its own); use -q alone to flush the queue");
            o.mode = Mode::Flush;
            return Unit{};
        default:
            o.ignored.push_back("-" + std::string(1, letter) + std::string(v));
            return Unit{};
    }
}

}  // namespace

Mode mode_for_program(std::string_view argv0) {
    size_t slash = argv0.rfind('/');
    std::string_view base = slash == std::string_view::npos ? argv0 : argv0.substr(slash + 1);
    if (base == "mailq") return Mode::ListQueue;
    if (base == "newaliases") return Mode::Aliases;
    return Mode::Deliver;
}

Result<uint8_t, UsageError> parse_notify(std::string_view text) {
    if (lower(text) == "never") return static_cast<uint8_t>(spool::kNotifyNever);
    uint8_t bits = 0;
    size_t pos = 0;
    while (true) {
        size_t comma = text.find(',', pos);
        std::string word = lower(text.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
        if (word == "success")
            bits |= spool::kNotifySuccess;
        else if (word == "delay")
            bits |= spool::kNotifyDelay;
        else if (word == "failure")
            bits |= spool::kNotifyFailure;
        else
            return usage(
                "-N takes never, or a comma-separated list of success, delay and"
                " failure; not '" +
                std::string(text) + "'");
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return bits;
}

Result<Options, UsageError> parse_args(std::span<const std::string_view> args, Mode default_mode,
                                       const ArgLimits& limits) {
    Options o;
    o.mode = default_mode;
    size_t i = 0;
    for (; i < args.size(); ++i) {
        std::string_view a = args[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a.size() < 2 || a[0] != '-') break;
        for (size_t j = 1; j < a.size(); ++j) {
            const OptionSpec* spec = find_option(a[j]);
            if (!spec) return usage("unknown option -" + std::string(1, a[j]));
            std::string_view value;
            if (spec->arg == Arg::Required) {
                if (j + 1 < a.size()) {
                    value = a.substr(j + 1);
                } else if (i + 1 < args.size()) {
                    value = args[++i];
                } else {
                    return usage("option -" + std::string(1, spec->letter) + " needs a value");
                }
            } else if (spec->arg == Arg::Attached) {
                value = a.substr(j + 1);
            }
            if (auto r = apply(spec->letter, value, o, limits); !r) return Err{r.error()};
            if (spec->arg != Arg::None) break;  // the value used the rest of the cluster
        }
    }
    for (; i < args.size(); ++i) {
        if (o.recipients.size() >= limits.max_recipient_args)
            return usage("too many recipient arguments (at most " +
                         std::to_string(limits.max_recipient_args) + ")");
        if (args[i].size() > limits.max_arg) return usage("a recipient argument is too long");
        o.recipients.emplace_back(args[i]);
    }
    switch (o.mode) {
        case Mode::Deliver:
            if (o.recipients.empty() && !o.extract_recipients)
                return usage(
                    "no recipients: give addresses as arguments, or -t to read them"
                    " from the To:, Cc: and Bcc: headers");
            break;
        case Mode::Smtp:
        case Mode::ListQueue:
        case Mode::Aliases:
        case Mode::Flush:
            if (!o.recipients.empty())
                return usage("this mode takes no recipient arguments ('" + o.recipients[0] + "')");
            break;
    }
    return o;
}

// ---- MessageReader -------------------------------------------------------

MessageReader::MessageReader(bool dot_ends_input, uint64_t max_size)
    : dot_ends_(dot_ends_input), max_size_(max_size) {}

bool MessageReader::end_line() {
    // The line so far is out_[line_start_, end); a CR just before the LF
    // belongs to the line end, not to the line.
    std::string_view line = std::string_view(out_).substr(line_start_);
    bool had_cr = !line.empty() && line.back() == '\r';
    if (had_cr) line.remove_suffix(1);
    if (dot_ends_ && line == ".") {
        out_.resize(line_start_);
        return true;
    }
    out_ += had_cr ? "\n" : "\r\n";
    line_start_ = out_.size();
    return false;
}

MessageReader::State MessageReader::feed(std::string_view bytes) {
    if (state_ != State::More) return state_;
    for (char c : bytes) {
        if (c == '\n') {
            if (end_line()) return state_ = State::Done;
        } else {
            if (static_cast<unsigned char>(c) >= 0x80) eight_bit_ = true;
            out_ += c;
        }
        if (out_.size() > max_size_) {
            out_.clear();
            return state_ = State::TooLarge;
        }
    }
    return state_;
}

MessageReader::State MessageReader::finish() {
    if (state_ != State::More) return state_;
    if (line_start_ < out_.size()) {
        // A last line without its LF: the dot rule still applies (a script's
        // printf '...\n.' means the same as '...\n.\n').
        if (end_line()) return state_ = State::Done;
        if (out_.size() > max_size_) {
            out_.clear();
            return state_ = State::TooLarge;
        }
    }
    return state_ = State::Done;
}

std::string CrlfFilter::convert(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() + bytes.size() / 16);
    for (char c : bytes) {
        if (c == '\n' && !prev_cr_) out += '\r';
        out += c;
        prev_cr_ = c == '\r';
    }
    return out;
}

}  // namespace pbx::mail
