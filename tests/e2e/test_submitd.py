"""submitd end to end: the real master with the real submitd, authd,
queue-manager and local-delivery, driven with smtplib, raw sockets and swaks.

Covers: 587 with STARTTLS and AUTH PLAIN and LOGIN (smtplib and swaks), 465
with implicit TLS, mail to a local user (in the Maildir, with the RFC 6409
fix-ups: Date: and Message-ID: added, no AUTH user in Received: unless
configured) and to a foreign domain (queued for remote delivery), no AUTH
(530 and relay refused), a wrong password (535 after authd's delay), forged
envelope senders and From: headers (553), aliases and the sender map, every
SASL error, AUTH hidden before TLS, and the per-user rate limits (450, 452).
"""

import base64
import json
import os
import re
import smtplib
import socket
import ssl
import subprocess
import time
import unittest

import harness
from harness import Instance

DOMAIN = harness.DOMAIN
ALICE = "alice@" + DOMAIN
BOB = "bob@" + DOMAIN
FOREIGN = "someone@elsewhere.example"


def need(*programs):
    missing = [p for p in programs if not harness.program(p)]
    if missing:
        raise unittest.SkipTest("not built yet: " + ", ".join(missing))


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def tls_context():
    return ssl.create_default_context(cafile=harness.tls_files()[0])


class Client:
    """A raw SMTP client (plain, STARTTLS or implicit TLS)."""

    def __init__(self, port, implicit_tls=False, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit_tls:
            self.sock = tls_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
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

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.startswith("220"), r
        self.sock = tls_context().wrap_socket(self.sock, server_hostname="localhost")

    def login(self, user="alice", password="demo"):
        r = self.cmd("EHLO client.example")
        assert r.startswith("250"), r
        r = self.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, password)))
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def last_code(reply):
    """'535 5.7.8' from the last line of a reply."""
    line = reply.strip().splitlines()[-1] if reply.strip() else ""
    m = re.match(r"(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})?", line)
    if not m:
        return line
    return m.group(1) + (" " + m.group(2) if m.group(2) else "")


def message(sender, to, subject="test", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n%s\r\nHello from the submission test.\r\n"
            % (sender, to, subject, extra))


class SubmitdBase(unittest.TestCase):
    config = {}
    users = None

    @classmethod
    def setUpClass(cls):
        need("pillarbox-master", "submitd", "authd", "queue-manager")
        config = {"remote_delivery_enable": "no"}
        config.update(cls.config)
        cls.inst = Instance(config=config, users=cls.users)
        cls.sub = cls.inst.port("submission")
        cls.subs = cls.inst.port("submissions")
        deadline = time.monotonic() + 15
        for rel in ("auth/auth.sock", "queue/enqueue.sock"):
            path = os.path.join(cls.inst.runtime_dir, rel)
            while not os.path.exists(path):
                if time.monotonic() > deadline:
                    cls.inst.kill()
                    cls.inst.cleanup()
                    raise AssertionError("%s did not appear" % path)
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        inst = cls.inst
        try:
            inst.stop()
        finally:
            inst.cleanup()

    def client(self, implicit_tls=False, starttls=True):
        c = Client(self.subs if implicit_tls else self.sub, implicit_tls)
        self.addCleanup(c.close)
        greeting = c.reply()
        self.assertTrue(greeting.startswith("220 "), greeting)
        if starttls and not implicit_tls:
            c.cmd("EHLO client.example")
            c.starttls()
        return c

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.sub, timeout=30)
        self.addCleanup(lambda: s.close())
        s.starttls(context=tls_context())
        return s

    def wait_delivered(self, user, before, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.inst.maildir_messages(user)
            new = [p for p in now if p not in before]
            if new:
                with open(new[0], "rb") as f:
                    return f.read().decode(errors="replace")
            time.sleep(0.1)
        self.fail("nothing delivered to %s within %ss:\n%s"
                  % (user, timeout, self.inst.log_text()[-4000:]))

    def swaks(self, *args, implicit=False):
        port = self.subs if implicit else self.sub
        cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--timeout", "60",
               "--h-Subject", "swaks test"]
        cmd += ["--tlsc"] if implicit else ["--tls"]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)


