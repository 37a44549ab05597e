// Delivery to a command (|command in aliases or ~/.forward), run by the
// delivery child, which already is the user the command runs as (never
// root, no capabilities, NO_NEW_PRIVS).
//
// The command runs as `/bin/sh -c COMMAND` in a new session (its own process
// group), with the working directory HOME (or / when that fails), a clean
// environment (pipe_environment), stdin the message (an in-memory file, so
// the command may read as little or as slowly as it likes) and stdout +
// stderr on one pipe of which the first `output_limit` bytes are kept (the
// rest is read and dropped, so a chatty command never blocks). After
// `time_limit` the whole process group gets SIGKILL. When the shell has
// exited, its output is read until EOF or for at most a short grace period
// (a background process may keep the pipe open).
//
// Verdicts (pipe_outcome): exit 0 → sent; exit 75 (EX_TEMPFAIL) → deferred;
// any other exit status, a signal or the time limit → failed, with the
// command's output, sanitized to one bounded line, in the reply text (so the
// DSN shows it); a failure to start (fork, memfd) → deferred.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "local-delivery/worker.hpp"

namespace pbx::local {

struct PipeEnv {
    std::string sender;     // "" = the null sender
    std::string recipient;  // the original recipient address
    std::string user;       // the account the command runs as
    std::string home;
    std::string recipient_delimiter = "+";
};

// SENDER, RECIPIENT, LOCAL (the recipient's local part), EXTENSION (after
// the first delimiter in it, "" when none), DOMAIN, USER, LOGNAME, HOME,
// SHELL=/bin/sh and PATH=/usr/bin:/bin, as "NAME=value" strings. Values are
// cut at the first NUL (there is none in practice: addresses come checked).
std::vector<std::string> pipe_environment(const PipeEnv& e);

struct PipeSpec {
    std::string command;
    std::vector<std::string> env;
    std::string cwd;
    std::string input;  // the message as the command reads it
    std::chrono::milliseconds time_limit{1000 * 1000};
    size_t output_limit = 4096;
    std::string shell = "/bin/sh";
};

struct PipeResult {
    enum class End { Exited, Signaled, TimedOut, NotStarted } end = End::NotStarted;
    int code = 0;        // exit status or signal number
    std::string output;  // at most output_limit bytes
    std::string error;   // NotStarted: why
};

PipeResult run_pipe(const PipeSpec& spec);

// One line of at most `max` bytes: control characters and other bytes
// outside printable ASCII become '?', runs of white space one space.
std::string one_line(std::string_view text, size_t max);

Outcome pipe_outcome(const PipeResult& r, std::chrono::milliseconds time_limit);

}  // namespace pbx::local
