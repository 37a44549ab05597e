"""smtpd end to end: the real master with the real smtpd, authd and
queue-manager from the build directory, driven with smtplib and raw sockets.

Covers: a message to a local user queued (and on disk with a Received:
line), the EHLO keywords, STARTTLS with a real handshake and a message after
it, STARTTLS command injection, pipelining, relay refusal and relay tricks,
unknown users, line and recipient and size limits, the bad-command limit,
SMTP smuggling, the greeting pause, BDAT, the per-IP connection limit, the
command timeout, the log lines, and the privileges of the running process.

Tests that need authd or the queue-manager are skipped while those programs
are not built.
"""

import os
import re
import smtplib
import socket
import ssl
import time
import unittest

import harness
from harness import Instance

DOMAIN = harness.DOMAIN
LOCAL = "alice@" + DOMAIN
FOREIGN = "someone@elsewhere.example"
NO_CAPS = "0000000000000000"


def need(*programs):
    missing = [p for p in programs if not harness.program(p)]
    if missing:
        raise unittest.SkipTest("not built yet: " + ", ".join(missing))


class Client:
    """A raw SMTP client: bytes in, replies out, nothing hidden."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """One whole (possibly multi-line) reply as text; '' at EOF."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace") + "\n"
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes the connection (after any last bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True  # closed, with a reset rather than a FIN
        except socket.timeout:
            return False

    def starttls(self):
        ctx = ssl.create_default_context(cafile=harness.tls_files()[0])
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        return self.sock

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def code(reply):
    return int(reply[:3]) if reply[:3].isdigit() else 0


QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+)\r?$", re.M)


class SmtpdBase(unittest.TestCase):
    config = {}

    @classmethod
    def setUpClass(cls):
        need("pillarbox-master", "smtpd")
        cls.inst = Instance(config=dict(cls.config))
        cls.port = cls.inst.port("smtp")
        # The harness waits for the listeners; authd and the queue-manager
        # may still be opening their sockets (smtpd would answer 451 then).
        sockets = {"authd": "auth/auth.sock", "queue-manager": "queue/enqueue.sock"}
        deadline = time.monotonic() + 15
        for prog, rel in sockets.items():
            path = os.path.join(cls.inst.runtime_dir, rel)
            while harness.program(prog) and not os.path.exists(path):
                if time.monotonic() > deadline:
                    cls.inst.kill()
                    cls.inst.cleanup()
                    raise AssertionError("%s did not create %s" % (prog, path))
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.inst.stop()
        cls.inst.cleanup()

    def client(self, ehlo="client.example"):
        c = Client(self.port)
        self.addCleanup(c.close)
        greeting = c.reply()
        self.assertTrue(greeting.startswith("220 mail.%s ESMTP" % DOMAIN), greeting)
        if ehlo:
            self.assertEqual(code(c.cmd("EHLO " + ehlo)), 250)
        return c

    def queue_file(self, qid):
        return os.path.join(self.inst.spool_dir, "queue", qid + ".msg")

    def assert_queued(self, reply, must_contain=b""):
        m = QUEUED.search(reply)
        self.assertIsNotNone(m, reply)
        qid = m.group(1)
        path = self.queue_file(qid)
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)  # the queue-manager may already have delivered it
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(b"Received: "), data[:200])
            self.assertIn(must_contain, data)
        return qid


