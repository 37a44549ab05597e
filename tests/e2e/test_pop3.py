"""POP3 end to end (issue 7): pop3-login and pop3d behind a real master, with
mail delivered by SMTP through smtpd, the queue-manager and local-delivery.
Python's poplib (STLS on the 110-style listener, implicit TLS on the
995-style one) and fetchmail into a local mbox file; Maildir and mbox users;
DELE only at QUIT; the privileges of the login process and the session;
kill -9 of a session in the middle of RETR; POP-before-SMTP."""

import os
import poplib
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Instance

D = harness.DOMAIN
NEEDED = ("pop3-login", "pop3d", "authd", "smtpd", "queue-manager", "local-delivery")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def crlf(data):
    """The CRLF form of a stored message, as pop3d(8) defines it."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def put_messages(inst, user, contents, tag):
    """Replaces user's Maildir with `contents`, in this order, as
    pbx-vmail's files in new/."""
    vmail = pwd.getpwnam("pbx-vmail")
    new_dir = os.path.join(inst.mail_dir, user, "Maildir", "new")
    for p in inst.maildir_messages(user):
        os.unlink(p)
    for i, data in enumerate(contents):
        path = os.path.join(new_dir, "%d.M%dP1Q%d.%s" % (1700000000 + i, i, i, tag))
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, vmail.pw_uid, vmail.pw_gid)


def raw_login(tc, inst, mode, user="alice", password="demo"):
    """A raw POP3 connection logged in as user, over plaintext (mode
    "plain") or implicit TLS: (socket, its reading file)."""
    port = inst.port("pop3" if mode == "plain" else "pop3s")
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if mode != "plain":
        s = tls_context().wrap_socket(s)
    f = s.makefile("rb")
    tc.assertTrue(f.readline().startswith(b"+OK"))
    s.sendall(b"USER %s\r\nPASS %s\r\n" % (user.encode(), password.encode()))
    tc.assertTrue(f.readline().startswith(b"+OK"))
    tc.assertEqual(f.readline(), b"+OK Logged in.\r\n")
    return s, f


def check_burst(tc, inst, mode, answered_ahead):
    """Reply-ahead (pop3d(8), the proxy protocol): pop3-login answers the
    RETR pop3d predicted (n+1 after RETR n) itself. A raw client, over
    plaintext or implicit TLS: RETR 1, RETR 2 one at a time, then one burst
    mixing predicted and unpredicted lines (DELE n+1 then RETR n+1, a
    lower-case variant, RSET, a message over the 16 KiB offer limit); every
    answer must come exactly and in order. The lines answered by the login
    are counted in its log: RETR 2 always (sent alone after RETR 1's
    answer); in the burst, which reaches pop3d in one or more reads, RETR 4,
    RETR 5 after RSET and RETR 6 may be too, depending on where pop3d's
    reads end (never RETR 3: too big to offer). answered_ahead: the least
    count; None: reply-ahead is off and the log line has no count."""
    contents = [b"Subject: one\n\nfirst\n",
                b"Subject: two\n\n.dot line\n..two dots\nno end",
                b"Subject: three\n\n" + b"".join(b"line %05d of a big one\n" % i
                                                 for i in range(1000)),
                b"Subject: four\r\n\r\nfour\r\n",
                b"Subject: five\n\n.\n",
                b"Subject: six\n\nsix\n"]
    tc.assertGreater(len(contents[2]), 16384)

    def answer(i):
        want = crlf(contents[i - 1])
        return b"+OK %d octets\r\n" % len(want) + re.sub(rb"(?m)^\.", b"..", want) + b".\r\n"

    total = sum(len(crlf(c)) for c in contents)
    burst = (b"RETR 3\r\nRETR 4\r\nDELE 5\r\nRETR 5\r\nretr 5\r\nRSET\r\n"
             b"RETR 5\r\nRETR 6\r\nNOOP\r\nSTAT\r\nQUIT\r\n")
    want = (answer(3) + answer(4) + b"+OK Message 5 deleted (at QUIT).\r\n" +
            b"-ERR Message 5 is deleted.\r\n" * 2 + b"+OK 6 messages, none deleted.\r\n" +
            answer(5) + answer(6) + b"+OK\r\n" + b"+OK 6 %d\r\n" % total +
            b"+OK Logging out.\r\n")
    put_messages(inst, "alice", contents, "burst")
    mark = len(inst.log_text())
    s, f = raw_login(tc, inst, mode)
    with s:
        for i in (1, 2):
            s.sendall(b"RETR %d\r\n" % i)
            tc.assertEqual(f.read(len(answer(i))), answer(i), "RETR %d" % i)
        s.sendall(burst)
        tc.assertEqual(f.read(len(want)), want)
        tc.assertEqual(f.read(), b"")  # closed after QUIT, nothing more
    m = inst.wait_for_log(r"pop3-login\[\d+\]: disconnected: user=<alice>.*", start=mark)
    if answered_ahead is None:
        tc.assertNotIn("answered ahead", m.group(0))
    else:
        n = re.search(r"answered ahead: (\d+)", m.group(0))
        tc.assertIsNotNone(n, m.group(0))
        tc.assertGreaterEqual(int(n.group(1)), answered_ahead)
        tc.assertLessEqual(int(n.group(1)), 4)
    # Nothing was deleted (DELE 5 was undone by RSET).
    tc.assertEqual(len(inst.maildir_messages("alice")), 6)


