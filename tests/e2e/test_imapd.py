"""imapd end to end: the session program started directly, as the mail user
(pbx-vmail), with a socketpair on fd 0/1 and the environment of
common/session_interface.hpp, driven with imaplib and raw bytes; mail
delivered by SMTP through a real instance (smtpd, queue-manager,
local-delivery); two concurrent sessions; IDLE; hostile mailbox names;
kill -9 mid-APPEND; mbsync through a Tunnel (issue: IMAP)."""

import base64
import imaplib
import os
import pwd
import re
import resource
import select
import shutil
import signal
import smtplib
import ssl
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Instance

D = harness.DOMAIN

# Commands imaplib does not know.
for _name in ("ID", "ENABLE", "UNSELECT", "NAMESPACE", "MOVE", "IDLE"):
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))

MULTIPART = (
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: multipart test\r\n"
    b"Date: Tue, 1 Feb 2022 10:00:00 +0100\r\n"
    b"Message-ID: <mp1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    b"\r\n"
    b"This is a multi-part message.\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"caf\xc3\xa9 au lait\r\n"
    b"second line\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"From: inner@example.test\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream; name=\"x.bin\"\r\n"
    b"Content-Disposition: attachment; filename=\"x.bin\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgcICQ==\r\n"
    b"--b1--\r\n")

PART1 = b"caf\xc3\xa9 au lait\r\nsecond line"
PART2 = b"Subject: inner\r\nFrom: inner@example.test\r\n\r\ninner body"


def vmail():
    return pwd.getpwnam("pbx-vmail")


class SockIMAP(imaplib.IMAP4):
    """imaplib over an already connected socket."""

    def __init__(self, sock):
        self._given = sock
        super().__init__()

    def open(self, host="", port=0, timeout=None):
        self.host, self.port = host, port
        self.sock = self._given
        self.file = self.sock.makefile("rb")


class Session:
    """One imapd process on a socketpair, as the mail user."""

    def __init__(self, maildir, user="alice", login_tag=None, extra_env=None):
        v = vmail()
        ours, theirs = socket.socketpair()
        env = {"PBX_USER": user, "HOME": os.path.dirname(maildir.rstrip("/")),
               "PBX_MAILBOX": maildir, "PBX_MAILBOX_FORMAT": "maildir",
               "PBX_SERVICE": "imapd", "PBX_SESSION_ID": "t1", "PBX_FOREGROUND": "1",
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", ""),
               "UBSAN_OPTIONS": "print_stacktrace=1"}
        if login_tag:
            env["PBX_LOGIN_TAG"] = login_tag
        env.update(extra_env or {})
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([harness.program("imapd"), "-c", "/dev/null"], stdin=theirs, stdout=theirs,
                                     stderr=self.stderr, env=env, user=v.pw_uid,
                                     group=v.pw_gid, extra_groups=[], cwd="/")
        theirs.close()
        self.sock = ours
        self.sock.settimeout(20)

    def imap(self):
        return SockIMAP(self.sock)

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def close(self, check=True):
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        text = self.log()
        if check:
            assert not harness.SANITIZER_PATTERNS.search(text), text