class SmtpdDefaults(SmtpdBase):
    """The default policy: loopback is NOT trusted."""

    def test_process_privileges(self):
        pid = self.inst.wait_for_child("smtpd")
        st = self.inst.proc_status(pid)
        import pwd
        uid = pwd.getpwnam("pbx-smtpd").pw_uid
        self.assertEqual(st["Uid"].split(), [str(uid)] * 4)
        self.assertEqual(st["CapEff"], NO_CAPS)
        self.assertEqual(st["CapPrm"], NO_CAPS)
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(os.readlink("/proc/%d/root" % pid), self.inst.runtime_dir)

    def test_ehlo_keywords(self):
        c = self.client(ehlo=None)
        reply = c.cmd("EHLO client.example")
        self.assertEqual(code(reply), 250, reply)
        keywords = {line[4:].split()[0] for line in reply.splitlines() if len(line) > 4}
        for kw in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS",
                   "SMTPUTF8", "DSN", "CHUNKING"):
            self.assertIn(kw, keywords, reply)
        self.assertNotIn("AUTH", keywords)  # never on port 25
        self.assertIn("221", c.cmd("QUIT"))
        self.inst.wait_for_log(r"smtpd\[\d+\]: disconnect from unknown\[127\.0\.0\.1\] "
                               r"ehlo=1 quit=1 commands=2")

    def test_message_to_local_user_is_queued(self):
        need("authd", "queue-manager")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as s:
            s.ehlo("client.example")
            self.assertEqual(s.mail("sender@elsewhere.example")[0], 250)
            self.assertEqual(s.rcpt(LOCAL)[0], 250)
            # smtplib dot-stuffs the leading dot; smtpd must undo it.
            body = b"Subject: hello\r\n\r\nfirst line\r\n.leading dot\r\nlast line\r\n"
            c, msg = s.data(body)
            self.assertEqual(c, 250, msg)
            qid = self.assert_queued("250 " + msg.decode() + "\n",
                                     b"first line\r\n.leading dot\r\nlast line\r\n")
        self.inst.wait_for_log(r"smtpd\[\d+\]: %s: client=unknown\[127\.0\.0\.1\]" % qid)
        self.inst.wait_for_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 "
                               r"rcpt=1 data=1 quit=1 commands=5")

    def test_unknown_local_user(self):
        need("authd")
        c = self.client()
        self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)
        reply = c.cmd("RCPT TO:<nosuchuser@%s>" % DOMAIN)
        self.assertTrue(reply.startswith("550 5.1.1"), reply)
        self.inst.wait_for_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 550 5\.1\.1 "
                               r".*to=<nosuchuser@%s>" % re.escape(DOMAIN))

    def test_relay_refused(self):
        c = self.client()
        self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)
        reply = c.cmd("RCPT TO:<%s>" % FOREIGN)
        self.assertTrue(reply.startswith("554 5.7.1"), reply)
        self.assertIn("Relay access denied", reply)
        self.inst.wait_for_log(
            r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 <%s>: Relay access "
            r"denied; from=<a@elsewhere\.example> to=<%s> proto=ESMTP helo=<client\.example>"
            % (re.escape(FOREIGN), re.escape(FOREIGN)))

    def test_relay_tricks_refused(self):
        c = self.client()
        self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)
        tricks = [
            "<user%%elsewhere.example@%s>" % DOMAIN,       # percent hack
            "<elsewhere.example!user@%s>" % DOMAIN,        # bang path
            "<@%s:user@elsewhere.example>" % DOMAIN,       # source route
            "<@%s,@x.example:user@elsewhere.example>" % DOMAIN,
            "<\"user@elsewhere.example\"@%s>" % DOMAIN,    # quoted @
            "<user@elsewhere.example.>",
            "<user@%s.elsewhere.example>" % DOMAIN,
            "<user@[127.0.0.1]>",
        ]
        for t in tricks:
            reply = c.cmd("RCPT TO:" + t)
            self.assertNotEqual(code(reply) // 100, 2, "%s accepted: %s" % (t, reply))
            self.assertTrue(reply.startswith("554 5.7.1") or reply.startswith("501"),
                            "%s: %s" % (t, reply))
        self.assertTrue(c.cmd("DATA").startswith("554"))

    def test_long_command_line(self):
        c = self.client()
        reply = c.cmd("NOOP " + "x" * 600)
        self.assertTrue(reply.startswith("500 5.5.2"), reply)
        self.assertEqual(code(c.cmd("NOOP")), 250)  # the session continues
        self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)

    def test_starttls_then_message(self):
        c = self.client()
        self.assertTrue(c.cmd("STARTTLS").startswith("220"))
        tls = c.starttls()
        self.assertIn(tls.version(), ("TLSv1.2", "TLSv1.3"))
        reply = c.cmd("EHLO client.example")
        self.assertEqual(code(reply), 250)
        self.assertNotIn("STARTTLS", reply)
        self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)
        self.inst.wait_for_log(r"Anonymous TLS connection established from "
                               r"unknown\[127\.0\.0\.1\]: TLSv1\.[23] with cipher \S+")
        if harness.program("authd") and harness.program("queue-manager"):
            self.assertEqual(code(c.cmd("RCPT TO:<%s>" % LOCAL)), 250)
            self.assertEqual(code(c.cmd("DATA")), 354)
            c.send("Subject: over tls\r\n\r\nsecret\r\n.\r\n")
            reply = c.reply()
            qid = self.assert_queued(reply, b"secret\r\n")
            with open(self.queue_file(qid), "rb") as f:
                head = f.read(2000)
            if os.path.exists(self.queue_file(qid)):
                self.assertRegex(head, rb"ESMTPS")
        self.assertEqual(code(c.cmd("QUIT")), 221)

    def test_starttls_with_smtplib(self):
        ctx = ssl.create_default_context(cafile=harness.tls_files()[0])
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as s:
            s.ehlo("client.example")
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=ctx)
            s.ehlo("client.example")
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.noop()[0], 250)

    def test_starttls_injection(self):
        c = self.client()
        # The classic attack (CVE-2011-0411): commands pipelined after STARTTLS
        # in the same packet must not run inside the TLS session.
        c.send("STARTTLS\r\nMAIL FROM:<evil@elsewhere.example>\r\nQUIT\r\n")
        self.assertTrue(c.reply().startswith("220"))
        self.assertEqual(c.buf, b"")
        c.starttls()
        # Inside TLS the session is fresh: no MAIL was accepted, no QUIT ran.
        reply = c.cmd("RCPT TO:<%s>" % LOCAL)
        self.assertTrue(reply.startswith("503"), reply)
        self.assertEqual(code(c.cmd("NOOP")), 250)
        self.inst.wait_for_log(r"STARTTLS from unknown\[127\.0\.0\.1\]: \d+ bytes of plaintext "
                               r"pipelined after STARTTLS were discarded")

    def test_pipelining(self):
        need("authd", "queue-manager")
        c = self.client()
        c.send("MAIL FROM:<a@elsewhere.example>\r\nRCPT TO:<%s>\r\nRCPT TO:<bob@%s>\r\n"
               "DATA\r\n" % (LOCAL, DOMAIN))
        replies = [c.reply() for _ in range(4)]
        self.assertEqual([code(r) for r in replies], [250, 250, 250, 354], replies)
        c.send("Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        self.assert_queued(c.reply(), b"body\r\n")
        self.assertEqual(code(c.reply()), 221)
        self.assertTrue(c.closed())

    def test_smuggling_never_ends_data(self):
        need("authd", "queue-manager")
        c = self.client()
        smuggled = "MAIL FROM:<evil@elsewhere.example>\r\nRCPT TO:<bob@%s>\r\nDATA\r\n" % DOMAIN
        # Bare LF or CR around the dot: never the end of the message. The
        # engine may keep the text or refuse the whole message (bare LF is
        # not SMTP), but the smuggled commands must never run.
        for end in ("\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"):
            with self.subTest(end=end):
                self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)
                self.assertEqual(code(c.cmd("RCPT TO:<%s>" % LOCAL)), 250)
                self.assertEqual(code(c.cmd("DATA")), 354)
                c.send("Subject: smuggle\r\n\r\ntext" + end + smuggled + "inner\r\n.\r\n")
                reply = c.reply()
                if code(reply) == 250:
                    self.assert_queued(reply, b"evil@elsewhere.example")
                else:
                    self.assertTrue(reply.startswith("550 5.6.0"), reply)
                # Exactly one reply for the message: the next is NOOP's.
                self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok\r\n")
                time.sleep(0.1)
                c.sock.setblocking(False)
                try:
                    extra = c.sock.recv(4096)
                except BlockingIOError:
                    extra = b""
                finally:
                    c.sock.setblocking(True)
                    c.sock.settimeout(10)
                self.assertEqual(c.buf + extra, b"")

    def test_bdat(self):
        need("authd", "queue-manager")
        c = self.client()
        self.assertEqual(code(c.cmd("MAIL FROM:<a@elsewhere.example>")), 250)
        self.assertEqual(code(c.cmd("RCPT TO:<%s>" % LOCAL)), 250)
        first = b"Subject: chunks\r\n\r\n"
        c.send(b"BDAT %d\r\n" % len(first) + first)
        self.assertEqual(code(c.reply()), 250)
        last = b"chunked body\r\n.not a dot line\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(last) + last)
        self.assert_queued(c.reply(), b"chunked body\r\n.not a dot line\r\n")

    def test_bad_commands_then_421(self):
        c = self.client()
        limit = 20  # smtpd_max_bad_commands default
        last = ""
        for i in range(limit + 5):
            c.send("BOGUS%d\r\n" % i)
            last = c.reply()
            if last.startswith("421") or not last:
                break
            self.assertTrue(last.startswith("5"), last)
        if not last.startswith("421"):
            last = c.reply()
        self.assertTrue(last.startswith("421"), last)
        self.assertTrue(c.closed())