@unittest.skipUnless(all(harness.program(p) for p in NEEDED),
                     "pop3-login, pop3d or the delivery chain is not built")
class Pop3Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.inst = Instance(users={"alice": "demo", "bob": "demo", "carol": "demo"},
                            config={"remote_delivery_enable": "no"}, start=False)
        inst = cls.inst
        # carol keeps her mail in an mbox file.
        users_path = os.path.join(inst.dir, "users")
        text = read(users_path).decode()
        carol_home = os.path.join(inst.mail_dir, "carol")
        text = text.replace(carol_home + "/Maildir/", carol_home + "/mbox")
        with open(users_path, "w") as f:
            f.write(text)
        inst.start()
        cls.vmail = pwd.getpwnam("pbx-vmail")
        cls.login_uid = pwd.getpwnam("pbx-login").pw_uid

    @classmethod
    def tearDownClass(cls):
        cls.inst.stop()
        cls.inst.cleanup()

    def setUp(self):
        self.wait_no_session()  # the previous test's session has exited

    # ---- helpers -------------------------------------------------------------

    def smtp_send(self, rcpt, body, sender="sender@example.org"):
        for attempt in range(50):
            try:
                with smtplib.SMTP("127.0.0.1", self.inst.port("smtp"), timeout=30) as s:
                    s.ehlo("client.example.org")
                    s.sendmail(sender, [rcpt], body)
                return
            except smtplib.SMTPRecipientsRefused as e:
                # 451 while authd is still starting up: try again.
                if attempt == 49 or list(e.recipients.values())[0][0] != 451:
                    raise
                time.sleep(0.1)

    def deliver(self, user, body):
        """Sends `body` to user by SMTP and waits until it is stored."""
        before = set(self.inst.maildir_messages(user))
        self.smtp_send("%s@%s" % (user, D), body)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = set(self.inst.maildir_messages(user)) - before
            if new:
                return new.pop()
            time.sleep(0.05)
        self.fail("no delivery to %s\n%s" % (user, self.inst.log_text()[-3000:]))

    def clear(self, user):
        for p in self.inst.maildir_messages(user):
            os.unlink(p)

    def pop(self, tls="stls", user="alice", password="demo"):
        if tls == "implicit":
            p = poplib.POP3_SSL("127.0.0.1", self.inst.port("pop3s"), timeout=30,
                                context=tls_context())
        else:
            p = poplib.POP3("127.0.0.1", self.inst.port("pop3"), timeout=30)
            if tls == "stls":
                p.stls(context=tls_context())
        p.user(user)
        p.pass_(password)
        return p

    def processes(self, name):
        return [pid for pid, n in self.inst.descendants() if n == name]

    def wait_no_session(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.processes("pop3d") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.processes("pop3d"), [])

    # ---- tests ---------------------------------------------------------------

    def test_stls_byte_exact_retr(self):
        self.clear("alice")
        body = (b"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: exact\r\n\r\n"
                b"line one\r\n.starts with a dot\r\n..two dots\r\n\xc3\xa9 eight bit\r\n"
                b"trailing spaces   \r\nlast line\r\n")
        stored = self.deliver("alice", body)
        p = self.pop("stls")
        try:
            count, octets = p.stat()
            self.assertEqual(count, 1)
            want = crlf(read(stored))
            self.assertEqual(octets, len(want))
            resp, lines, n = p.retr(1)
            self.assertTrue(resp.startswith(b"+OK"))
            got = b"\r\n".join(lines) + b"\r\n"
            self.assertEqual(got, want)
            self.assertEqual(n, len(want))
            self.assertIn(body, got)  # what smtplib sent, after the added headers
            resp, listing, _ = p.list()
            self.assertEqual(listing, [b"1 %d" % len(want)])
            resp, top, _ = p.top(1, 1)
            self.assertIn(b"Subject: exact", top)
            self.assertEqual(top[-1], b"line one")
            uidl = p.uidl(1).split()[2]
            self.assertEqual(uidl.decode(), os.path.basename(stored).split(":")[0])
        finally:
            p.quit()

    def test_plaintext_wire_bytes_of_large_messages(self):
        # Around libevent's 4 KiB per read (the proxy then reads the rest at
        # once) and beyond the proxy's 256 KiB high water (the rest queued,
        # on_drained goes on): the exact bytes on the wire, dot-stuffing and
        # the terminating line included, for LF files with many lines
        # starting with a dot and a last line without its end.
        contents = []
        for size in (4095, 4096, 4097, 8193, 300000):
            data = bytearray()
            n = 0
            while len(data) < size:
                data += (b".dot line %d\n" if n % 7 == 0 else b"line %d of the message\n") % n
                n += 1
            contents.append(bytes(data[:size - 1]) + b"x")  # no line end at the end
        put_messages(self.inst, "alice", contents, "wire")
        with socket.create_connection(("127.0.0.1", self.inst.port("pop3")), timeout=30) as s:
            f = s.makefile("rb")

            def cmd(line):
                s.sendall(line + b"\r\n")
                reply = f.readline()
                self.assertTrue(reply.startswith(b"+OK"), (line, reply))
                return reply

            f.readline()  # greeting
            cmd(b"USER alice")
            cmd(b"PASS demo")
            for i, data in enumerate(contents):
                want = crlf(data)
                reply = cmd(b"RETR %d" % (i + 1))
                self.assertEqual(reply, b"+OK %d octets\r\n" % len(want))
                stuffed = re.sub(rb"(?m)^\.", b"..", want) + b".\r\n"
                got = f.read(len(stuffed))
                self.assertEqual(got, stuffed, "message %d" % (i + 1))
            # All five pipelined: the answers follow each other exactly.
            s.sendall(b"".join(b"RETR %d\r\n" % (i + 1) for i in range(len(contents))))
            for i, data in enumerate(contents):
                want = crlf(data)
                self.assertEqual(f.readline(), b"+OK %d octets\r\n" % len(want))
                stuffed = re.sub(rb"(?m)^\.", b"..", want) + b".\r\n"
                self.assertEqual(f.read(len(stuffed)), stuffed, "pipelined %d" % (i + 1))
            cmd(b"QUIT")

    def test_pipelined_burst_reply_ahead(self):
        for mode in ("plain", "tls"):
            with self.subTest(mode=mode):
                self.wait_no_session()
                check_burst(self, self.inst, mode, answered_ahead=1)

    def test_long_fetch_chains_of_offers(self):
        """A fetch of 30 messages one RETR at a time, as mail clients do:
        pop3d offers chains of answers (pop3d(8), the proxy protocol),
        pop3-login answers nearly every RETR itself and holds the lines it
        answered back, passing them on in batches or after a second (the
        pause after RETR 10). Every answer byte for byte; then DELE and QUIT
        act in order after the lines held back."""
        contents = [b"Subject: %d\n\n%s\n.%d\n" % (i, b"x" * (100 * i), i)
                    for i in range(1, 31)]
        mark = len(self.inst.log_text())
        for mode in ("plain", "tls"):
            with self.subTest(mode=mode):
                self.wait_no_session()
                put_messages(self.inst, "alice", contents, "long")
                s, f = raw_login(self, self.inst, mode)
                with s:
                    for i, data in enumerate(contents, 1):
                        want = crlf(data)
                        s.sendall(b"RETR %d\r\n" % i)
                        self.assertEqual(f.readline(), b"+OK %d octets\r\n" % len(want))
                        stuffed = re.sub(rb"(?m)^\.", b"..", want) + b".\r\n"
                        self.assertEqual(f.read(len(stuffed)), stuffed, "RETR %d" % i)
                        if i == 10:
                            time.sleep(1.5)
                    last = 30 if mode == "tls" else 1
                    s.sendall(b"DELE %d\r\n" % last)
                    self.assertEqual(f.readline(),
                                     b"+OK Message %d deleted (at QUIT).\r\n" % last)
                    s.sendall(b"QUIT\r\n")
                    self.assertEqual(f.readline(), b"+OK Logging out, 1 messages deleted.\r\n")
                m = self.inst.wait_for_log(
                    r"pop3-login\[\d+\]: disconnected: user=<alice>.*answered ahead: (\d+)",
                    start=mark)
                mark = m.end()
                # RETR 1 goes to pop3d; later ones wait for a chain only
                # when one runs out (topped up when 4 or fewer are left).
                self.assertGreaterEqual(int(m.group(1)), 25, m.group(0))
                self.assertEqual(len(self.inst.maildir_messages("alice")), 29)

    def test_implicit_tls(self):
        self.clear("alice")
        self.deliver("alice", b"Subject: tls\r\n\r\nover 995\r\n")
        p = self.pop("implicit")
        try:
            self.assertEqual(p.stat()[0], 1)
            caps = p.capa()
            self.assertIn("UIDL", caps)
            self.assertNotIn("STLS", caps)
            self.assertIn(b"over 995", b"\n".join(p.retr(1)[1]))
        finally:
            p.quit()

    def test_dele_applies_at_quit_only(self):
        self.clear("alice")
        self.deliver("alice", b"Subject: one\r\n\r\n1\r\n")
        self.deliver("alice", b"Subject: two\r\n\r\n2\r\n")
        # DELE, then the connection drops: nothing is deleted.
        p = self.pop("stls")
        p.dele(1)
        p.dele(2)
        self.assertEqual(p.stat()[0], 0)
        p.close()  # the connection drops, no QUIT
        self.wait_no_session()
        self.assertEqual(len(self.inst.maildir_messages("alice")), 2)
        # RSET undoes; DELE + QUIT deletes.
        p = self.pop("stls")
        p.dele(1)
        p.rset()
        p.dele(2)
        resp = p.quit()
        self.assertTrue(resp.startswith(b"+OK"))
        self.wait_no_session()
        left = self.inst.maildir_messages("alice")
        self.assertEqual(len(left), 1)
        self.assertIn(b"Subject: one", read(left[0]))

    def test_uidl_stable_across_sessions_and_moves(self):
        self.clear("alice")
        stored = self.deliver("alice", b"Subject: move\r\n\r\nx\r\n")
        p = self.pop("stls")
        first = p.uidl()[1]
        p.quit()
        self.wait_no_session()
        # A mail reader moves it to cur/ and marks it seen.
        moved = stored.replace("/new/", "/cur/") + ":2,S"
        os.rename(stored, moved)
        p = self.pop("implicit")
        self.assertEqual(p.uidl()[1], first)
        self.assertIn(b"Subject: move", b"\n".join(p.retr(1)[1]))
        p.quit()

    def test_second_session_is_refused(self):
        p = self.pop("stls")
        try:
            with self.assertRaises(poplib.error_proto) as e:
                self.pop("implicit")
            self.assertIn(b"[IN-USE]", e.exception.args[0])
        finally:
            p.quit()

    def test_session_and_login_privileges(self):
        p = self.pop("stls")
        try:
            sessions = self.processes("pop3d")
            self.assertEqual(len(sessions), 1)
            st = self.inst.proc_status(sessions[0])
            self.assertEqual(st["Uid"].split(), [str(self.vmail.pw_uid)] * 4)
            self.assertEqual(st["Gid"].split()[0], str(self.vmail.pw_gid))
            self.assertEqual(st["CapEff"], "0000000000000000")
            self.assertEqual(st["CapPrm"], "0000000000000000")
            self.assertEqual(st["NoNewPrivs"], "1")
            # Exactly the environment of common/session_interface.hpp.
            with open("/proc/%d/environ" % sessions[0], "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if e)
            self.assertEqual(set(env), {b"PBX_CONFIG_FD", b"PBX_SERVICE", b"PBX_USER", b"HOME",
                                        b"PBX_MAILBOX", b"PBX_MAILBOX_FORMAT",
                                        b"PBX_CLIENT_ADDRESS", b"PBX_TLS", b"PBX_SESSION_ID",
                                        b"PBX_FOREGROUND", b"PBX_DEBUG", b"PBX_PROXY"})
            self.assertEqual(env[b"PBX_SERVICE"], b"pop3d")
            self.assertEqual(env[b"PBX_PROXY"], b"frames")  # pop3_reply_ahead
            self.assertEqual(env[b"PBX_USER"], b"alice")
            self.assertEqual(env[b"PBX_MAILBOX_FORMAT"], b"maildir")
            self.assertTrue(env[b"PBX_MAILBOX"].endswith(b"/alice/Maildir/"))
            self.assertTrue(env[b"PBX_TLS"].startswith(b"TLSv1."))
            self.assertEqual(os.readlink("/proc/%d/fd/0" % sessions[0]),
                             os.readlink("/proc/%d/fd/1" % sessions[0]))
            self.assertTrue(os.readlink("/proc/%d/fd/0" % sessions[0]).startswith("socket:"))
            login = self.inst.children()["pop3-login"]
            lst = self.inst.proc_status(login)
            self.assertEqual(lst["Uid"].split(), [str(self.login_uid)] * 4)
            self.assertEqual(lst["CapEff"], "0000000000000000")
            self.assertEqual(lst["NoNewPrivs"], "1")
            self.assertEqual(os.readlink("/proc/%d/root" % login), self.inst.runtime_dir)
            with open("/proc/%d/limits" % login) as f:
                self.assertRegex(f.read(), r"Max processes\s+0\s+0")
        finally:
            p.quit()
        self.inst.wait_for_log(r"pop3d: session of alice from 127\.0\.0\.1 .*ended after")

    def test_kill_session_mid_retr_loses_nothing(self):
        self.clear("alice")
        big = b"Subject: big\r\n\r\n" + b"".join(
            b"line %06d of a long message to keep RETR busy for a moment\r\n" % i
            for i in range(60000))
        stored = self.deliver("alice", big)
        small = self.deliver("alice", b"Subject: small\r\n\r\nx\r\n")
        before = read(stored)
        s = socket.create_connection(("127.0.0.1", self.inst.port("pop3s")), timeout=30)
        s = tls_context().wrap_socket(s)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"USER alice\r\nPASS demo\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        s.sendall(b"LIST\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        sizes = {}
        for line in iter(f.readline, b".\r\n"):
            n, size = line.split()
            sizes[int(size)] = int(n)
        self.assertEqual(len(sizes), 2)
        s.sendall(b"DELE %d\r\n" % sizes[min(sizes)])
        self.assertTrue(f.readline().startswith(b"+OK"))  # marked only
        s.sendall(b"RETR %d\r\n" % sizes[max(sizes)])
        self.assertTrue(f.readline().startswith(b"+OK %d octets" % len(crlf(before))))
        f.read(4096)  # the transfer is under way; the client reads slowly
        sessions = self.processes("pop3d")
        self.assertEqual(len(sessions), 1)
        os.kill(sessions[0], signal.SIGKILL)
        self.inst.wait_for_log(r"pop3d: session of alice .*signal 9")
        s.close()
        self.assertEqual(sorted(self.inst.maildir_messages("alice")), sorted([stored, small]))
        self.assertEqual(read(stored), before)
        p = self.pop("stls")
        self.assertEqual(b"\r\n".join(p.retr(sizes[max(sizes)])[1]) + b"\r\n", crlf(before))
        p.quit()

    def test_wrong_password_and_bad_input(self):
        s = socket.create_connection(("127.0.0.1", self.inst.port("pop3")), timeout=30)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        table = [
            (b"STAT\r\n", b"-ERR Log in first."),
            (b"XYZZY\r\n", b"-ERR Unknown command."),
            (b"PASS demo\r\n", b"-ERR No user name given"),
            (b"APOP alice 0123\r\n", b"-ERR APOP is not supported"),
            (b"USER " + b"a" * 300 + b"\r\n", b"-ERR Command line too long"),
            (b"AUTH CRAM-MD5\r\n", b"-ERR Unsupported authentication mechanism."),
            (b"AUTH PLAIN !!!!\r\n", b"-ERR [AUTH] Malformed"),
            (b"USER alice\r\n", b"+OK"),
        ]
        for line, want in table:
            s.sendall(line)
            got = f.readline()
            self.assertTrue(got.startswith(want), (line[:20], got))
        t0 = time.monotonic()
        s.sendall(b"PASS wrong\r\n")
        self.assertTrue(f.readline().startswith(b"-ERR [AUTH] Authentication failed."))
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)  # authd's failure delay
        s.sendall(b"QUIT\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertEqual(f.read(), b"")
        s.close()

    def test_stls_injection_is_discarded(self):
        s = socket.create_connection(("127.0.0.1", self.inst.port("pop3")), timeout=30)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"STLS\r\nUSER alice\r\nPASS demo\r\n")
        self.assertTrue(f.readline().startswith(b"+OK Begin TLS"))
        t = tls_context().wrap_socket(s)
        tf = t.makefile("rb")
        t.sendall(b"STAT\r\n")
        self.assertTrue(tf.readline().startswith(b"-ERR Log in first."))
        t.sendall(b"QUIT\r\n")
        tf.readline()
        t.close()

    def test_mbox_user(self):
        mbox = os.path.join(self.inst.mail_dir, "carol", "mbox")
        for i in range(3):
            size = os.path.getsize(mbox) if os.path.exists(mbox) else 0
            self.smtp_send("carol@" + D, b"Subject: mbox %d\r\n\r\nFrom the start\r\nbody %d\r\n"
                           % (i, i))
            deadline = time.monotonic() + 30
            while (not os.path.exists(mbox) or os.path.getsize(mbox) == size) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
        p = self.pop("stls", user="carol")
        count, _ = p.stat()
        self.assertGreaterEqual(count, 3)
        uidls = [l.split()[1] for l in p.uidl()[1]]
        self.assertEqual(len(set(uidls)), count)
        msg = b"\r\n".join(p.retr(count)[1])
        self.assertIn(b"Subject: mbox 2", msg)
        self.assertIn(b"\r\nFrom the start\r\n", msg)  # mboxrd quoting undone
        self.assertEqual(len(msg) + 2, int(p.list(count).split()[2]))
        p.dele(1)
        p.quit()
        self.wait_no_session()
        self.assertFalse(os.path.exists(mbox + ".lock"))
        p = self.pop("implicit", user="carol")
        self.assertEqual(p.stat()[0], count - 1)
        self.assertEqual([l.split()[1] for l in p.uidl()[1]], uidls[1:])
        p.quit()

    def test_fetchmail(self):
        if not shutil.which("fetchmail"):
            self.skipTest("fetchmail is not installed")
        self.clear("bob")
        self.deliver("bob", b"Subject: for fetchmail 1\r\n\r\nfirst\r\n")
        self.deliver("bob", b"Subject: for fetchmail 2\r\n\r\nsecond\r\n")
        work = tempfile.mkdtemp(prefix="pbx-fetchmail-")
        try:
            out = os.path.join(work, "out.mbox")
            for port, ssl_kw in ((self.inst.port("pop3"), "sslproto 'TLS1.2+'"),
                                 (self.inst.port("pop3s"), "ssl")):
                rc = os.path.join(work, "fetchmailrc")
                with open(rc, "w") as f:
                    f.write("set no bouncemail\n"
                            "poll 127.0.0.1 protocol pop3 port %d timeout 30\n"
                            "  user 'bob' there with password 'demo' is root here\n"
                            "  %s no sslcertck fetchall nokeep\n"
                            "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (port, ssl_kw, out))
                os.chmod(rc, 0o600)
                r = subprocess.run(["fetchmail", "-f", rc, "-i", os.path.join(work, "ids"),
                                    "--nosyslog", "-v"],
                                   env={"HOME": work, "PATH": os.environ["PATH"]},
                                   capture_output=True, timeout=60)
                self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)  # 1: no mail
                self.wait_no_session()
                if port == self.inst.port("pop3"):
                    self.assertIn(b"STLS", r.stdout + r.stderr)
                    self.deliver("bob", b"Subject: for fetchmail 3\r\n\r\nthird\r\n")
            text = read(out)
            for n in (1, 2, 3):
                self.assertIn(b"Subject: for fetchmail %d" % n, text)
            self.wait_no_session()
            self.assertEqual(self.inst.maildir_messages("bob"), [])
        finally:
            shutil.rmtree(work)


