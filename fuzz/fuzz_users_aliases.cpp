// libFuzzer target for the two files authd reads: the users file
// (pillarbox-users(5)) and the aliases file (pillarbox-aliases(5)); both are
// written by administrators, but `newaliases` and `pillarbox user add` feed
// them text that came from elsewhere, and a parser that crashes authd takes
// every login and every recipient check down with it.
//
// The first input byte steers the run: bit 0 picks tight limits (short lines,
// few entries and targets) so the limit paths are reached; the rest is the
// file, fed to both parsers, to parse_alias_targets and to parse_target_lines
// (the syntax of :include: files and of ~/.forward, which local-delivery's
// privileged parent parses for any system user).
//
// Properties checked besides "no crash, no sanitizer report":
// - an error names a line inside the text (1 .. number of lines) and says why;
// - every user that parses has a valid lower-case name, uid and gid other
//   than 0, an absolute home and mailbox, and the format its mailbox says;
// - every alias that parses has a valid name and at least one target, each
//   of the kind its text says, and the number of entries respects the limits.
//
// Seeds: the valid and invalid tables of the unit test. With
// PBX_FUZZ_WRITE_SEEDS=DIR set, the target writes them into DIR and exits:
//   PBX_FUZZ_WRITE_SEEDS=corpus ./fuzz_users_aliases; ./fuzz_users_aliases corpus
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "common/auth/aliases.hpp"
#include "common/auth/users.hpp"
#include "tests/unit/test_auth_tables.hpp"

using namespace pbx::auth;

namespace {

size_t count_lines(std::string_view text) {
    size_t n = 0;
    for (char c : text) n += c == '\n';
    if (!text.empty() && text.back() != '\n') ++n;
    return n;
}

void check_error(const FileError& e, std::string_view text) {
    if (e.line < 1 || static_cast<size_t>(e.line) > count_lines(text)) std::abort();
    if (e.message.empty()) std::abort();
}

void write_seeds(const char* dir) {
    int n = 0;
    auto put = [&](char mode, std::string_view text) {
        std::ofstream out(std::string(dir) + "/seed-" + std::to_string(n++), std::ios::binary);
        out << mode << text;
    };
    namespace t = test_tables;
    for (const char* s : t::kValidUsers) put('\0', s);
    for (const auto& s : t::kInvalidUsers) put('\0', s.text);
    for (const char* s : t::kValidAliases) put('\0', s);
    for (const auto& s : t::kInvalidAliases) put('\0', s.text);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("PBX_FUZZ_WRITE_SEEDS")) {
        write_seeds(dir);
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    bool tight = data[0] & 1;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

    UsersLimits ul;
    AliasesLimits al;
    if (tight) {
        ul.max_line = 48;
        ul.max_entries = 3;
        ul.max_name = 8;
        al.max_line = 48;
        al.max_entry = 96;
        al.max_targets = 4;
        al.max_entries = 3;
        al.max_name = 8;
    }

    if (auto users = UserTable::parse(in, "users", ul); users.ok()) {
        if (users->size() > ul.max_entries) std::abort();
        for (const auto& [key, u] : users->all()) {
            if (key != u.name || !valid_user_name(u.name, ul.max_name)) std::abort();
            if (users->find(u.name) != &u) std::abort();
            if (u.uid == 0 || u.gid == 0) std::abort();
            if (u.home.empty() || u.home[0] != '/') std::abort();
            if (u.mailbox.size() < 2 || u.mailbox[0] != '/') std::abort();
            bool maildir = u.mailbox.back() == '/';
            if (maildir != (u.format == MailboxFormat::Maildir)) std::abort();
            if (u.line < 1 || static_cast<size_t>(u.line) > count_lines(in)) std::abort();
        }
    } else {
        check_error(users.error(), in);
    }

    if (auto aliases = AliasMap::parse(in, "aliases", al); aliases.ok()) {
        if (aliases->size() > al.max_entries) std::abort();
        for (const auto& [key, e] : aliases->all()) {
            if (key != e.name || !valid_alias_name(e.name, al.max_name)) std::abort();
            if (e.targets.empty() || e.targets.size() > al.max_targets) std::abort();
            for (const AliasTarget& t : e.targets) {
                if (t.value.empty()) std::abort();
                switch (t.kind) {
                    case AliasTargetKind::Local:
                        if (!valid_alias_name(t.value, al.max_name)) std::abort();
                        break;
                    case AliasTargetKind::Address:
                        if (t.value.find('@') == std::string::npos) std::abort();
                        break;
                    case AliasTargetKind::Include:
                    case AliasTargetKind::File:
                        if (t.value[0] != '/') std::abort();
                        break;
                    case AliasTargetKind::Command:
                        break;
                }
                if (t.verbatim && t.kind != AliasTargetKind::Local) std::abort();
            }
        }
    } else {
        check_error(aliases.error(), in);
    }

    if (auto targets = parse_alias_targets(in, al); targets.ok()) {
        if (targets->empty() || targets->size() > al.max_targets) std::abort();
    } else if (targets.error().empty()) {
        std::abort();
    }

    if (auto lines = parse_target_lines(in, al); lines.ok()) {
        if (lines->empty() || lines->size() > al.max_targets) std::abort();
        for (const AliasTarget& t : *lines)
            if (t.value.empty()) std::abort();
    } else if (!lines.error().starts_with("line ") && lines.error() != "no targets" &&
               !lines.error().starts_with("more than ")) {
        std::abort();
    }
    return 0;
}