class SmtpdTrusted(SmtpdBase):
    """Loopback trusted: relaying allowed, tighter limits."""
    config = {
        "trusted_networks": "127.0.0.0/8, ::1/128",
        "smtpd_max_recipients": "3",
        "message_size_limit": "20k",
        "smtpd_max_bad_commands": "3",
    }

    def test_relay_allowed_for_trusted(self):
        c = self.client()
        self.assertEqual(code(c.cmd("MAIL FROM:<a@%s>" % DOMAIN)), 250)
        self.assertEqual(code(c.cmd("RCPT TO:<%s>" % FOREIGN)), 250)
        if harness.program("queue-manager"):
            self.assertEqual(code(c.cmd("DATA")), 354)
            c.send("Subject: relay\r\n\r\nrelayed\r\n.\r\n")
            self.assert_queued(c.reply(), b"relayed\r\n")

    def test_too_many_recipients(self):
        c = self.client()
        self.assertEqual(code(c.cmd("MAIL FROM:<a@%s>" % DOMAIN)), 250)
        for i in range(3):
            self.assertEqual(code(c.cmd("RCPT TO:<r%d@elsewhere.example>" % i)), 250)
        reply = c.cmd("RCPT TO:<r9@elsewhere.example>")
        self.assertTrue(reply.startswith("452 4.5.3"), reply)

    def test_size_over_limit(self):
        c = self.client()
        reply = c.cmd("MAIL FROM:<a@%s> SIZE=%d" % (DOMAIN, 50 * 1024))
        self.assertTrue(reply.startswith("552"), reply)
        self.assertEqual(code(c.cmd("MAIL FROM:<a@%s> SIZE=1000" % DOMAIN)), 250)
        self.assertEqual(code(c.cmd("RCPT TO:<%s>" % FOREIGN)), 250)
        self.assertEqual(code(c.cmd("DATA")), 354)
        line = "x" * 998 + "\r\n"
        c.send("Subject: big\r\n\r\n" + line * 40 + ".\r\n")
        reply = c.reply()
        self.assertTrue(reply.startswith("552"), reply)
        self.assertEqual(code(c.cmd("NOOP")), 250)

    def test_bad_command_limit(self):
        c = self.client()
        replies = [c.cmd("XYZZY") for _ in range(3)]
        self.assertTrue(all(r.startswith("5") for r in replies[:2]), replies)
        last = replies[-1]
        if not last.startswith("421"):
            last = c.reply()
        self.assertTrue(last.startswith("421"), replies + [last])
        self.assertTrue(c.closed())


