// Valid and invalid inputs of the users and aliases parsers. The unit tests
// check them; fuzz/fuzz_users_aliases.cpp's seed corpus is written from them
// (fuzz_users_aliases -write_seeds=DIR).
#pragma once

namespace pbx::auth::test_tables {

struct BadFile {
    const char* text;
    int line;              // expected FileError::line
    const char* fragment;  // must appear in the message
};

inline constexpr const char* kValidUsers[] = {
    "",
    "# only a comment\n\n   \n",
    "alice:$6$saltsalt$hash:5000:5000:/var/vmail/alice:\n",
    "bob:*:5000:5000:/home/bob:/var/mail/bob",
    ("carol:!:5001:5002:/home/carol/:mail/inbox\n"
     "dave:!$y$j9T$x:5001:5002:/home/dave:Maildir/\n"),
    "e.x_1-2:x:1:1:/:box/\n",
};

inline constexpr BadFile kInvalidUsers[] = {
    {"root:x:0:100:/root:\n", 1, "uid 0 (root) is refused"},
    {"# c\nalice:x:100:0:/home/a:\n", 2, "gid 0 (root) is refused"},
    {"alice:x:-1:100:/home/a:\n", 1, "uid '-1' is not a decimal number"},
    {"alice:x:abc:100:/home/a:\n", 1, "not a decimal number"},
    {"alice:x:+5:100:/home/a:\n", 1, "not a decimal number"},
    {"alice:x:4294967295:100:/home/a:\n", 1, "out of range"},
    {"alice:x:99999999999999999999:100:/home/a:\n", 1, "out of range"},
    {"alice:x::100:/home/a:\n", 1, "uid is empty"},
    {"Alice:x:100:100:/home/a:\n", 1, "must be lower case"},
    {"al/ice:x:100:100:/home/a:\n", 1, "bad user name"},
    {".alice:x:100:100:/home/a:\n", 1, "bad user name"},
    {":x:100:100:/home/a:\n", 1, "empty user name"},
    {"a:x:100:100:/home/a:\n\nb:x:1:1:/b:\na:y:100:100:/home/a:\n", 4,
     "duplicate user 'a' (first on line 1)"},
    {"alice:x:100:100:/home/a\n", 1, "expected 6 fields"},
    {"alice:x:100:100:/home/a::\n", 1, "found 7"},
    {"alice::100:100:/home/a:\n", 1, "empty password hash"},
    {"alice:x:100:100:home/a:\n", 1, "not an absolute path"},
    {"alice:x:100:100::\n", 1, "not an absolute path"},
    {"alice:x:100:100:/home/../root:\n", 1, "'..' component"},
    {"alice:x:100:100:/home/a:../b/\n", 1, "'..' component"},
    {"alice:x:100:100:/home//a:\n", 1, "empty component"},
    {"alice:x:100:100:/home/a:/\n", 1, "not a mailbox"},
    {"alice:x: 100:100:/home/a:\n", 1, "white space"},
    {"alice:x:100:100:/home/a:\r\n", 1, "carriage return"},
    {"alice:x\x01:100:100:/home/a:\n", 1, "control character"},
    {"  alice:x:100:100:/home/a:\n", 1, "white space"},
};

inline constexpr const char* kValidAliases[] = {
    "",
    "# nothing\n\n",
    "postmaster: root\n",
    "postmaster: root\nroot: alice",
    "MAILER-DAEMON: postmaster\n",
    ("staff: alice, bob@example.net,\n"
     "  # a comment between continuation lines\n"
     "\t\"|/usr/local/bin/ticket --queue staff, urgent\",\n"
     "       /var/log/staff-mail, :include:/etc/mail/staff.list,\n"),
    "loop: \\loop, \"\\\\root\"\n",
    "list+x: a\n",
};

inline constexpr BadFile kInvalidAliases[] = {
    {"postmaster root\n", 1, "expected 'name: target"},
    {"  root: alice\n", 1, "continuation line without an entry"},
    {"a:\n", 1, "no targets"},
    {"a: b\nc:  \n", 2, "alias 'c': no targets"},
    {"a: b,,c\n", 1, "empty target"},
    {"a: ,b\n", 1, "empty target"},
    {"a: |/bin/x y\n", 1, "put it in double quotes"},
    {"a: \"|/bin/x\n", 1, "unterminated quoted target"},
    {"a: \"|/bin/x\" y\n", 1, "text after the quoted target"},
    {"a: b\"c\n", 1, "stray '\"'"},
    {"a: :include:etc/list\n", 1, ":include: needs an absolute path"},
    {"a: |\n", 1, "empty command"},
    {"a: \"\"\n", 1, "empty target"},
    {"a b: c\n", 1, "bad alias name 'a b'"},
    {"-a: c\n", 1, "bad alias name"},
    {"a: c!d\n", 1, "bad local name 'c!d'"},
    {"a: @example.org\n", 1, "has no local part"},
    {"a: x@\n", 1, "has a bad domain"},
    {"a: x@example.org.\n", 1, "has a bad domain"},
    {"Root: a\n\n# x\nroot: b\n", 4, "duplicate alias 'root' (first on line 1)"},
    {"a: b\nc: d\r\n", 2, "carriage return"},
    {"a: b\n  c\x7f\n", 2, "control character"},
    {"a: b,\n  c,\nd: e,\n  f,,g\n", 3, "alias 'd': empty target"},
};

}  // namespace pbx::auth::test_tables
