// sendmail(1), mailq(1), newaliases(1): the classic local submission
// interface. One program; the name it is called by picks the default mode.
//
// SECURITY: no privileges. Runs as the invoking user, reads the message on
// stdin and hands it to the queue-manager over queue/enqueue.sock, which
// learns the user from SO_PEERCRED and decides whether a -f sender is
// allowed; nothing on the command line or in the message can claim another
// uid. When the queue-manager does not answer, the message goes through the
// setgid pbx-drop helper postdrop(8) into maildrop/. mailq and -q are admin
// requests on the same socket (the queue-manager lets anyone list and only
// root flush); newaliases only reads and checks the aliases file.
#include <pwd.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "common/auth/aliases.hpp"
#include "common/auth/textfile.hpp"
#include "common/ipc/peers.hpp"
#include "tools/sendmail_run.hpp"

namespace pbx::mail {
namespace {

void say(const Context& ctx, const std::string& text) {
    std::fprintf(stderr, "%s: %s\n", ctx.program.c_str(), text.c_str());
}

std::string system_host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
    return buf;
}

uint64_t random64() {
    uint64_t v = 0;
    if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v))
        v = static_cast<uint64_t>(std::time(nullptr)) ^ (static_cast<uint64_t>(::getpid()) << 32);
    return v;
}

std::string enqueue_socket(const Context& ctx) {
    return ipc::socket_path(ctx.config.str("runtime_dir"), ipc::Channel::Enqueue);
}

int read_and_queue(const Context& ctx, const Options& o) {
    MessageReader reader(o.dot_ends_input, ctx.size_limit);
    char buf[65536];
    while (reader.state() == MessageReader::State::More) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            say(ctx, std::string("reading the message from stdin: ") + std::strerror(errno));
            return kExIoErr;
        }
        if (n == 0) {
            reader.finish();
            break;
        }
        reader.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    if (reader.state() == MessageReader::State::TooLarge) {
        say(ctx, "the message is larger than message_size_limit (" +
                     std::to_string(ctx.size_limit) + " bytes)");
        return kExDataErr;
    }

    PrepareInput in = prepare_input(ctx, o);
    auto p = prepare_message(reader.message(), in);
    if (!p) {
        say(ctx, p.error().text);
        return p.error().code == PrepareErrc::Address && !o.extract_recipients ? kExUsage
                                                                               : kExDataErr;
    }
    if (p->message.size() > ctx.size_limit) {
        say(ctx, "the message is larger than message_size_limit (" +
                     std::to_string(ctx.size_limit) + " bytes)");
        return kExDataErr;
    }

    Submission s;
    if (o.sender) {
        s.sender = *o.sender;
    } else if (!ctx.login.empty()) {
        s.sender = ctx.login;  // the queue-manager qualifies it with myhostname
    } else {
        say(ctx, "uid " + std::to_string(ctx.uid) + " has no passwd entry; give a sender with -f");
        return kExNoUser;
    }
    for (std::string& a : p->recipients) s.recipients.push_back({std::move(a), o.notify, {}});
    s.ret = o.ret;
    s.envid = o.envid;
    s.body = !o.body.empty() ? o.body : reader.eight_bit() ? "8BITMIME" : "7BIT";
    s.smtputf8 = has_non_ascii(s.sender);
    for (const Recipient& r : s.recipients) s.smtputf8 = s.smtputf8 || has_non_ascii(r.address);
    s.message = std::move(p->message);

    Delivery d = deliver(ctx, s);
    if (d.exit_code != kExOk) {
        if (!d.text.empty()) say(ctx, d.text);
    } else if (ctx.verbose) {
        say(ctx, d.dropped ? "the queue-manager is not running; the message waits in maildrop/"
                           : "queued as " + d.queue_id);
    }
    return d.exit_code;
}

int list_queue(const Context& ctx) {
    AdminResult r = admin_request(enqueue_socket(ctx), "list");
    if (!r.reachable) {
        say(ctx, "the queue-manager is not running");
        if (ctx.verbose) say(ctx, r.text);
        return kExUnavailable;
    }
    if (!r.ok) {
        say(ctx, r.text);
        return kExUnavailable;
    }
    std::fputs(r.text.c_str(), stdout);
    if (!r.text.empty() && r.text.back() != '\n') std::fputc('\n', stdout);
    return std::fflush(stdout) == 0 ? kExOk : kExIoErr;
}

int flush_queue(const Context& ctx) {
    // The queue-manager checks SO_PEERCRED itself; this only gives the
    // clearer message before a round trip.
    if (ctx.uid != 0) {
        say(ctx, "only root may flush the queue (-q)");
        return kExNoPerm;
    }
    AdminResult r = admin_request(enqueue_socket(ctx), "flush");
    if (!r.reachable) {
        say(ctx, "the queue-manager is not running");
        return kExUnavailable;
    }
    if (!r.ok) {
        say(ctx, r.text);
        return kExUnavailable;
    }
    if (ctx.verbose) std::fputs(r.text.c_str(), stdout);
    return kExOk;
}

