// The aliases file, /etc/aliases format (pillarbox-aliases(5), as sendmail
// and Postfix read it):
//
//   # comment
//   postmaster: root
//   staff:      alice, bob@example.net,
//               "|/usr/local/bin/ticket --queue staff",
//               /var/log/staff-mail, :include:/etc/mail/staff.list
//
// A line starting with white space continues the entry above it; `#` lines
// and blank lines are ignored anywhere (also between continuation lines).
// Targets are separated by commas; a target containing white space or a comma
// must be double-quoted (inside quotes, \" and \\ are escapes). Names are
// case-insensitive (stored lower case), appear once, and are bounded
// (AliasesLimits). Every error names file:line (the line where the entry
// starts, or the physical line for line-level errors).
//
// REUSE: the map is the parsed file and nothing more. authd only asks "does
// this local part have an entry" (find()); local-delivery expands entries
// itself: for each AliasTarget in order, by kind:
//   Local    another local name: look it up again (aliases first, then users),
//            unless `verbatim` (written "\name"): deliver to that user's
//            mailbox without further alias expansion (the "\root" idiom that
//            ends a loop).
//   Address  an address (has '@'): resolve it like any recipient (local
//            domain → again; otherwise relay).
//   Include  ":include:/path": read recipients from that file, one per line
//            or comma-separated, with the same target syntax (as the file's
//            owner; commands and files only when the owner is root).
//   Command  "|command": pipe the message to /bin/sh -c command (an
//            administrator wrote it; envelope data only in the environment).
//   File     "/path": append to that file (mbox; trailing '/' = Maildir).
// Loop detection and the order of expansion are local-delivery's business.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/auth/textfile.hpp"
#include "common/result.hpp"

namespace pbx::auth {

enum class AliasTargetKind { Local, Address, Include, Command, File };

std::string_view to_string(AliasTargetKind k);

struct AliasTarget {
    AliasTargetKind kind = AliasTargetKind::Local;
    // Local: the name, lower case. Address: as written. Include: the path
    // (without ":include:"). Command: the command line (without '|').
    // File: the absolute path.
    std::string value;
    bool verbatim = false;  // Local only: written "\name", no further expansion
    bool operator==(const AliasTarget&) const = default;
};

struct AliasEntry {
    std::string name;                  // lower case
    std::vector<AliasTarget> targets;  // never empty, in file order
    int line = 0;                      // where the entry starts
};

struct AliasesLimits {
    size_t max_line = 4096;        // bytes per physical line, without the '\n'
    size_t max_entry = 64 * 1024;  // bytes of one entry with its continuation lines
    size_t max_targets = 10000;    // targets of one entry
    size_t max_entries = 100000;   // entries per file
    size_t max_name = 64;          // bytes of an alias name
    size_t max_file = 64u << 20;   // bytes of the whole file (read_text_file)
};

// Alias name (after lower-casing): 1..max_name bytes of [a-z0-9._+-],
// starting with [a-z0-9].
bool valid_alias_name(std::string_view name, size_t max_name = AliasesLimits{}.max_name);

class AliasMap {
  public:
    AliasMap() = default;  // no aliases (a missing aliases file)

    static Result<AliasMap, FileError> parse(std::string_view text, std::string_view file_name,
                                             const AliasesLimits& limits = {});

    // Case-insensitive.
    const AliasEntry* find(std::string_view name) const;
    bool contains(std::string_view name) const { return find(name) != nullptr; }
    size_t size() const { return entries_.size(); }
    bool empty() const { return entries_.empty(); }
    const std::map<std::string, AliasEntry, std::less<>>& all() const { return entries_; }

  private:
    std::map<std::string, AliasEntry, std::less<>> entries_;
};

// Parses the right-hand side of one entry (also the syntax of :include:
// files, one or more targets per line). The error text has no file:line.
Result<std::vector<AliasTarget>, std::string> parse_alias_targets(std::string_view text,
                                                                  const AliasesLimits& limits = {});

// The text of an :include: file or a ~/.forward as a target list: '#'
// comment lines and blank lines are skipped, every other line holds one or
// more targets (parse_alias_targets syntax; no continuation lines). Errors
// name the line ("line 3: ..."); an empty list is an error too.
Result<std::vector<AliasTarget>, std::string> parse_target_lines(std::string_view text,
                                                                 const AliasesLimits& limits = {});

}  // namespace pbx::auth