class Raw:
    """Raw bytes to a session: send lines, read until a tagged reply."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_until(self, pattern, timeout=10):
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                out = self.buf[:m.end()]
                self.buf = self.buf[m.end():]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timeout waiting for %r; got %r" % (pattern, self.buf))
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise AssertionError("closed while waiting for %r; got %r" %
                                         (pattern, self.buf))
                self.buf += chunk

    def cmd(self, tag, line, timeout=10):
        self.send(tag + b" " + line + b"\r\n")
        return self.read_until(rb"^" + re.escape(tag) + rb" (OK|NO|BAD)[^\r\n]*\r\n", timeout)


def fetch_one(imap, num, item, uid=False):
    typ, data = (imap.uid if uid else lambda *a: getattr(imap, a[0].lower())(*a[1:]))(
        "FETCH", num, item)
    assert typ == "OK", (typ, data)
    for part in data:
        if isinstance(part, tuple):
            return part[1]
    return None


class Store:
    """A Maildir++ root for one test user, owned by pbx-vmail."""

    def __init__(self):
        v = vmail()
        self.dir = os.path.realpath(tempfile.mkdtemp(prefix="pbx-imap-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.home = os.path.join(self.dir, "alice")
        os.mkdir(self.home, 0o700)
        os.chown(self.home, v.pw_uid, v.pw_gid)
        self.maildir = os.path.join(self.home, "Maildir")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(harness.program("imapd"), "imapd is not built")
class ImapdDirectTest(unittest.TestCase):
    """imapd alone, started directly with a socketpair."""

    def setUp(self):
        harness.ensure_users()
        self.store = Store()
        self.sessions = []

    def tearDown(self):
        for s in self.sessions:
            s.close()
        self.store.cleanup()

    def session(self, **kw):
        s = Session(self.store.maildir, **kw)
        self.sessions.append(s)
        return s

    def test_login_tag_capability_and_runs_as_mail_user(self):
        s = self.session(login_tag="a001")
        raw = Raw(s.sock)
        line = raw.read_until(rb"^a001 [^\r\n]*\r\n")
        self.assertRegex(line, rb"^a001 OK \[CAPABILITY IMAP4rev1 [^\]]*IDLE[^\]]*\] Logged in")
        for cap in (b"LITERAL+", b"UIDPLUS", b"MOVE", b"NAMESPACE", b"SPECIAL-USE", b"ENABLE",
                    b"UNSELECT", b"CHILDREN", b"LIST-STATUS", b"APPENDLIMIT="):
            self.assertIn(cap, line)
        status = harness.proc_status(s.proc.pid)
        self.assertEqual(status["Uid"].split()[0], str(vmail().pw_uid))
        out = raw.cmd(b"a2", b"LOGOUT")
        self.assertIn(b"* BYE", out)
        self.assertEqual(s.proc.wait(timeout=10), 0)

    def test_refuses_root(self):
        ours, theirs = socket.socketpair()
        p = subprocess.run([harness.program("imapd"), "-c", "/dev/null"], stdin=theirs, stdout=theirs,
                           env={"PBX_USER": "x", "PBX_MAILBOX": self.store.maildir,
                                "PBX_FOREGROUND": "1"},
                           stderr=subprocess.PIPE, timeout=10)
        theirs.close()
        ours.close()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"uid or gid 0", p.stderr)
        self.assertFalse(os.path.exists(self.store.maildir))

    def test_special_use_folders_list_namespace(self):
        imap = self.session().imap()
        self.assertEqual(imap.state, "AUTH")
        typ, data = imap.list('""', "*")
        self.assertEqual(typ, "OK")
        lines = [d.decode() for d in data]
        joined = "\n".join(lines)
        for name, attr in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"),
                           ("Junk", "\\Junk"), ("Archive", "\\Archive")):
            self.assertRegex(joined, r"\([^)]*\%s[^)]*\) \".\" %s" % (attr, name))
        self.assertRegex(joined, r'\(\\HasNoChildren\) "\." INBOX')
        typ, data = imap.lsub('""', "*")
        self.assertEqual(len(data), 5, data)
        typ, data = imap.namespace()
        self.assertEqual(data, [b'(("" ".")) NIL NIL'])
        typ, data = imap.list('""', '""')
        self.assertEqual(data, [b'(\\Noselect) "." ""'])
        typ, data = imap._simple_command("ID", "NIL")
        self.assertEqual(typ, "OK")
        typ, data = imap._simple_command("ENABLE", "CONDSTORE")
        self.assertEqual(typ, "OK")
        # Folders on disk, Maildir++.
        for n in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
            self.assertTrue(os.path.isdir(os.path.join(self.store.maildir, "." + n, "cur")))

    def test_append_fetch_byte_exact(self):
        imap = self.session().imap()
        typ, data = imap.append("INBOX", r"(\Flagged $Work)", '"05-Mar-2023 12:34:56 +0100"',
                                MULTIPART)
        self.assertEqual(typ, "OK")
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
        self.assertIsNotNone(m, data)
        validity, uid = int(m.group(1)), int(m.group(2))
        self.assertEqual(uid, 1)
        typ, data = imap.select("INBOX")
        self.assertEqual(data, [b"1"])
        self.assertEqual(int(imap.untagged_responses["UIDVALIDITY"][0]), validity)
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[])"), MULTIPART)
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[1])"), PART1)
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[2])"), PART2)
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[2.HEADER])"),
                         b"Subject: inner\r\nFrom: inner@example.test\r\n\r\n")
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[2.TEXT])"), b"inner body")
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[3])"), b"AAECAwQFBgcICQ==")
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[3.MIME])"),
                         b"Content-Type: application/octet-stream; name=\"x.bin\"\r\n"
                         b"Content-Disposition: attachment; filename=\"x.bin\"\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\n")
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT TO)])"),
                         b"To: bob@example.test\r\nSubject: multipart test\r\n\r\n")
        hdr_end = MULTIPART.index(b"\r\n\r\n") + 4
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[HEADER])"), MULTIPART[:hdr_end])
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[TEXT])"), MULTIPART[hdr_end:])
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[]<10.20>)"), MULTIPART[10:30])
        self.assertEqual(fetch_one(imap, "1", "(RFC822.HEADER)"), MULTIPART[:hdr_end])
        typ, data = imap.fetch("1", "(FLAGS RFC822.SIZE INTERNALDATE UID)")
        self.assertIn(b"RFC822.SIZE %d" % len(MULTIPART), data[0])
        self.assertIn(b'INTERNALDATE "05-Mar-2023 11:34:56 +0000"', data[0])
        self.assertIn(b"UID 1", data[0])
        self.assertIn(b"\\Flagged", data[0])
        self.assertIn(b"$Work", data[0])
        self.assertNotIn(b"\\Seen", data[0])
        typ, data = imap.fetch("1", "(ENVELOPE)")
        self.assertIn(b'"multipart test" (("Alice Example" NIL "alice" "example.test"))',
                      data[0])
        self.assertIn(b'"<mp1@example.test>"', data[0])
        typ, data = imap.fetch("1", "(BODYSTRUCTURE)")
        bs = data[0]
        self.assertIn(b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" %d 2' % len(PART1),
                      bs)
        self.assertIn(b'"MESSAGE" "RFC822"', bs)
        self.assertIn(b'("ATTACHMENT" ("FILENAME" "x.bin"))', bs)
        self.assertIn(b'"MIXED" ("BOUNDARY" "b1")', bs)
        # PEEK left \Seen alone; BODY[] sets it and reports FLAGS.
        typ, data = imap.fetch("1", "(BODY[1])")
        flat = b"".join(p[0] if isinstance(p, tuple) else p for p in data)
        self.assertIn(b"\\Seen", flat)
        typ, data = imap.fetch("1", "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])
        # The file on disk: flags in the name, keyword in dovecot-keywords.
        cur = os.listdir(os.path.join(self.store.maildir, "cur"))
        self.assertEqual(len(cur), 1)
        self.assertTrue(cur[0].endswith(":2,FSa"), cur)
        with open(os.path.join(self.store.maildir, "dovecot-keywords")) as f:
            self.assertEqual(f.read(), "0 $Work\n")
        with open(os.path.join(self.store.maildir, "pillarbox-uidlist")) as f:
            text = f.read()
        self.assertTrue(text.startswith("pillarbox-uidlist 1 V%d N2\n1 :" % validity), text)

    def test_search_decodes_what_the_user_reads(self):
        imap = self.session().imap()
        plain = (b"From: plain@example.test\r\nSubject: nothing special\r\n\r\n"
                 b"just ascii\r\n")
        encoded = (b"From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.test>\r\n"
                   b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"
                   b"MIME-Version: 1.0\r\n"
                   b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\n"
                   + base64.encodebytes("Das Café hat geöffnet.\n".encode()).replace(b"\n", b"\r\n"))
        for m in (plain, encoded):
            self.assertEqual(imap.append("INBOX", None, None, m)[0], "OK")
        imap.select("INBOX")
        cache = os.path.join(self.store.maildir, "pillarbox-cache")
        self.assertFalse(os.path.exists(cache))

        def searches(imap, want3=b""):
            # 8-bit search strings go as literals (imaplib sends .literal last).
            for key, text, want in (("BODY", "CAFÉ", b"2"), ("SUBJECT", "grüße", b"2"),
                                    ("FROM", "JÖRG", b"2"), ("TEXT", "GEÖFFNET", b"2"),
                                    ("BODY", "ascii", b"1"), ("BODY", "RGFzIENhZsOp", b""),
                                    ("SUBJECT", "SPECIAL", b"1"), ("TO", "zürich", want3),
                                    ("FROM", "example.test", b"1 2" + (b" 3" if want3 else b""))):
                imap.literal = text.encode()
                typ, data = imap.search("UTF-8", key)
                self.assertEqual((typ, data), ("OK", [want]), (key, text))

        searches(imap)
        # SUBJECT/FROM/TO/CC/BCC filled the cache (their decoded fields); a
        # second session answers from it, the same.
        with open(cache, "rb") as f:
            self.assertIn("subject: grüße aus köln\n".encode(), f.read())
        second = self.session().imap()
        second.select("INBOX")
        searches(second)
        # A message another writer adds (no cache entry yet) is searched too.
        path = os.path.join(self.store.maildir, "new", "3.M3P3.host")
        with open(path, "wb") as f:
            f.write(b"From: third@example.test\nTo: =?UTF-8?Q?Z=C3=BCrich?= <zh@example.test>\n\nhi\n")
        os.chown(path, vmail().pw_uid, vmail().pw_gid)
        b = self.session().imap()
        b.select("INBOX")
        searches(b, want3=b"3")

    def test_store_search_copy_move_expunge(self):
        imap = self.session().imap()
        for i in range(1, 6):
            msg = (b"From: s%d@example.test\r\nSubject: msg %d\r\n\r\nbody number %d\r\n"
                   % (i, i, i))
            self.assertEqual(imap.append("INBOX", None, None, msg)[0], "OK")
        imap.select("INBOX")
        typ, data = imap.store("2:3", "+FLAGS", r"(\Deleted)")
        self.assertEqual(typ, "OK")
        self.assertEqual(len(data), 2)
        typ, data = imap.search(None, "DELETED")
        self.assertEqual(data, [b"2 3"])
        typ, data = imap.search(None, "UNDELETED", "BODY", '"number 4"')
        self.assertEqual(data, [b"4"])
        typ, data = imap.search("UTF-8", "OR", "SUBJECT", '"msg 1"', "FROM", "s5")
        self.assertEqual(data, [b"1 5"])
        typ, data = imap.uid("SEARCH", "UID", "4:*")
        self.assertEqual(data, [b"4 5"])
        typ, data = imap.search("KOI8-R", "ALL")
        self.assertEqual(typ, "NO")
        typ, data = imap.copy("1,4", "Archive")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\[COPYUID \d+ 1,4 1,2\]")
        typ, data = imap.copy("1", "Nonexistent")
        self.assertEqual(typ, "NO")
        self.assertIn(b"TRYCREATE", data[0])
        typ, data = imap.expunge()
        self.assertEqual(data, [b"3", b"2"])
        typ, data = imap._simple_command("MOVE", "1", "Trash")
        self.assertEqual(typ, "OK")
        self.assertIn(b"1", imap.untagged_responses.get("EXPUNGE", []))
        typ, data = imap.uid("SEARCH", "ALL")
        self.assertEqual(data, [b"4 5"])
        imap.store("1", "+FLAGS", r"(\Deleted)")
        imap.store("2", "+FLAGS", r"(\Deleted)")
        typ, data = imap.uid("EXPUNGE", "5")
        self.assertEqual(typ, "OK")
        typ, data = imap.uid("SEARCH", "ALL")
        self.assertEqual(data, [b"4"])
        typ, data = imap.status("Archive", "(MESSAGES UNSEEN UIDNEXT)")
        self.assertEqual(data, [b'Archive (MESSAGES 2 UNSEEN 2 UIDNEXT 3)'])
        typ, data = imap.status("Trash", "(MESSAGES)")
        self.assertEqual(data, [b'Trash (MESSAGES 1)'])
        # UIDs are never reused after an expunge.
        imap.append("INBOX", None, None, b"Subject: six\r\n\r\nsix\r\n")
        imap.noop()
        typ, data = imap.uid("SEARCH", "ALL")
        self.assertEqual(data, [b"4 6"])
        self.assertEqual(imap.close()[0], "OK")
        typ, data = imap.select("INBOX", readonly=True)
        self.assertEqual(data, [b"1"])
        typ, data = imap.store("1", "+FLAGS", r"(\Seen)")
        self.assertEqual(typ, "NO")

    def test_folders_hierarchy_and_hostile_names(self):
        imap = self.session().imap()
        for n in ("a", "a.b", "a.b.c", "caf&AOk-"):
            self.assertEqual(imap.create(n)[0], "OK", n)
        self.assertEqual(imap.create("a")[0], "NO")
        typ, data = imap.list('""', "a.%")
        self.assertEqual(data, [b'(\\HasChildren) "." a.b'])
        typ, data = imap.list("a.", "*")
        self.assertEqual(sorted(data), [b'(\\HasChildren) "." a.b', b'(\\HasNoChildren) "." a.b.c'])
        self.assertEqual(imap.rename("a", "z")[0], "OK")
        typ, data = imap.list('""', "z*")
        self.assertEqual(len(data), 3)
        self.assertEqual(imap.delete("z.b")[0], "OK")
        typ, data = imap.list('""', "z.%")
        self.assertEqual(data, [b'(\\NonExistent \\Noselect \\HasChildren) "." z.b'])
        self.assertEqual(imap.subscribe("z")[0], "OK")
        typ, data = imap.lsub('""', "z")
        self.assertEqual(data, [b'() "." z'])
        self.assertEqual(imap.unsubscribe("z")[0], "OK")
        typ, data = imap._simple_command("LIST", '""', "%", "RETURN", "(STATUS (MESSAGES UIDNEXT))")
        self.assertEqual(typ, "OK")
        self.assertTrue(any(b"INBOX (MESSAGES 0 UIDNEXT 1)" in d
                            for d in imap.untagged_responses.get("STATUS", [])))
        before = set(os.listdir(self.store.dir))
        root_before = set(os.listdir("/"))
        for bad in ("../x", "..", "/etc", "/tmp/evil", "~root", "~", "a..b", ".", ".hidden",
                    "a/b", "&Jjo", "&AGE-", "x*", "%", "a.../../b"):
            quoted = '"%s"' % bad
            for cmd in ("CREATE", "SELECT", "DELETE", "SUBSCRIBE"):
                typ, data = imap._simple_command(cmd, quoted)
                self.assertEqual(typ, "NO", (cmd, bad, data))
            typ, data = imap._simple_command("RENAME", "Sent", quoted)
            self.assertEqual(typ, "NO", ("RENAME", bad))
            typ, data = imap._simple_command("APPEND", quoted, "{1+}\r\nx")
        self.assertEqual(set(os.listdir(self.store.dir)), before)
        self.assertEqual(set(os.listdir("/")), root_before)
        self.assertFalse(os.path.exists("/tmp/evil"))
        # Every folder dir is a direct child of the root, named ".<name>".
        for e in os.listdir(self.store.maildir):
            self.assertNotIn("/", e)
        self.assertEqual(imap.delete("INBOX")[0], "NO")

    def test_bad_input_table(self):
        s = self.session()
        raw = Raw(s.sock)
        raw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        table = [
            (b"a1 FOO", rb"a1 BAD Unknown command FOO"),
            (b"a2 SELECT", rb"a2 BAD"),
            (b"a3 FETCH 1 FLAGS", rb"a3 BAD No mailbox selected"),
            (b"a4 LOGIN alice pw", rb"a4 BAD Already logged in"),
            (b"a5 STATUS INBOX", rb"a5 BAD"),
            (b"a6 STATUS INBOX (BOGUS)", rb"a6 BAD Unknown status item"),
            (b"a7 LIST", rb"a7 BAD"),
            (b"a8 X (((((((((((((((((((a)))))))))))))))))))", rb"a8 BAD Too deeply nested"),
            (b'a9 SELECT "unterminated', rb"a9 BAD Unterminated quoted string"),
            (b"b1 APPEND INBOX {99999999999}", rb"b1 NO \[TOOBIG\]"),
            (b"b2 LOGIN {70000}", rb"b2 BAD \[TOOBIG\]"),
            (b"b3 SEARCH", rb"b3 BAD No mailbox selected"),
            (b"b4 CREATE INBOX", rb"b4 NO \[ALREADYEXISTS\]"),
            (b"b5 ENABLE", rb"b5 BAD"),
            (b"+ NOOP", rb"\* BAD Invalid tag"),
            (b"b6 NOOP extra", rb"b6 BAD NOOP takes no arguments"),
            (b"b7 APPEND INBOX (\\Bogus) {1+}\r\nx", rb"b7 BAD Invalid flag"),
            (b"b8 APPEND INBOX \"bad date\" {1+}\r\nx", rb"b8 BAD Invalid date-time"),
            (b"b9 APPEND NoSuchBox {1+}\r\nx", rb"b9 NO \[TRYCREATE\]"),
            (b'c0 CREATE "caf\xc3\xa9"', rb"c0 NO Mailbox name is not valid modified UTF-7"),
            (b"c0 CREATE {6+}\r\n../../", rb"c0 NO"),
        ]
        for line, want in table:
            raw.send(line + b"\r\n")
            got = raw.read_until(rb"^(\S+) (OK|NO|BAD)[^\r\n]*\r\n")
            self.assertRegex(got, want, line)
        # A line that is too long is refused, and the session still works.
        raw.send(b"c1 NOOP " + b"x" * 70000 + b"\r\n")
        self.assertRegex(raw.read_until(rb"^\S+ BAD[^\r\n]*\r\n"), rb"Line too long")
        raw.send(b"c2 SELECT INBOX\r\n")
        raw.read_until(rb"^c2 OK")
        for line, want in [
            (b"c3 FETCH 2 FLAGS", rb"c3 BAD Invalid message sequence number"),
            (b"c4 FETCH 1:x FLAGS", rb"c4 BAD Invalid message set"),
            (b"c5 FETCH 1 (FLAGS BOGUS)", rb"c5 BAD"),
            (b"c6 STORE 1 FLAGZ (\\Seen)", rb"c6 BAD"),
            (b"c7 SEARCH FROMM x", rb"c7 BAD Unknown search key"),
            (b"c8 UID FROB 1", rb"c8 BAD Unknown UID command"),
            (b"c9 FETCH 1 BODY[1.]", rb"c9 BAD"),
            (b"d1 SEARCH CHARSET KOI8-R ALL", rb"d1 NO \[BADCHARSET"),
        ]:
            raw.send(line + b"\r\n")
            self.assertRegex(raw.read_until(rb"^(\S+) (OK|NO|BAD)[^\r\n]*\r\n"), want, line)
        # Synchronizing literals get "+", then the command runs.
        raw.send(b"d2 SELECT {5}\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        raw.send(b"INBOX\r\n")
        raw.read_until(rb"^d2 OK")
        self.assertIn(b"* BYE", raw.cmd(b"z", b"LOGOUT"))

    def test_two_sessions_see_each_other(self):
        a = self.session().imap()
        for i in range(3):
            a.append("INBOX", None, None, b"Subject: %d\r\n\r\nx\r\n" % i)
        b = self.session().imap()
        a.select("INBOX")
        b.select("INBOX")
        a.untagged_responses.pop("EXISTS", None)
        a.store("2", "+FLAGS", r"(\Flagged)")
        typ, data = b.noop()
        fetches = b.untagged_responses.get("FETCH", [])
        self.assertTrue(any(b"\\Flagged" in f for f in fetches), fetches)
        a.store("1", "+FLAGS", r"(\Deleted)")
        a.expunge()
        b.noop()
        self.assertEqual(b.untagged_responses.pop("EXPUNGE", None), [b"1"])
        # B's view is renumbered: message 1 is now the old 2 (flagged).
        typ, data = b.fetch("1", "(UID FLAGS)")
        self.assertIn(b"UID 2 FLAGS (\\Flagged)", data[0])
        # A new message appended by B is seen by A.
        b.append("INBOX", None, None, b"Subject: new\r\n\r\nx\r\n")
        a.noop()
        self.assertEqual(a.untagged_responses.pop("EXISTS", None), [b"3"])
        # No EXPUNGE during FETCH: B fetches while A expunges.
        a.store("3", "+FLAGS", r"(\Deleted)")
        a.expunge()
        typ, data = b.fetch("1:2", "(FLAGS)")
        self.assertNotIn("EXPUNGE", b.untagged_responses)
        b.noop()
        self.assertEqual(b.untagged_responses.get("EXPUNGE"), [b"3"])

    def test_append_expunge_in_the_selected_folder(self):
        # APPEND to the selected folder: EXISTS in its answer, uids in order,
        # also when another writer added a file just before; EXPUNGE of
        # messages where the session saw them, and another session sees it.
        a = self.session()
        raw = Raw(a.sock)
        raw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        for i in (1, 2):
            raw.cmd(b"p%d" % i, b"APPEND INBOX {17+}\r\nSubject: %d\r\n\r\nx\r\n" % i)
        out = raw.cmd(b"s", b"SELECT INBOX")
        self.assertIn(b"* 2 EXISTS", out)
        out = raw.cmd(b"a1", b"APPEND INBOX (\\Seen) {17+}\r\nSubject: 3\r\n\r\nx\r\n")
        self.assertIn(b"* 3 EXISTS\r\n", out)
        self.assertRegex(out, rb"a1 OK \[APPENDUID \d+ 3\]")
        v = vmail()
        path = os.path.join(self.store.maildir, "new", "1700000000.M9P9Q9.test")
        with open(path, "wb") as f:
            f.write(b"Subject: delivered\n\nx\n")
        os.chown(path, v.pw_uid, v.pw_gid)
        out = raw.cmd(b"a2", b"APPEND INBOX {17+}\r\nSubject: 4\r\n\r\nx\r\n")
        self.assertIn(b"* 5 EXISTS\r\n", out)
        self.assertRegex(out, rb"a2 OK \[APPENDUID \d+ 4\]")
        out = raw.cmd(b"f", b"FETCH 1:* (UID FLAGS)")
        self.assertEqual(re.findall(rb"\* (\d+) FETCH \(UID (\d+)", out),
                         [(b"1", b"1"), (b"2", b"2"), (b"3", b"3"), (b"4", b"4"), (b"5", b"5")])
        self.assertIn(b"UID 3 FLAGS (\\Seen)", out)
        b = self.session()
        braw = Raw(b.sock)
        braw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        self.assertIn(b"* 5 EXISTS", braw.cmd(b"s", b"SELECT INBOX"))
        raw.cmd(b"d", b"STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        out = raw.cmd(b"e", b"EXPUNGE")
        self.assertEqual(re.findall(rb"\* (\d+) EXPUNGE", out), [b"3", b"1"])
        self.assertEqual(os.listdir(os.path.join(self.store.maildir, "new")), [])
        out = raw.cmd(b"f2", b"UID FETCH 1:* (UID)")
        self.assertEqual(re.findall(rb"UID (\d+)\)", out), [b"2", b"4", b"5"])
        out = braw.cmd(b"n", b"NOOP")
        self.assertEqual(sorted(re.findall(rb"\* (\d+) EXPUNGE", out)), [b"1", b"3"])
        # A new session: the same three, the same uids.
        c = self.session()
        craw = Raw(c.sock)
        craw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        self.assertIn(b"* 3 EXISTS", craw.cmd(b"s", b"SELECT INBOX"))
        out = craw.cmd(b"f", b"UID FETCH 1:* (UID)")
        self.assertEqual(re.findall(rb"UID (\d+)\)", out), [b"2", b"4", b"5"])
        # The next APPEND's uid is 6: expunged uids are never given again.
        out = craw.cmd(b"a", b"APPEND INBOX {17+}\r\nSubject: 6\r\n\r\nx\r\n")
        self.assertRegex(out, rb"a OK \[APPENDUID \d+ 6\]")
        self.assertIn(b"* 4 EXISTS", out)

    def test_idle_sees_delivery_and_other_session(self):
        a = self.session()
        raw = Raw(a.sock)
        raw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        raw.cmd(b"s", b"SELECT INBOX")
        raw.send(b"i IDLE\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        # A local delivery: a file linked into new/ (as local-delivery does).
        v = vmail()
        name = "1700000000.M1P1Q1.test,S=20"
        tmp = os.path.join(self.store.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(b"Subject: idle\r\n\r\nhi\r\n")
        os.chown(tmp, v.pw_uid, v.pw_gid)
        start = time.monotonic()
        os.rename(tmp, os.path.join(self.store.maildir, "new", name))
        raw.read_until(rb"^\* 1 EXISTS\r\n", timeout=5)
        self.assertLess(time.monotonic() - start, 1.0)
        raw.send(b"DONE\r\n")
        raw.read_until(rb"^i OK[^\r\n]*\r\n")
        # Flags changed by another session show up during IDLE, too.
        raw.send(b"i2 IDLE\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        b = self.session().imap()
        b.select("INBOX")
        b.store("1", "+FLAGS", r"(\Answered)")
        raw.read_until(rb"^\* 1 FETCH \([^\r\n]*\\Answered[^\r\n]*\r\n", timeout=5)
        b.store("1", "+FLAGS", r"(\Deleted)")
        b.expunge()
        raw.read_until(rb"^\* 1 EXPUNGE\r\n", timeout=5)
        raw.send(b"DONE\r\n")
        raw.read_until(rb"^i2 OK[^\r\n]*\r\n")
        # Anything but DONE ends IDLE with BAD.
        raw.send(b"i3 IDLE\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        raw.send(b"NOPE\r\n")
        raw.read_until(rb"^i3 BAD[^\r\n]*\r\n")

    def test_kill_mid_append_keeps_uids(self):
        imap = self.session().imap()
        for i in range(3):
            imap.append("INBOX", None, None, b"Subject: %d\r\n\r\nx\r\n" % i)
        imap.select("INBOX")
        validity = imap.untagged_responses["UIDVALIDITY"][0]
        typ, before = imap.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        s = self.session()
        raw = Raw(s.sock)
        raw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        raw.send(b"a APPEND INBOX {100000}\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        raw.send(b"Subject: partial\r\n\r\n" + b"y" * 50000)
        time.sleep(0.2)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(timeout=10)
        # Now mid-EXPUNGE: kill right after sending it.
        imap.store("2", "+FLAGS", r"(\Deleted)")
        s2 = self.session()
        raw2 = Raw(s2.sock)
        raw2.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        raw2.cmd(b"s", b"SELECT INBOX")
        raw2.send(b"e EXPUNGE\r\n")
        s2.proc.send_signal(signal.SIGKILL)
        s2.proc.wait(timeout=10)
        c = self.session().imap()
        c.select("INBOX")
        self.assertEqual(c.untagged_responses["UIDVALIDITY"][0], validity)
        typ, after = c.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        before_map = {re.search(rb"UID (\d+)", p[0]).group(1): p[1]
                      for p in before if isinstance(p, tuple)}
        after_map = {re.search(rb"UID (\d+)", p[0]).group(1): p[1]
                     for p in after if isinstance(p, tuple)}
        # Message 2 may or may not be gone (the EXPUNGE may have run); every
        # other message keeps its UID and text, and nothing partial appears.
        for uid, text in after_map.items():
            self.assertEqual(before_map[uid], text)
        for uid in (b"1", b"3"):
            self.assertIn(uid, after_map)
        self.assertNotIn(b"partial", b"".join(after_map.values()))

    def test_cache_written_and_never_trusted(self):
        imap = self.session().imap()
        imap.append("INBOX", None, None, MULTIPART)
        imap.select("INBOX")
        typ, first = imap.fetch("1", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE)")
        cache = os.path.join(self.store.maildir, "pillarbox-cache")
        self.assertTrue(os.path.exists(cache))
        with open(cache, "rb") as f:
            self.assertTrue(f.read().startswith(b"pillarbox-cache 2 "))
        # A second session answers from the cache, the same bytes.
        b = self.session().imap()
        b.select("INBOX")
        self.assertEqual(b.fetch("1", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE)")[1], first)
        # A corrupt cache is ignored (and rewritten), not a crashed session.
        with open(cache, "r+b") as f:
            f.seek(40)
            f.write(b"garbage garbage")
        c = self.session().imap()
        c.select("INBOX")
        self.assertEqual(c.fetch("1", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE)")[1], first)
        with open(cache, "rb") as f:
            self.assertNotIn(b"garbage garbage", f.read())

    def test_big_fetch_flow_control(self):
        imap = self.session().imap()
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 3000
        for _ in range(3):
            imap.append("INBOX", None, None, big)
        imap.select("INBOX")
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        bodies = [p[1] for p in data if isinstance(p, tuple)]
        self.assertEqual(bodies, [big] * 3)

    def test_maildir_written_by_others(self):
        # Files delivered with LF line ends, external renames to cur/.
        v = vmail()
        imap = self.session().imap()
        new = os.path.join(self.store.maildir, "new")
        with open(os.path.join(new, "1.M1P1.host"), "wb") as f:
            f.write(b"Subject: lf\n\nline1\nline2\n")
        os.chown(os.path.join(new, "1.M1P1.host"), v.pw_uid, v.pw_gid)
        typ, data = imap.select("INBOX")
        self.assertEqual(data, [b"1"])
        self.assertEqual(imap.untagged_responses.get("RECENT"), [b"1"])
        typ, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[] FLAGS)")
        self.assertIn(b"RFC822.SIZE 29", data[0][0])
        self.assertIn(b"\\Recent", data[1] if len(data) > 1 else data[0][0])
        self.assertEqual(data[0][1], b"Subject: lf\r\n\r\nline1\r\nline2\r\n")
        cur = os.path.join(self.store.maildir, "cur")
        name = os.listdir(cur)[0]
        os.rename(os.path.join(cur, name), os.path.join(cur, "1.M1P1.host:2,S"))
        imap.noop()
        typ, data = imap.fetch("1", "(UID FLAGS)")
        self.assertIn(b"UID 1 FLAGS (\\Seen \\Recent)", data[0])


@unittest.skipUnless(harness.program("imapd") and harness.program("smtpd") and
                     harness.program("local-delivery") and harness.program("queue-manager"),
                     "imapd, smtpd, queue-manager or local-delivery is not built")
class ImapdWithDeliveryTest(unittest.TestCase):
    """Mail that came in by SMTP, read through imapd."""

    @classmethod
    def setUpClass(cls):
        cls.inst = Instance(config={"smtpd_greet_pause": "0s"})

    @classmethod
    def tearDownClass(cls):
        cls.inst.cleanup()

    def setUp(self):
        self.maildir = os.path.join(self.inst.mail_dir, "alice", "Maildir")
        self.sessions = []

    def tearDown(self):
        for s in self.sessions:
            s.close()

    def session(self):
        s = Session(self.maildir)
        self.sessions.append(s)
        return s

    def smtp_send(self, data, rcpt="alice@" + D):
        with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"), timeout=20) as s:
            s.sendmail("sender@example.net", [rcpt], data)

    def test_smtp_message_byte_exact_and_idle(self):
        s = self.session()
        raw = Raw(s.sock)
        raw.read_until(rb"^\* PREAUTH[^\r\n]*\r\n")
        out = raw.cmd(b"s", b"SELECT INBOX")
        exists = int(re.search(rb"\* (\d+) EXISTS", out).group(1))
        raw.send(b"i IDLE\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        self.smtp_send(MULTIPART)
        raw.read_until(rb"^\* %d EXISTS\r\n" % (exists + 1), timeout=20)
        raw.send(b"DONE\r\n")
        raw.read_until(rb"^i OK[^\r\n]*\r\n")
        imap = self.session().imap()
        imap.select("INBOX")
        n = str(exists + 1)
        whole = fetch_one(imap, n, "(BODY.PEEK[])")
        # Delivery added its header lines on top; the rest is byte-exact.
        self.assertTrue(whole.endswith(MULTIPART[MULTIPART.index(b"From: Alice"):]), whole)
        self.assertIn(b"Delivered-To: alice@example.test\r\n", whole)
        self.assertEqual(fetch_one(imap, n, "(BODY.PEEK[1])"), PART1)
        self.assertEqual(fetch_one(imap, n, "(BODY.PEEK[2])"), PART2)
        self.assertEqual(fetch_one(imap, n, "(BODY.PEEK[2.1])"), b"inner body")
        self.assertEqual(fetch_one(imap, n, "(BODY.PEEK[3])"), b"AAECAwQFBgcICQ==")
        typ, data = imap.fetch(n, "(RFC822.SIZE)")
        self.assertIn(b"RFC822.SIZE %d" % len(whole), data[0])


@unittest.skipUnless(harness.program("imapd") and shutil.which("mbsync") and
                     shutil.which("setpriv"), "imapd, mbsync or setpriv missing")
class ImapdRealClientsTest(unittest.TestCase):
    """mbsync (isync) syncing both ways through a Tunnel to imapd."""

    def test_mbsync_both_ways(self):
        harness.ensure_users()
        store = Store()
        self.addCleanup(store.cleanup)
        v = vmail()
        # Something on the server first.
        s = Session(store.maildir)
        imap = s.imap()
        imap.append("INBOX", None, None, b"Subject: from server\r\n\r\nserver text\r\n")
        imap.logout()
        s.close()
        local = os.path.join(store.dir, "local")
        os.mkdir(local, 0o700)
        os.chown(local, v.pw_uid, v.pw_gid)
        tunnel = ("env PBX_USER=alice PBX_MAILBOX=%s PBX_FOREGROUND=0 %s -c /dev/null"
                  % (store.maildir, harness.program("imapd")))
        rc = os.path.join(store.dir, "mbsyncrc")
        with open(rc, "w") as f:
            f.write("IMAPAccount t\nTunnel \"%s\"\n\n"
                    "IMAPStore remote\nAccount t\n\n"
                    "MaildirStore local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                    "Channel c\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
                    "Expunge Both\nSyncState *\n" % (tunnel, local, local))
        os.chmod(rc, 0o644)
        cmd = ["setpriv", "--reuid=%d" % v.pw_uid, "--regid=%d" % v.pw_gid, "--clear-groups",
               "env", "HOME=" + local, "mbsync", "-c", rc, "-a"]
        p = subprocess.run(cmd, capture_output=True, timeout=60, cwd="/")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        inbox = os.path.join(local, "INBOX")
        files = [os.path.join(inbox, d, f) for d in ("cur", "new")
                 for f in os.listdir(os.path.join(inbox, d))]
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            self.assertIn(b"server text", f.read())
        self.assertTrue(os.path.isdir(os.path.join(local, "Sent")))
        # A message written locally goes up.
        mine = os.path.join(local, "Sent", "new", "1.local.host")
        with open(mine, "wb") as f:
            f.write(b"Subject: from client\r\n\r\nclient text\r\n")
        os.chown(mine, v.pw_uid, v.pw_gid)
        p = subprocess.run(cmd, capture_output=True, timeout=60, cwd="/")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        s = Session(store.maildir)
        imap = s.imap()
        imap.select("Sent")
        typ, data = imap.fetch("1:*", "(BODY.PEEK[TEXT])")
        self.assertEqual(data[0][1], b"client text\r\n")
        imap.logout()
        s.close()


def tls_context():
    cert, _ = harness.tls_files()
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    return ctx


@unittest.skipUnless(harness.program("imapd") and harness.program("imap-login") and
                     harness.program("authd"), "imapd, imap-login or authd is not built")
class ImapLoginTest(unittest.TestCase):
    """Through the master: imap-login (pbx-login, TLS) hands the client to an
    imapd session running as the mail user."""

    @classmethod
    def setUpClass(cls):
        cls.inst = Instance(config={"smtpd_greet_pause": "0s"})

    @classmethod
    def tearDownClass(cls):
        cls.inst.cleanup()

    def test_imaps_login_session_as_mail_user(self):
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.inst.port("imaps"), ssl_context=tls_context(),
                                 timeout=20)
        self.assertIn("AUTH=PLAIN", imap.capabilities)
        # Right after the instance started, the master's channel to authd
        # may not be up yet: that is a NO [UNAVAILABLE] (try again later).
        for attempt in range(5):
            try:
                typ, data = imap.login("alice", "demo")
                break
            except imaplib.IMAP4.error as e:
                if "UNAVAILABLE" not in str(e) or attempt == 4:
                    raise
                time.sleep(1)
        self.assertEqual(typ, "OK")
        # The session's own capabilities came with the tagged OK.
        self.assertIn(b"[CAPABILITY IMAP4rev1", data[0])
        self.assertIn(b"UIDPLUS", data[0])
        typ, data = imap.append("INBOX", None, None, MULTIPART)
        self.assertEqual(typ, "OK")
        imap.select("INBOX")
        self.assertEqual(fetch_one(imap, "1", "(BODY.PEEK[2])"), PART2)
        pids = [pid for pid, name in self.inst.descendants() if name == "imapd"]
        self.assertEqual(len(pids), 1)
        st = harness.proc_status(pids[0])
        self.assertEqual(st["Uid"].split()[0], str(vmail().pw_uid))
        self.assertEqual(st["CapEff"], "0000000000000000")
        self.assertEqual(st["NoNewPrivs"], "1")
        login = self.inst.children()["imap-login"]
        self.assertEqual(harness.proc_status(login)["Uid"].split()[0],
                         str(pwd.getpwnam("pbx-login").pw_uid))
        imap.logout()

    def login_ssl(self):
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.inst.port("imaps"), ssl_context=tls_context(),
                                 timeout=20)
        for attempt in range(5):
            try:
                imap.login("alice", "demo")
                return imap
            except imaplib.IMAP4.error as e:
                if "UNAVAILABLE" not in str(e) or attempt == 4:
                    raise
                time.sleep(1)
        return imap

    def test_kill_imap_login_mid_append(self):
        imap = self.login_ssl()
        imap.create("Killed")
        for i in range(3):
            imap.append("Killed", None, None, b"Subject: k%d\r\n\r\nx\r\n" % i)
        imap.select("Killed")
        validity = imap.untagged_responses["UIDVALIDITY"][0]
        typ, before = imap.uid("SEARCH", "ALL")
        imap.logout()
        # A second client starts an APPEND and imap-login dies under it.
        s = socket.create_connection(("127.0.0.1", self.inst.port("imaps")), timeout=20)
        tls = tls_context().wrap_socket(s)
        raw = Raw(tls)
        raw.read_until(rb"^\* OK[^\r\n]*\r\n")
        raw.send(b"a LOGIN alice demo\r\n")
        raw.read_until(rb"^a OK[^\r\n]*\r\n")
        raw.send(b"b APPEND Killed {100000}\r\n")
        raw.read_until(rb"^\+ [^\r\n]*\r\n")
        raw.send(b"Subject: partial\r\n\r\n" + b"y" * 40000)
        time.sleep(0.3)
        old = self.inst.children()["imap-login"]
        os.kill(old, signal.SIGKILL)
        tls.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid = self.inst.children().get("imap-login")
            if pid and pid != old:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        imap = self.login_ssl()
        imap.select("Killed")
        self.assertEqual(imap.untagged_responses["UIDVALIDITY"][0], validity)
        typ, after = imap.uid("SEARCH", "ALL")
        self.assertEqual(after, before)
        typ, data = imap.search(None, "SUBJECT", "partial")
        self.assertEqual(data, [b""])
        imap.logout()

    def test_starttls_then_login_and_bad_password(self):
        imap = imaplib.IMAP4("127.0.0.1", self.inst.port("imap"), timeout=20)
        self.assertIn("STARTTLS", imap.capabilities)
        imap.starttls(ssl_context=tls_context())
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            imap.login("alice", "wrong")
        self.assertIn("AUTHENTICATIONFAILED", str(cm.exception))
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            imap.login("nosuchuser", "wrong")
        self.assertIn("AUTHENTICATIONFAILED", str(cm.exception))
        typ, data = imap.login("alice", "demo")
        self.assertEqual(typ, "OK")
        self.assertEqual(imap.select("INBOX")[0], "OK")
        imap.logout()

    def test_starttls_pipelined_bytes_discarded_and_sasl_ir(self):
        s = socket.create_connection(("127.0.0.1", self.inst.port("imap")), timeout=20)
        raw = Raw(s)
        raw.read_until(rb"^\* OK[^\r\n]*\r\n")
        raw.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
        raw.read_until(rb"^a OK[^\r\n]*\r\n")
        tls = tls_context().wrap_socket(s)
        raw2 = Raw(tls)
        ir = __import__("base64").b64encode(b"\0alice\0demo")
        raw2.send(b"c AUTHENTICATE PLAIN " + ir + b"\r\n")
        out = raw2.read_until(rb"^c (OK|NO|BAD)[^\r\n]*\r\n")
        self.assertNotIn(b"b OK", out)  # the pipelined CAPABILITY was dropped
        self.assertRegex(out, rb"c OK \[CAPABILITY IMAP4rev1")
        raw2.send(b"d LOGOUT\r\n")
        raw2.read_until(rb"^d OK[^\r\n]*\r\n")
        tls.close()


@unittest.skipUnless(harness.program("imapd") and shutil.which("fetchmail") and
                     shutil.which("setpriv"), "imapd, fetchmail or setpriv missing")
class ImapLoginLimitsTest(unittest.TestCase):
    """imap-login raises its open files limit to what imap_max_connections
    needs (two descriptors per connection), as root before the drop: from
    systemd's soft limit of 1,024 up to the hard limit."""

    def test_open_files_limit_fits_max_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 2 * 1000 + 64:
            self.skipTest("hard open files limit %d too low to test" % hard)
        conns = 1000 if hard == resource.RLIM_INFINITY else min(3000, (hard - 64) // 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the master inherits it
        try:
            inst = Instance(config={"imap_max_connections": str(conns)})
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        with inst:
            inst.wait_for_log(r"imap-login\[\d+\]: ready")
            pid = inst.wait_for_child("imap-login")
            with open("/proc/%d/limits" % pid) as f:
                limits = f.read()
            m = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
            self.assertIsNotNone(m, limits)
            self.assertGreaterEqual(int(m.group(1)), 2 * conns + 64, limits)
            self.assertNotIn("open files limited", inst.log_text())
            imap = imaplib.IMAP4("127.0.0.1", inst.port("imap"), timeout=20)
            self.assertEqual(imap.login("alice", "demo")[0], "OK")
            imap.logout()


class ImapdFetchmailTest(unittest.TestCase):
    """fetchmail over IMAP through a plugin (pipes) to imapd: fetches, deletes."""

    def test_fetchmail(self):
        harness.ensure_users()
        store = Store()
        self.addCleanup(store.cleanup)
        v = vmail()
        s = Session(store.maildir)
        imap = s.imap()
        for i in range(2):
            imap.append("INBOX", None, None, b"Subject: fm %d\r\n\r\nbody %d\r\n" % (i, i))
        imap.logout()
        s.close()
        out = os.path.join(store.home, "out")
        rc = os.path.join(store.home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write('poll localhost protocol imap plugin "env PBX_USER=alice PBX_MAILBOX=%s %s -c /dev/null" '
                    'user alice password x sslproto "" fetchall '
                    'mda "/bin/sh -c \'cat >> %s\'"\n'
                    % (store.maildir, harness.program("imapd"), out))
        os.chown(rc, v.pw_uid, v.pw_gid)
        os.chmod(rc, 0o600)
        p = subprocess.run(["setpriv", "--reuid=%d" % v.pw_uid, "--regid=%d" % v.pw_gid,
                            "--clear-groups", "env", "HOME=" + store.home, "fetchmail", "-f",
                            rc], capture_output=True, timeout=60, cwd="/")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(out, "rb") as f:
            text = f.read()
        self.assertIn(b"Subject: fm 0", text)
        self.assertIn(b"body 1", text)
        # fetched mail is deleted on the server (STORE \Deleted + EXPUNGE).
        self.assertEqual(os.listdir(os.path.join(store.maildir, "cur")), [])


@unittest.skipUnless(harness.program("imapd") and shutil.which("mutt") and
                     shutil.which("setpriv"), "imapd, mutt or setpriv missing")
class ImapdMuttTest(unittest.TestCase):
    """mutt, on a pseudo-terminal, lists a folder through a Tunnel to imapd."""

    def test_mutt_lists_inbox(self):
        import pty
        harness.ensure_users()
        store = Store()
        self.addCleanup(store.cleanup)
        v = vmail()
        s = Session(store.maildir)
        imap = s.imap()
        imap.append("INBOX", None, None, b"From: carol@example.test\r\n"
                    b"Subject: seen by mutt 4711\r\n\r\nhello\r\n")
        imap.logout()
        s.close()
        rc = os.path.join(store.dir, "muttrc")
        with open(rc, "w") as f:
            f.write('set tunnel="env PBX_USER=alice PBX_MAILBOX=%s %s -c /dev/null"\n'
                    'set folder="imap://alice@localhost/"\nset spoolfile="+INBOX"\n'
                    'set header_cache=""\nset message_cachedir=""\nset ssl_starttls=no\n'
                    'set imap_check_subscribed=no\nset mail_check=60\n'
                    % (store.maildir, harness.program("imapd")))
        os.chmod(rc, 0o644)
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update({"TERM": "xterm", "HOME": store.home, "LINES": "24",
                               "COLUMNS": "100"})
            os.execvp("setpriv", ["setpriv", "--reuid=%d" % v.pw_uid, "--regid=%d" % v.pw_gid,
                                  "--clear-groups", "mutt", "-n", "-F", rc, "-f",
                                  "imap://alice@localhost/INBOX"])
        out = b""
        deadline = time.monotonic() + 30
        try:
            while b"seen by mutt 4711" not in out and time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 1)
                if r:
                    try:
                        out += os.read(fd, 65536)
                    except OSError:
                        break
            self.assertIn(b"seen by mutt 4711", out)
            os.write(fd, b"q")
            time.sleep(0.5)
        finally:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            os.close(fd)


if __name__ == "__main__":
    unittest.main()