class SubmitdTest(SubmitdBase):
    def test_privileges(self):
        pid = self.inst.wait_for_child("submitd")
        st = self.inst.proc_status(pid)
        import pwd
        uid = pwd.getpwnam("pbx-submit").pw_uid
        self.assertEqual(st["Uid"].split(), [str(uid)] * 4)
        self.assertEqual(st["CapEff"], "0000000000000000")
        self.assertEqual(os.readlink("/proc/%d/root" % pid), self.inst.runtime_dir)

    def test_ehlo_before_and_after_tls(self):
        c = self.client(starttls=False)
        r = c.cmd("EHLO client.example")
        self.assertIn("STARTTLS", r)
        self.assertNotIn("AUTH", r)
        # A password before TLS is refused without being looked at.
        r = c.cmd("AUTH PLAIN " + b64("\0alice\0demo"))
        self.assertEqual(last_code(r), "538 5.7.11")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "530 5.7.0")
        c.starttls()
        r = c.cmd("EHLO client.example")
        self.assertIn("AUTH PLAIN LOGIN", r)
        self.assertNotIn("STARTTLS", r)

    def test_smtplib_plain_to_local_user(self):
        before = self.inst.maildir_messages("bob")
        s = self.smtp()
        s.login("alice", "demo")  # smtplib picks PLAIN
        refused = s.sendmail(ALICE, [BOB], message(ALICE, BOB, "plain via smtplib"))
        self.assertEqual(refused, {})
        s.quit()
        text = self.wait_delivered("bob", before)
        self.assertIn("Subject: plain via smtplib", text)
        # RFC 6409 §8: the missing Date: and Message-ID: were added, once.
        self.assertEqual(len(re.findall(r"^Date: ", text, re.M)), 1)
        self.assertRegex(text, r"(?m)^Message-ID: <[^@>]+@mail\.%s>\r?$" % re.escape(DOMAIN))
        # The Received: line says ESMTPSA but not who (privacy by default).
        self.assertRegex(text, r"with ESMTPSA id")
        self.assertNotIn("Authenticated sender", text)

    def test_smtplib_login_mechanism(self):
        before = self.inst.maildir_messages("bob")
        s = self.smtp()
        s.ehlo()
        s.esmtp_features["auth"] = "LOGIN"
        s.login("alice", "demo")
        msg = message(ALICE, BOB, "login via smtplib",
                      "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <keep@me>\r\n")
        s.sendmail(ALICE, [BOB], msg)
        s.quit()
        text = self.wait_delivered("bob", before)
        self.assertIn("Message-ID: <keep@me>", text)
        self.assertEqual(len(re.findall(r"^Message-ID: ", text, re.M | re.I)), 1)
        self.assertIn("Date: Mon, 1 Jan 2024 00:00:00 +0000", text)

    def test_implicit_tls_465(self):
        before = self.inst.maildir_messages("alice")
        s = smtplib.SMTP_SSL("127.0.0.1", self.subs, timeout=30, context=tls_context())
        self.addCleanup(lambda: s.close())
        code, caps = s.ehlo()
        self.assertEqual(code, 250)
        self.assertIn(b"AUTH PLAIN LOGIN", caps)
        self.assertNotIn(b"STARTTLS", caps)
        s.login("bob", "demo")
        s.sendmail(BOB, [ALICE], message(BOB, ALICE, "over 465"))
        s.quit()
        self.assertIn("Subject: over 465", self.wait_delivered("alice", before))

    def test_foreign_domain_is_queued_for_remote_delivery(self):
        s = self.smtp()
        s.login("alice", "demo")
        s.sendmail(ALICE, [FOREIGN], message(ALICE, FOREIGN, "to the world"))
        s.quit()
        m = self.inst.wait_for_log(r"(\S+): client=unknown\[127\.0\.0\.1\]")
        deadline = time.monotonic() + 10
        while True:
            r = self.inst.tool("queue", "list", "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            entries = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
            mine = [e for e in entries
                    if any(x["address"] == FOREIGN for x in e["recipients"])]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertTrue(mine, r.stdout + self.inst.log_text()[-3000:])
        e = mine[0]
        self.assertEqual(e["sender"], ALICE)
        # remote-delivery is off here: the message waits in the queue.
        self.assertIn(e["queue_name"], ("active", "deferred"))
        self.assertIsNotNone(m)

    def test_no_auth_means_no_mail(self):
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "530 5.7.0")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % FOREIGN)), "503 5.5.1")
        # smtplib agrees: the relay is refused.
        s = self.smtp()
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail(ALICE, [FOREIGN], message(ALICE, FOREIGN))
        self.assertEqual(cm.exception.smtp_code, 530)

    def test_wrong_password_is_delayed(self):
        c = self.client()
        t0 = time.monotonic()
        r = c.login("alice", "wrong")
        elapsed = time.monotonic() - t0
        self.assertEqual(last_code(r), "535 5.7.8")
        self.assertGreaterEqual(elapsed, 0.9, "the failure came back too fast")
        # An unknown user looks exactly the same.
        r = c.cmd("AUTH PLAIN " + b64("\0nosuchuser\0demo"))
        self.assertEqual(last_code(r), "535 5.7.8")
        # The right password still works (after the delay a success gets too).
        r = c.cmd("AUTH PLAIN " + b64("\0alice\0demo"))
        self.assertEqual(last_code(r), "235 2.7.0")

    def test_forged_envelope_sender(self):
        c = self.client()
        self.assertEqual(last_code(c.login()), "235 2.7.0")
        r = c.cmd("MAIL FROM:<%s>" % BOB)
        self.assertEqual(last_code(r), "553 5.7.1")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<ceo@elsewhere.example>")), "553 5.7.1")
        # Own address with a +detail, any case, and the null sender are fine.
        self.assertEqual(last_code(c.cmd("MAIL FROM:<Alice+lists@Example.Test>")), "250 2.1.0")
        self.assertEqual(last_code(c.cmd("RSET")), "250 2.0.0")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<>")), "250 2.1.0")

    def test_forged_from_header(self):
        c = self.client()
        self.assertEqual(last_code(c.login()), "235 2.7.0")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % BOB)), "250 2.1.5")
        self.assertEqual(last_code(c.cmd("DATA")), "354")
        c.send(message("The Boss <%s>" % BOB, BOB, "forged From") + ".\r\n")
        r = c.reply()
        self.assertEqual(last_code(r), "553 5.7.1", r)
        self.assertIn("<%s>" % BOB, r)
        # The session goes on; an honest message passes.
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % BOB)), "250 2.1.5")
        self.assertEqual(last_code(c.cmd("DATA")), "354")
        c.send(message("Alice <%s>" % ALICE, BOB, "honest From") + ".\r\n")
        self.assertEqual(last_code(c.reply()), "250 2.0.0")

    def test_alias_owned_sender(self):
        # postmaster and abuse are aliases of alice (harness): hers, not bob's.
        c = self.client()
        self.assertEqual(last_code(c.login()), "235 2.7.0")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<postmaster@%s>" % DOMAIN)), "250 2.1.0")
        c2 = self.client()
        self.assertEqual(last_code(c2.login("bob")), "235 2.7.0")
        self.assertEqual(last_code(c2.cmd("MAIL FROM:<abuse@%s>" % DOMAIN)), "553 5.7.1")

    def test_sasl_errors(self):
        c = self.client()
        c.cmd("EHLO client.example")
        cases = [
            (["AUTH PLAIN not_base64!"], ["501 5.5.2"]),
            (["AUTH PLAIN", "AHVzZXIAcGFzcw=!"], ["334", "501 5.5.2"]),
            (["AUTH LOGIN", "*"], ["334", "501 5.0.0"]),
            (["AUTH PLAIN", "*"], ["334", "501 5.0.0"]),
            (["AUTH LOGIN", b64("alice"), "*"], ["334", "334", "501 5.0.0"]),
            (["AUTH PLAIN " + b64("no nul here")], ["501 5.5.2"]),
            (["AUTH CRAM-MD5"], ["504 5.5.4"]),
            (["AUTH PLAIN", "A" * 13000], ["334", "500 5.5.6"]),
            (["AUTH PLAIN " + "A" * 13000], ["500 5.5.2"]),
        ]
        for lines, codes in cases:
            got = [last_code(c.cmd(l)) for l in lines]
            self.assertEqual(got, codes, lines[0][:40])
        # LOGIN all the way, then AUTH twice.
        self.assertEqual(last_code(c.cmd("AUTH LOGIN")), "334")
        self.assertEqual(last_code(c.cmd(b64("alice"))), "334")
        self.assertEqual(last_code(c.cmd(b64("demo"))), "235 2.7.0")
        self.assertEqual(last_code(c.cmd("AUTH PLAIN " + b64("\0alice\0demo"))), "503 5.5.1")

    def test_swaks_587_plain_and_465_login(self):
        before = self.inst.maildir_messages("bob")
        r = self.swaks("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "demo",
                       "--from", ALICE, "--to", BOB)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"<~  250 2\.0\.0 Ok: queued as")
        self.wait_delivered("bob", before)
        before = self.inst.maildir_messages("bob")
        r = self.swaks("--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "demo",
                       "--from", ALICE, "--to", BOB, implicit=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("235 2.7.0", r.stdout)
        self.wait_delivered("bob", before)

    def test_swaks_refusals(self):
        # Relay without AUTH.
        r = self.swaks("--from", ALICE, "--to", FOREIGN)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("530 5.7.0", r.stdout)
        # A wrong password.
        r = self.swaks("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "nope",
                       "--from", ALICE, "--to", BOB)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("535 5.7.8", r.stdout)
        # A forged sender.
        r = self.swaks("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "demo",
                       "--from", BOB, "--to", BOB)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("553 5.7.1", r.stdout)
        # A forged From: header with an honest envelope.
        r = self.swaks("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "demo",
                       "--from", ALICE, "--to", BOB, "--h-From", "<%s>" % BOB)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("553 5.7.1", r.stdout)

    def test_unknown_local_recipient(self):
        c = self.client()
        self.assertEqual(last_code(c.login()), "235 2.7.0")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")
        self.assertEqual(last_code(c.cmd("RCPT TO:<nobody@%s>" % DOMAIN)), "550 5.1.1")


class SubmitdLimitsTest(SubmitdBase):
    config = {"submission_max_messages_per_hour": "2",
              "submission_max_recipients": "3",
              "submission_max_recipients_per_hour": "5",
              "submission_received_auth": "yes",
              "submission_sender_map": "bob:*, carol:info@partner.example"}
    # carol is not rate-limited by test_rate_limits (alice is).
    users = {"alice": "demo", "bob": "demo", "carol": "demo"}

    def send_one(self, c, rcpts):
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")
        for r in rcpts:
            self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % r)), "250 2.1.5")
        self.assertEqual(last_code(c.cmd("DATA")), "354")
        c.send(message(ALICE, BOB) + ".\r\n")
        self.assertEqual(last_code(c.reply()), "250 2.0.0")

    def test_rate_limits(self):
        c = self.client()
        self.assertEqual(last_code(c.login()), "235 2.7.0")
        # Recipients per message: the fourth gets 452 4.5.3.
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")
        for i in range(3):
            self.assertEqual(last_code(c.cmd("RCPT TO:<r%d@elsewhere.example>" % i)),
                             "250 2.1.5")
        self.assertEqual(last_code(c.cmd("RCPT TO:<r9@elsewhere.example>")), "452 4.5.3")
        self.assertEqual(last_code(c.cmd("RSET")), "250 2.0.0")
        # 3 recipients counted; 2 more this hour, then 450 4.7.1.
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % BOB)), "250 2.1.5")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % BOB)), "250 2.1.5")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % BOB)), "450 4.7.1")
        self.assertEqual(last_code(c.cmd("RSET")), "250 2.0.0")
        # Messages per hour: two MAILs were counted; the third is refused.
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        self.assertEqual(last_code(r), "450 4.7.1", r)
        # Another user has an hour of their own.
        c2 = self.client(implicit_tls=True)
        self.assertEqual(last_code(c2.login("bob")), "235 2.7.0")
        self.assertEqual(last_code(c2.cmd("MAIL FROM:<%s>" % BOB)), "250 2.1.0")

    def test_sender_map_and_received_auth(self):
        c = self.client()
        self.assertEqual(last_code(c.login("bob")), "235 2.7.0")
        # bob:* may send as anybody.
        self.assertEqual(last_code(c.cmd("MAIL FROM:<ceo@bank.example>")), "250 2.1.0")
        c2 = self.client()
        self.assertEqual(last_code(c2.login("carol")), "235 2.7.0")
        self.assertEqual(last_code(c2.cmd("MAIL FROM:<INFO@partner.example>")), "250 2.1.0")
        self.assertEqual(last_code(c2.cmd("RSET")), "250 2.0.0")
        self.assertEqual(last_code(c2.cmd("MAIL FROM:<sales@partner.example>")), "553 5.7.1")
        # With submission_received_auth the Received: line names the user.
        before = self.inst.maildir_messages("alice")
        self.assertEqual(last_code(c.cmd("RCPT TO:<%s>" % ALICE)), "250 2.1.5")
        self.assertEqual(last_code(c.cmd("DATA")), "354")
        c.send(message("ceo@bank.example", ALICE, "mapped") + ".\r\n")
        self.assertEqual(last_code(c.reply()), "250 2.0.0")
        text = self.wait_delivered("alice", before)
        self.assertIn("(Authenticated sender: bob)", text)