@unittest.skipUnless(all(harness.program(p) for p in NEEDED),
                     "pop3-login, pop3d or the delivery chain is not built")
class PopBeforeSmtpTest(unittest.TestCase):
    def relay(self, inst):
        try:
            with smtplib.SMTP("127.0.0.1", inst.port("smtp"), timeout=30) as s:
                s.ehlo("client.example.org")
                s.sendmail("alice@" + D, ["someone@elsewhere.example.net"],
                           b"Subject: relay\r\n\r\nx\r\n")
            return True
        except smtplib.SMTPRecipientsRefused:
            return False

    def login(self, inst):
        p = poplib.POP3("127.0.0.1", inst.port("pop3"), timeout=30)
        p.stls(context=tls_context())
        p.user("alice")
        p.pass_("demo")
        p.quit()

    def test_relays_only_when_enabled(self):
        with Instance(config={"remote_delivery_enable": "no", "pop_before_smtp": "5"}) as inst:
            self.assertFalse(self.relay(inst))
            self.login(inst)
            self.assertTrue(self.relay(inst))
            inst.wait_for_log(r"pop-before-smtp: unknown\[127\.0\.0\.1\] may relay")
        with Instance(config={"remote_delivery_enable": "no"}) as inst:
            self.login(inst)
            self.assertFalse(self.relay(inst))
            self.assertNotIn("pop-before-smtp", inst.log_text())