int check_aliases(const Context& ctx) {
    std::string path = ctx.config.str("aliases_file");
    auth::AliasesLimits limits;
    auto file = auth::read_text_file(path, limits.max_file);
    if (!file) {
        if (file.error().sys_errno == ENOENT) {
            std::printf(
                "%s: %s does not exist: no aliases (authd treats a missing file as"
                " empty)\n",
                ctx.program.c_str(), path.c_str());
            return kExOk;
        }
        say(ctx, path + ": " + file.error().message);
        return kExNoInput;
    }
    auto map = auth::AliasMap::parse(file->text, path, limits);
    if (!map) {
        std::fprintf(stderr, "%s\n", map.error().to_string().c_str());
        return kExDataErr;
    }
    std::printf("%s: %s: %zu alias%s; authd re-reads the file when it changes\n",
                ctx.program.c_str(), path.c_str(), map->size(), map->size() == 1 ? "" : "es");
    return kExOk;
}

}  // namespace

bool has_non_ascii(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return true;
    return false;
}

PrepareInput prepare_input(const Context& ctx, const Options& o) {
    PrepareInput in;
    in.extract_recipients = o.extract_recipients;
    in.arg_recipients = o.recipients;
    std::string user = !ctx.login.empty() ? ctx.login : "uid" + std::to_string(ctx.uid);
    in.from_address = user + "@" + ctx.myhostname;
    if (o.full_name)
        in.full_name = *o.full_name;
    else if (const char* name = std::getenv("NAME"); name && *name)
        in.full_name = std::string(name).substr(0, ArgLimits{}.max_full_name);
    else
        in.full_name = ctx.gecos_name;
    std::time_t now = std::time(nullptr);
    struct tm tm {};
    localtime_r(&now, &tm);
    in.date = format_date(now, static_cast<int>(tm.tm_gmtoff / 60));
    in.message_id = make_message_id(now, random64(), ::getpid(), ctx.myhostname);
    return in;
}

Delivery deliver(const Context& ctx, const Submission& s) {
    Delivery d;
    SubmitResult r = submit_to_queue(enqueue_socket(ctx), s);
    switch (r.outcome) {
        case Outcome::Queued:
            d.queue_id = r.text;
            return d;
        case Outcome::TempFail:
        case Outcome::PermFail: {
            bool temp = r.outcome == Outcome::TempFail;
            d.exit_code = exit_code_for_refusal(temp, r.text);
            d.refusal = r.text;
            d.text = std::string("the queue-manager refused the message") +
                     (temp ? " for now: " : ": ") + r.text;
            return d;
        }
        case Outcome::Unreachable:
            break;
    }
    if (ctx.verbose) say(ctx, "the queue-manager does not answer (" + r.text + "); using postdrop");
    auto input = make_maildrop_input(s, ctx.uid, std::time(nullptr), ctx.size_limit);
    if (!input) {
        d.exit_code = kExDataErr;
        d.text = "cannot write the message for postdrop: " + input.error().message;
        return d;
    }
    std::string postdrop = ctx.config.str("program_dir") + "/postdrop";
    DropResult dr = run_postdrop(postdrop, ctx.config_path, *input);
    if (dr.exit_status == DropResult::kExitNotRun) {
        d.exit_code = kExUnavailable;
        d.text = "the queue-manager is not running (" + r.text + ") and " + dr.error;
        return d;
    }
    if (dr.exit_status != 0) {
        // postdrop said why on stderr already.
        d.exit_code = dr.exit_status;
        d.text = "the queue-manager is not running and postdrop could not store the message";
        return d;
    }
    d.dropped = true;
    return d;
}

}  // namespace pbx::mail

int main(int argc, char** argv) {
    using namespace pbx::mail;
    ensure_std_fds();
    Context ctx;
    Mode mode = mode_for_program(argc > 0 ? argv[0] : "sendmail");
    ctx.program = mode == Mode::ListQueue ? "mailq"
                  : mode == Mode::Aliases ? "newaliases"
                                          : "sendmail";
    std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    auto opts = parse_args(args, mode);
    if (!opts) {
        std::fprintf(stderr,
                     "%s: %s\nusage: sendmail [-t] [-i] [-f sender] [-F name] [options] "
                     "[recipient ...]\n       sendmail -bs | -bp | -bi | -q\n",
                     ctx.program.c_str(), opts.error().message.c_str());
        return kExUsage;
    }
    ctx.verbose = opts->verbose;

    ctx.config_path = std::string(pbx::config::kDefaultPath);
    if (const char* env = std::getenv("PBX_CONFIG"); env && *env) ctx.config_path = env;
    if (!opts->config_path.empty()) ctx.config_path = opts->config_path;
    auto cfg = pbx::config::Config::load(ctx.config_path);
    if (!cfg) {
        say(ctx, cfg.error().to_string());
        return kExConfig;
    }
    ctx.config = std::move(*cfg);
    ctx.myhostname = ctx.config.str("myhostname");
    if (ctx.myhostname.empty()) ctx.myhostname = system_host_name();
    ctx.size_limit = effective_size_limit(ctx.config.size("message_size_limit"));

    ctx.uid = ::getuid();
    if (struct passwd* pw = ::getpwuid(ctx.uid)) {
        ctx.login = pw->pw_name;
        std::string gecos = pw->pw_gecos ? pw->pw_gecos : "";
        ctx.gecos_name = gecos.substr(0, std::min(gecos.find(','), ArgLimits{}.max_full_name));
    }

    switch (opts->mode) {
        case Mode::Deliver:
            return read_and_queue(ctx, *opts);
        case Mode::Smtp:
            return run_smtp_session(ctx, *opts);
        case Mode::ListQueue:
            return list_queue(ctx);
        case Mode::Aliases:
            return check_aliases(ctx);
        case Mode::Flush:
            return flush_queue(ctx);
    }
    return kExSoftware;
}