class UserCommandsTest(SubmitdBase):
    """pillarbox user add | passwd | del | list, seen through submitd's AUTH."""

    def user(self, *args, password=None):
        env = dict(os.environ, PBX_CONFIG=self.inst.conf_path)
        return subprocess.run([harness.program("pillarbox"), "user"] + list(args),
                              input=password, capture_output=True, text=True, env=env,
                              timeout=60)

    def auth_code(self, user, password, timeout=10):
        """The AUTH reply, retried until authd has seen the new file."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.client(implicit_tls=True)
            code = last_code(c.login(user, password))
            c.close()
            if code == "235 2.7.0" or time.monotonic() > deadline:
                return code
            time.sleep(0.5)

    def test_add_passwd_list_del(self):
        users = os.path.join(self.inst.dir, "users")
        before = os.stat(users)
        home = os.path.join(self.inst.mail_dir, "carol")
        r = self.user("add", "carol", "--home", home, "--stdin", password="first pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(users) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^carol:\$y\$[^:]+:\d+:\d+:%s:$" % re.escape(home))
        self.assertIn("# test users", text)  # the rest is kept
        after = os.stat(users)
        self.assertEqual((after.st_uid, after.st_gid, after.st_mode & 0o7777),
                         (before.st_uid, before.st_gid, before.st_mode & 0o7777))
        self.assertTrue(os.path.isdir(os.path.join(home, "Maildir", "new")))
        self.assertEqual(self.auth_code("carol", "first pw"), "235 2.7.0")
        # Twice the same name, a bad name, no password.
        self.assertEqual(self.user("add", "carol", "--stdin", password="x\n").returncode, 1)
        self.assertEqual(self.user("add", "Bad/Name", "--stdin", password="x\n").returncode, 1)
        self.assertEqual(self.user("add", "dave", "--stdin", "--no-create",
                                   password="").returncode, 1)
        # A new password, as sha512-crypt; the old one stops working.
        r = self.user("passwd", "carol", "--scheme", "sha512", "--stdin", password="second\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.auth_code("carol", "second"), "235 2.7.0")
        self.assertEqual(self.auth_code("carol", "first pw", timeout=0), "535 5.7.8")
        # list: every user, never a hash.
        r = self.user("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        listed = {u["name"]: u for u in json.loads(r.stdout)}
        self.assertEqual(set(listed), {"alice", "bob", "carol"})
        self.assertEqual(listed["carol"]["mailbox"], home + "/Maildir/")
        self.assertNotIn("$", r.stdout)
        r = self.user("list")
        self.assertIn("carol", r.stdout)
        self.assertNotIn("$", r.stdout)
        # del: the user is gone, the mailbox stays.
        self.assertEqual(self.user("del", "carol").returncode, 0)
        self.assertEqual(self.user("del", "carol").returncode, 1)
        self.assertNotIn("carol:", open(users).read())
        self.assertTrue(os.path.isdir(home))
        deadline = time.monotonic() + 10
        while self.auth_code("carol", "second", timeout=0) != "535 5.7.8":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.5)
        self.assertEqual(self.user("frobnicate").returncode, 2)


class SubmitdNoTlsTest(SubmitdBase):
    config = {"submission_auth_without_tls": "yes"}

    def test_auth_without_tls_when_configured(self):
        c = self.client(starttls=False)
        r = c.cmd("EHLO client.example")
        self.assertIn("AUTH PLAIN LOGIN", r)
        self.assertIn("STARTTLS", r)
        r = c.cmd("AUTH PLAIN " + b64("\0alice\0demo"))
        self.assertEqual(last_code(r), "235 2.7.0")
        self.assertEqual(last_code(c.cmd("MAIL FROM:<%s>" % ALICE)), "250 2.1.0")


if __name__ == "__main__":
    unittest.main()
