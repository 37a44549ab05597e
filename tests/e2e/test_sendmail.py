"""sendmail, mailq, newaliases and postdrop end to end (issue: sendmail):
messages submitted with -t, -bs and -f as root and as an unprivileged user
land in queue/ with their headers and body intact and an envelope saying who
sent them; a sender the user may not use is refused; while the
queue-manager is down, sendmail still succeeds through the setgid postdrop
and the queue-manager picks the maildrop files up when it comes back;
mailq and newaliases."""

import glob
import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Instance

D = harness.DOMAIN
HOST = "mail." + D
SENDMAIL = harness.program("sendmail")
MAILQ = harness.program("mailq")
NEWALIASES = harness.program("newaliases")
POSTDROP = os.path.join(harness.build_dir(), "tools", "postdrop")
USER = "nobody"  # an unprivileged user with a passwd entry


def _scale():
    try:
        return float(os.environ.get("PBX_E2E_TIMEOUT_SCALE", "1"))
    except ValueError:
        return 1.0


def wait_until(predicate, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout * _scale()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def config_only_queue_manager():
    """No listeners and no other program: mail stays in queue/ to be looked at."""
    config = {key: "" for key, _ in harness.LISTENERS.values()}
    config.update({"authd_enable": "no", "local_delivery_enable": "no",
                   "remote_delivery_enable": "no"})
    return config


class SpoolView:
    """Reads queue/ and maildrop/ of an instance (as root)."""

    def __init__(self, inst):
        self.inst = inst

    def queued(self):
        return {os.path.basename(p)[:-4]
                for p in glob.glob(os.path.join(self.inst.spool_dir, "queue", "*.env"))}

    def maildrop(self):
        d = os.path.join(self.inst.spool_dir, "maildrop")
        return sorted(n for n in os.listdir(d) if ".tmp." not in n) if os.path.isdir(d) else []

    def message(self, qid):
        with open(os.path.join(self.inst.spool_dir, "queue", qid + ".msg"), "rb") as f:
            return f.read()

    def envelope(self, qid):
        """{key: value} of the envelope; "rcpt" holds the list of to= values."""
        out = {"rcpt": []}
        with open(os.path.join(self.inst.spool_dir, "queue", qid + ".env")) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition(": ")
                if key == "rcpt":
                    out["rcpt"].append(re.search(r"\bto=(\S*)", value).group(1))
                else:
                    out[key] = value
        return out


@unittest.skipUnless(SENDMAIL and harness.program("queue-manager"),
                     "sendmail or the queue-manager is not built")
class SendmailTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.inst = Instance(config=config_only_queue_manager())
        cls.spool = SpoolView(cls.inst)
        cls.sock = os.path.join(cls.inst.runtime_dir, "queue", "enqueue.sock")
        wait_until(lambda: os.path.exists(cls.sock), what="the enqueue socket")
        cls.user_sendmail = harness.reachable_program(SENDMAIL)
        cls.uid = pwd.getpwnam(USER).pw_uid

    @classmethod
    def tearDownClass(cls):
        try:
            cls.inst.stop()
        finally:
            cls.inst.cleanup()

    def sendmail(self, args, text, user=None, program=None):
        prog = program or (self.user_sendmail if user else SENDMAIL)
        cmd = [prog, "-C", self.inst.conf_path] + list(args)
        if user:
            cmd = ["runuser", "-u", user, "--"] + cmd
        return subprocess.run(cmd, input=text.encode() if isinstance(text, str) else text,
                              capture_output=True, timeout=60 * _scale())

    def submit(self, args, text, user=None):
        """Runs sendmail, expects exit 0, returns the one new queue ID."""
        before = self.spool.queued()
        r = self.sendmail(args, text, user)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertEqual(r.stderr, b"")
        new = self.spool.queued() - before
        self.assertEqual(len(new), 1, "one new message in queue/: %s" % sorted(new))
        return new.pop()

    def test_t_as_root(self):
        text = ("To: alice@%s, Bob <bob@%s>\n"
                "Cc: \"Carol, C.\" <carol@%s> (the boss)\n"
                "Bcc: dave@%s\n"
                "Subject: minus t\n"
                "\n"
                "first line\n"
                "..two dots stay\n"
                "caf\xc3\xa9\n"
                ".\n"
                "after the dot: not part of it\n") % (D, D, D, D)
        qid = self.submit(["-t"], text.encode("latin-1"))
        env = self.spool.envelope(qid)
        self.assertEqual(env["origin"], "sendmail")
        self.assertEqual(env["uid"], "0")
        self.assertEqual(env["sender"], "root@" + HOST)
        self.assertEqual(env["body"], "8bitmime")
        self.assertEqual(sorted(env["rcpt"]),
                         sorted("%s@%s" % (u, D) for u in ("alice", "bob", "carol", "dave")))
        msg = self.spool.message(qid)
        head, _, body = msg.partition(b"\r\n\r\n")
        self.assertEqual(body, b"first line\r\n..two dots stay\r\ncaf\xc3\xa9\r\n")
        self.assertIn(b"\r\nSubject: minus t\r\n", head)
        self.assertIn(b"Cc: \"Carol, C.\" <carol@%s> (the boss)\r\n" % D.encode(), head)
        self.assertNotIn(b"Bcc", head)
        self.assertNotIn(b"dave", msg)
        self.assertIn(b"\r\nFrom: ", head)
        self.assertRegex(head, rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n")
        self.assertRegex(head, rb"\r\nMessage-ID: <[^>]+@" + re.escape(HOST.encode()) + rb">(\r\n|$)")
        self.assertTrue(head.startswith(b"Received: "), head[:200])

    def test_t_as_user(self):
        text = "To: alice@%s\nSubject: from a user\n\nhello\n" % D
        qid = self.submit(["-t", "-F", "Nobody At All"], text, user=USER)
        env = self.spool.envelope(qid)
        self.assertEqual(env["origin"], "sendmail")
        self.assertEqual(env["uid"], str(self.uid))
        self.assertEqual(env["sender"], "%s@%s" % (USER, HOST))
        self.assertEqual(env["rcpt"], ["alice@" + D])
        msg = self.spool.message(qid)
        self.assertIn(b"\r\nFrom: \"Nobody At All\" <%s@%s>\r\n" % (USER.encode(), HOST.encode()),
                      msg)
        self.assertTrue(msg.endswith(b"\r\n\r\nhello\r\n"))

    def test_arguments_i_and_existing_headers(self):
        text = ("From: Someone <someone@%s>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
                "Message-ID: <kept@x>\n\n.\nstill the body\n") % D
        qid = self.submit(["-i", "alice", "bob@%s" % D], text)
        env = self.spool.envelope(qid)
        self.assertEqual(env["rcpt"], ["alice@" + HOST, "bob@" + D])
        msg = self.spool.message(qid)
        self.assertTrue(msg.endswith(b"\r\n\r\n.\r\nstill the body\r\n"))
        self.assertEqual(msg.count(b"\r\nDate: "), 1)
        self.assertEqual(msg.count(b"\r\nMessage-ID: "), 1)
        self.assertIn(b"\r\nFrom: Someone <someone@%s>\r\n" % D.encode(), msg)

    def test_dsn_options_reach_the_envelope(self):
        qid = self.submit(["-N", "success,failure", "-R", "hdrs", "-V", "envid-42",
                           "alice@" + D], "Subject: dsn\n\nx\n")
        env = self.spool.envelope(qid)
        self.assertEqual(env["ret"], "hdrs")
        self.assertEqual(env["envid"], "envid-42")
        with open(os.path.join(self.inst.spool_dir, "queue", qid + ".env")) as f:
            rcpt = [l for l in f if l.startswith("rcpt:")][0]
        self.assertRegex(rcpt, r"\bnotify=\S*(success|SUCCESS)")

    def test_f_from_root_is_kept(self):
        qid = self.submit(["-f", "list-bounces@%s" % D, "alice@" + D], "Subject: f\n\nx\n")
        self.assertEqual(self.spool.envelope(qid)["sender"], "list-bounces@" + D)

    def test_f_from_a_user_is_not_trusted(self):
        before = self.spool.queued()
        r = self.sendmail(["-f", "alice@" + D, "bob@" + D], "Subject: forged\n\nx\n", user=USER)
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn(b"5.7.1", r.stderr)
        self.assertEqual(self.spool.queued(), before)
        # Their own address is fine.
        qid = self.submit(["-f", "%s@%s" % (USER, HOST), "bob@" + D], "Subject: own\n\nx\n",
                          user=USER)
        self.assertEqual(self.spool.envelope(qid)["uid"], str(self.uid))

    def test_bs(self):
        before = self.spool.queued()
        session = ("EHLO client\n"
                   "MAIL FROM:<root@%s>\n"
                   "RCPT TO:<alice@%s> NOTIFY=FAILURE\n"
                   "DATA\n"
                   "Subject: over smtp\n"
                   "\n"
                   "..dot-stuffed\n"
                   ".\n"
                   "QUIT\n") % (HOST, D)
        r = self.sendmail(["-bs"], session)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertTrue(out.startswith("220 "), out)
        m = re.search(r"^250 2\.0\.0 Ok: queued as (\w+)\r$", out, re.M)
        self.assertTrue(m, out)
        self.assertIn("221 2.0.0", out)
        new = self.spool.queued() - before
        self.assertEqual(new, {m.group(1)})
        msg = self.spool.message(m.group(1))
        self.assertTrue(msg.endswith(b"\r\n\r\n.dot-stuffed\r\n"), msg)
        self.assertIn(b"\r\nMessage-ID: ", msg)

    def test_usage_and_input_errors(self):
        r = self.sendmail([], "x\n")
        self.assertEqual(r.returncode, 64)
        self.assertIn(b"sendmail: no recipients", r.stderr)
        r = self.sendmail(["-t"], "Subject: nobody to send to\n\nx\n")
        self.assertEqual(r.returncode, 65)
        r = self.sendmail(["-t"], "To: \"unterminated <a@b>\n\nx\n")
        self.assertEqual(r.returncode, 65)
        self.assertIn(b"To: header", r.stderr)
        r = self.sendmail(["-bd"], "")
        self.assertEqual(r.returncode, 64)

    def test_size_limit(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", dir=self.inst.dir,
                                         delete=False) as f:
            f.write(open(self.inst.conf_path).read().replace(
                "message_size_limit", "#") + "message_size_limit = 1k\n")
            small = f.name
        os.chmod(small, 0o644)
        r = subprocess.run([SENDMAIL, "-C", small, "alice@" + D],
                           input=b"Subject: big\n\n" + b"x" * 2000 + b"\n", capture_output=True)
        self.assertEqual(r.returncode, 65, r.stderr)
        self.assertIn(b"message_size_limit", r.stderr)

    def test_mailq(self):
        qid = self.submit(["alice@" + D], "Subject: listed\n\nx\n")
        for user in (None, USER):
            cmd = [MAILQ, "-C", self.inst.conf_path]
            if user:
                cmd = ["runuser", "-u", user, "--", harness.reachable_program(SENDMAIL),
                       "-bp", "-C", self.inst.conf_path]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(qid, r.stdout)
        # -q is root's.
        r = subprocess.run(["runuser", "-u", USER, "--", self.user_sendmail, "-q", "-C",
                            self.inst.conf_path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 77)
        r = subprocess.run([SENDMAIL, "-q", "-C", self.inst.conf_path], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_newaliases(self):
        r = subprocess.run([NEWALIASES, "-C", self.inst.conf_path], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 aliases", r.stdout)
        bad = os.path.join(self.inst.dir, "aliases.bad")
        with open(bad, "w") as f:
            f.write("postmaster: root\nthis line has no colon\n")
        conf = os.path.join(self.inst.dir, "aliases-bad.conf")
        with open(conf, "w") as f:
            f.write(open(self.inst.conf_path).read().replace(
                "aliases_file", "#") + "aliases_file = %s\n" % bad)
        r = subprocess.run([SENDMAIL, "-bi", "-C", conf], capture_output=True, text=True)
        self.assertEqual(r.returncode, 65)
        self.assertIn(bad + ":2:", r.stderr)
        os.unlink(bad)
        r = subprocess.run([NEWALIASES, "-C", conf], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("does not exist", r.stdout)


@unittest.skipUnless(SENDMAIL and os.path.exists(POSTDROP) and harness.program("queue-manager"),
                     "sendmail, postdrop or the queue-manager is not built")
class MaildropTest(unittest.TestCase):
    """The queue-manager stopped (reload with queue_manager_enable = no):
    sendmail goes through postdrop, which must be setgid pbx-drop."""

    def setUp(self):
        self.inst = Instance(config=config_only_queue_manager())
        self.spool = SpoolView(self.inst)
        self.sock = os.path.join(self.inst.runtime_dir, "queue", "enqueue.sock")
        wait_until(lambda: os.path.exists(self.sock), what="the enqueue socket")
        wait_until(lambda: os.path.isdir(os.path.join(self.inst.spool_dir, "maildrop")),
                   what="maildrop/")
        # Installed the way install-postdrop.sh does it.
        drop = os.path.join(self.inst.dir, "postdrop")
        shutil.copy2(POSTDROP, drop)
        os.chown(drop, 0, grp.getgrnam("pbx-drop").gr_gid)
        os.chmod(drop, 0o2755)
        os.symlink(drop, os.path.join(self.inst.libexec_dir, "postdrop"))
        self.user_sendmail = harness.reachable_program(SENDMAIL)
        self.uid = pwd.getpwnam(USER).pw_uid

    def tearDown(self):
        try:
            self.inst.stop()
        finally:
            self.inst.cleanup()

    def set_queue_manager(self, on):
        self.inst.write_config({"queue_manager_enable": "yes" if on else "no"})
        self.inst.reload()
        if on:
            self.inst.wait_for_child("queue-manager", timeout=15)
        else:
            wait_until(lambda: "queue-manager" not in self.inst.children(),
                       what="the queue-manager to stop")

    def sendmail(self, args, text, user=None):
        prog = self.user_sendmail if user else SENDMAIL
        cmd = [prog, "-C", self.inst.conf_path] + list(args)
        if user:
            cmd = ["runuser", "-u", user, "--"] + cmd
        return subprocess.run(cmd, input=text.encode(), capture_output=True,
                              timeout=60 * _scale())

    def test_maildrop_then_pickup(self):
        self.set_queue_manager(False)
        before = self.spool.queued()

        r = self.sendmail(["-t"], "To: alice@%s\nSubject: dropped by root\n\nbody\n" % D)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")
        r = self.sendmail(["bob@" + D], "Subject: dropped by a user\n\nbody 2\n", user=USER)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")

        files = self.spool.maildrop()
        self.assertEqual(len(files), 2, files)
        owners = set()
        for name in files:
            st = os.stat(os.path.join(self.inst.spool_dir, "maildrop", name))
            self.assertEqual(st.st_mode & 0o7777, 0o444)
            owners.add(st.st_uid)
            with open(os.path.join(self.inst.spool_dir, "maildrop", name), "rb") as f:
                first = f.read(40)
            self.assertTrue(first.startswith(b"pillarbox-maildrop 1\nuid: "), first)
        self.assertEqual(owners, {0, self.uid})
        self.assertEqual(self.spool.queued(), before)

        r = subprocess.run([MAILQ, "-C", self.inst.conf_path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 69)
        self.assertIn("mailq: the queue-manager is not running", r.stderr)

        self.set_queue_manager(True)
        wait_until(lambda: not self.spool.maildrop(), what="maildrop/ to be picked up")
        new = wait_until(lambda: (self.spool.queued() - before
                                  if len(self.spool.queued() - before) == 2 else None),
                         what="two new messages in queue/")
        by_uid = {self.spool.envelope(q)["uid"]: q for q in new}
        self.assertEqual(set(by_uid), {"0", str(self.uid)})
        root_env = self.spool.envelope(by_uid["0"])
        self.assertEqual(root_env["origin"], "sendmail")
        self.assertEqual(root_env["sender"], "root@" + HOST)
        self.assertEqual(root_env["rcpt"], ["alice@" + D])
        user_env = self.spool.envelope(by_uid[str(self.uid)])
        self.assertEqual(user_env["sender"], "%s@%s" % (USER, HOST))
        self.assertEqual(user_env["rcpt"], ["bob@" + D])
        msg = self.spool.message(by_uid[str(self.uid)])
        self.assertIn(b"\r\nSubject: dropped by a user\r\n", msg)
        self.assertTrue(msg.endswith(b"\r\n\r\nbody 2\r\n"), msg)

    def test_postdrop_refuses_bad_input(self):
        drop = os.path.join(self.inst.libexec_dir, "postdrop")
        for data in (b"", b"not a maildrop record\n",
                     b"pillarbox-maildrop 1\nuid: 0\ntime: 0\nsender:\nrcpt: a\nsize: 99\nx\nend\n"):
            r = subprocess.run(["runuser", "-u", USER, "--", drop, "-c", self.inst.conf_path],
                               input=data, capture_output=True)
            self.assertEqual(r.returncode, 65, r.stderr)
            self.assertIn(b"postdrop: bad input", r.stderr)
        r = subprocess.run(["runuser", "-u", USER, "--", drop, "-x"], capture_output=True)
        self.assertEqual(r.returncode, 64)
        self.assertEqual(self.spool.maildrop(), [])

    def test_postdrop_checks_where_and_what_it_is(self):
        # The queue-manager would pick the files up at once (inotify).
        self.set_queue_manager(False)
        record = (b"pillarbox-maildrop 1\nuid: 0\ntime: 0\nsender: nobody\nrcpt: a\nsize: 2\n"
                  b"x\nend\n")
        # A spool_dir whose maildrop/ is not the real thing (the user's own
        # config): refused, nothing written there.
        fake = tempfile.mkdtemp(dir=self.inst.dir)
        os.chmod(fake, 0o755)
        os.mkdir(os.path.join(fake, "maildrop"), 0o777)
        os.chmod(os.path.join(fake, "maildrop"), 0o777)
        conf = os.path.join(self.inst.dir, "fake-spool.conf")
        with open(conf, "w") as f:
            f.write(open(self.inst.conf_path).read().replace("spool_dir", "#") +
                    "spool_dir = %s\n" % fake)
        drop = os.path.join(self.inst.libexec_dir, "postdrop")
        r = subprocess.run(["runuser", "-u", USER, "--", drop, "-c", conf], input=record,
                           capture_output=True)
        self.assertEqual(r.returncode, 73, r.stderr)
        self.assertIn(b"not a maildrop directory", r.stderr)
        self.assertEqual(os.listdir(os.path.join(fake, "maildrop")), [])
        # Setgid to another group than pbx-drop (an install before the group
        # existed): refuses to run at all.
        wrong = os.path.join(self.inst.dir, "postdrop-root-group")
        shutil.copy2(POSTDROP, wrong)
        os.chown(wrong, 0, 0)
        os.chmod(wrong, 0o2755)
        r = subprocess.run(["runuser", "-u", USER, "--", wrong, "-c", self.inst.conf_path],
                           input=record, capture_output=True)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn(b"not the group pbx-drop", r.stderr)
        self.assertEqual(self.spool.maildrop(), [])
        # The right one stores it, as the caller's uid whatever the record says.
        r = subprocess.run(["runuser", "-u", USER, "--", drop, "-c", self.inst.conf_path],
                           input=record, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        files = self.spool.maildrop()
        self.assertEqual(len(files), 1)
        with open(os.path.join(self.inst.spool_dir, "maildrop", files[0]), "rb") as f:
            self.assertTrue(f.read().startswith(b"pillarbox-maildrop 1\nuid: %d\n" % self.uid))

    def test_user_cannot_write_maildrop_without_postdrop(self):
        # The directories are what keep users out, not postdrop's good manners.
        r = subprocess.run(["runuser", "-u", USER, "--", "touch",
                            os.path.join(self.inst.spool_dir, "maildrop", "x")],
                           capture_output=True)
        self.assertNotEqual(r.returncode, 0)
        r = subprocess.run(["runuser", "-u", USER, "--", "ls",
                            os.path.join(self.inst.spool_dir, "maildrop")], capture_output=True)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    unittest.main()