class SmtpdGreetPause(SmtpdBase):
    config = {"smtpd_greet_pause": "2s"}

    def test_pregreet_refused(self):
        c = Client(self.port)
        self.addCleanup(c.close)
        c.send("EHLO too.early.example\r\n")
        reply = c.reply()
        self.assertTrue(reply.startswith("554 5.7.1"), reply)
        self.assertTrue(c.closed())
        self.inst.wait_for_log(r"PREGREET from unknown\[127\.0\.0\.1\]")

    def test_patient_client_greeted(self):
        start = time.monotonic()
        c = Client(self.port)
        self.addCleanup(c.close)
        reply = c.reply()
        self.assertTrue(reply.startswith("220"), reply)
        self.assertGreaterEqual(time.monotonic() - start, 1.8)
        self.assertEqual(code(c.cmd("EHLO client.example")), 250)


class SmtpdConnectionLimit(SmtpdBase):
    config = {"smtpd_max_connections_per_ip": "2", "smtpd_command_timeout": "3s"}

    def test_per_ip_limit(self):
        # The harness' readiness probe may still be counted for a moment.
        time.sleep(0.5)
        a = self.client(ehlo=None)
        b = self.client(ehlo=None)
        c = Client(self.port)
        self.addCleanup(c.close)
        reply = c.reply()
        self.assertTrue(reply.startswith("421 4.7.0"), reply)
        self.assertIn("too many connections", reply.lower())
        self.assertTrue(c.closed())
        a.cmd("QUIT")
        a.closed()
        time.sleep(0.3)
        d = self.client(ehlo=None)  # a place is free again
        self.assertEqual(code(d.cmd("NOOP")), 250)
        b.close()
        self.inst.wait_for_log(r"too many connections from unknown\[127\.0\.0\.1\]")

    def test_command_timeout(self):
        time.sleep(0.5)
        c = self.client(ehlo=None)
        start = time.monotonic()
        reply = c.reply()
        self.assertTrue(reply.startswith("421 4.4.2"), reply)
        self.assertGreaterEqual(time.monotonic() - start, 2.5)
        self.assertTrue(c.closed())
        self.inst.wait_for_log(r"timeout after CONNECT from unknown\[127\.0\.0\.1\]")


class SmtpdNoTls(SmtpdBase):
    config = {"tls_cert_file": "/nonexistent/cert.pem"}

    def test_starttls_not_offered(self):
        c = self.client(ehlo=None)
        reply = c.cmd("EHLO client.example")
        self.assertNotIn("STARTTLS", reply)
        self.assertFalse(c.cmd("STARTTLS").startswith("220"))
        self.inst.wait_for_log(r"STARTTLS not offered: .*/nonexistent/cert\.pem")


if __name__ == "__main__":
    unittest.main()