@unittest.skipUnless(all(harness.program(p) for p in NEEDED),
                     "pop3-login, pop3d or the delivery chain is not built")
class ReplyAheadOffTest(unittest.TestCase):
    def test_raw_proxy_gives_the_same_bytes(self):
        # pop3_reply_ahead = no: pop3d writes raw bytes, pop3-login only
        # proxies; the client gets the very same answers.
        with Instance(config={"remote_delivery_enable": "no",
                              "pop3_reply_ahead": "no"}) as inst:
            check_burst(self, inst, "plain", answered_ahead=None)


# A misbehaving pop3d (it runs as the mail user, so pop3-login must not
# trust it): instead of the proxy protocol's hello it writes garbage, then
# waits for the login process to hang up.
FAKE_POP3D = """#!/usr/bin/python3
import os
os.write(0, b"hello, world\\r\\n")
while os.read(0, 4096):
    pass
"""


@unittest.skipUnless(all(harness.program(p) for p in NEEDED),
                     "pop3-login, pop3d or the delivery chain is not built")
class MisbehavingSessionTest(unittest.TestCase):
    def test_bad_frames_close_only_that_connection(self):
        inst = Instance(users={"alice": "demo"}, config={"remote_delivery_enable": "no"},
                        start=False)
        try:
            fake = os.path.join(inst.libexec_dir, "pop3d")
            os.unlink(fake)
            with open(fake, "w") as f:
                f.write(FAKE_POP3D)
            os.chmod(fake, 0o755)
            inst.start()
            mark = len(inst.log_text())
            for attempt in (1, 2):
                s = socket.create_connection(("127.0.0.1", inst.port("pop3")), timeout=30)
                with s:
                    f = s.makefile("rb")
                    self.assertTrue(f.readline().startswith(b"+OK"))
                    s.sendall(b"USER alice\r\nPASS demo\r\n")
                    self.assertTrue(f.readline().startswith(b"+OK"))
                    # Nothing of the session's garbage reaches the client:
                    # the connection just ends.
                    self.assertEqual(f.read(), b"", "attempt %d" % attempt)
            pattern = (r"pop3-login\[(\d+)\]: warning: session of alice \([^)]*\): bad frame from the "
                       r"session: [^\n]*; closing the connection")
            inst.wait_for_log(pattern + r"(?s:.*)" + pattern, start=mark)
            pids = re.findall(pattern, inst.log_text()[mark:])
            self.assertEqual(len(pids), 2)
            # The same pop3-login process refused both and still serves.
            self.assertEqual(pids[0], pids[1])
            with socket.create_connection(("127.0.0.1", inst.port("pop3")), timeout=30) as s:
                self.assertTrue(s.makefile("rb").readline().startswith(b"+OK"))
            self.assertIn(int(pids[0]),
                          [pid for pid, n in inst.descendants() if n == "pop3-login"])
        finally:
            inst.stop()
            inst.cleanup()


if __name__ == "__main__":
    unittest.main()
