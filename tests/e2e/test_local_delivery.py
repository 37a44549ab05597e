"""local-delivery end to end: deliver requests on local/local.sock (sent as
root, who may use every channel), Maildir and mbox stores, unknown users,
aliases and loops, and the privileges of the parent
(issue: local-delivery)."""

import fcntl
import os
import pwd
import re
import signal
import stat
import tempfile
import time
import unittest

import harness
import pbx_ipc
from harness import Instance

DELIVERY = pbx_ipc.load_protocol("delivery")


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()
D = harness.DOMAIN

MESSAGE = (b"Received: from client.example.net by mail.example.test\r\n"
           b"From: <sender@example.net>\r\n"
           b"Subject: hello\r\n"
           b"\r\n"
           b"From the body, a line that mbox must quote.\r\n"
           b"bytes \xc3\xa9 intact\r\n")


@unittest.skipUnless(harness.program("local-delivery") and harness.program("authd"),
                     "local-delivery or authd is not built")
class LocalDeliveryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config.update({"queue_manager_enable": "no", "remote_delivery_enable": "no"})
        cls.inst = Instance(config=config, users={"alice": "pw", "bob": "pw", "carol": "pw"},
                            start=False)
        inst = cls.inst
        cls.inst.write_config({"spool_dir": os.path.join(inst.dir, "no-spool")})
        users_path = os.path.join(inst.dir, "users")
        text = read(users_path, "r")
        carol_home = os.path.join(inst.mail_dir, "carol")
        text = text.replace(carol_home + "/Maildir/", carol_home + "/mbox")
        with open(users_path, "w") as f:
            f.write(text)
        with open(os.path.join(inst.dir, "aliases"), "a") as f:
            f.write("staff: alice, carol\n"
                    "pipe: \"|/bin/cat\"\n"
                    "loop1: loop2\nloop2: loop1\n")
        inst.start()
        cls.sock = os.path.join(inst.runtime_dir, "local", "local.sock")
        deadline = time.monotonic() + 15
        while not os.path.exists(cls.sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        auth = os.path.join(inst.runtime_dir, "auth", "auth.sock")
        while not os.path.exists(auth) and time.monotonic() < deadline:
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.inst.stop()
        finally:
            cls.inst.cleanup()

    next_id = 1

    def deliver(self, rcpts, message=MESSAGE, sender="sender@example.net"):
        """Sends one deliver request; returns {index: fields} of rcpt_result."""
        with tempfile.TemporaryFile() as f:
            f.write(message)
            f.flush()
            f.seek(3)  # the agent must not rely on the offset
            rid = LocalDeliveryTest.next_id
            LocalDeliveryTest.next_id += 1
            with pbx_ipc.Client(self.sock, DELIVERY, timeout=30) as c:
                c.send("deliver", id=rid, queue_id="QTEST%d" % rid, sender=sender,
                       message=f.fileno(), size=len(message), arrival=int(time.time()),
                       rcpt=list(rcpts), rcpt_orcpt=[""] * len(rcpts),
                       rcpt_notify=[0] * len(rcpts))
                results = {}
                while True:
                    name, fields = c.recv(timeout=30)
                    self.assertEqual(fields["id"], rid)
                    if name == "done":
                        break
                    self.assertEqual(name, "rcpt_result")
                    results[fields["index"]] = fields
        self.assertEqual(sorted(results), list(range(len(rcpts))))
        return results

    def new_files(self, user):
        d = os.path.join(self.inst.mail_dir, user, "Maildir", "new")
        return {os.path.join(d, n) for n in os.listdir(d)}

    def test_maildir(self):
        before = self.new_files("alice")
        r = self.deliver(["alice@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(r[0]["reply"], "250 2.0.0 delivered to maildir")
        added = self.new_files("alice") - before
        self.assertEqual(len(added), 1)
        path = added.pop()
        st = os.stat(path)
        self.assertEqual(st.st_uid, pwd.getpwnam("pbx-vmail").pw_uid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        data = read(path)
        head = b"Return-Path: <sender@example.net>\r\nDelivered-To: alice@" + D.encode() + b"\r\n"
        self.assertEqual(data, head + MESSAGE)
        # S= the file's size, W= its size with CRLF line ends (what POP3 reports).
        wsize = len(data) + data.count(b"\n") - data.count(b"\r\n")
        self.assertRegex(os.path.basename(path),
                         r"^\d+\.M\d+P\d+Q\d+\..+,S=%d,W=%d$" % (len(data), wsize))
        self.assertEqual(os.listdir(os.path.join(self.inst.mail_dir, "alice", "Maildir", "tmp")), [])
        self.inst.wait_for_log(r"QTEST\d+: to=<alice@%s>, relay=local, delay=\d+, .*status=sent "
                               r"\(delivered to maildir\)" % re.escape(D))

    def test_mailbox_writes_reuse_a_dropped_worker(self):
        parent = self.inst.wait_for_child("local-delivery")
        vmail = pwd.getpwnam("pbx-vmail")
        before = self.new_files("alice")
        for _ in range(3):
            self.assertEqual(self.deliver(["alice@" + D])[0]["status"], "sent")
        added = self.new_files("alice") - before
        pids = {re.search(r"P(\d+)Q", os.path.basename(p)).group(1) for p in added}
        self.assertEqual(len(added), 3)
        self.assertEqual(len(pids), 1, added)  # one worker wrote all three
        worker = int(pids.pop())
        self.assertNotEqual(worker, parent)
        st = harness.proc_status(worker)  # idle now, waiting for the next job
        self.assertEqual(int(st["PPid"]), parent)
        self.assertEqual(st["Uid"].split(), [str(vmail.pw_uid)] * 4)
        self.assertEqual(st["Gid"].split(), [str(vmail.pw_gid)] * 4)
        self.assertEqual(st["CapEff"], "0000000000000000")
        self.assertEqual(st["CapPrm"], "0000000000000000")
        self.assertEqual(st["NoNewPrivs"], "1")
        # A worker that dies costs nothing but itself: the parent reaps it
        # (it is gone from /proc only once the parent has seen its end) and
        # the next delivery gets a new one.
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10 * harness._scale()
        while harness.proc_status(worker) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(harness.proc_status(worker), {})
        before = self.new_files("alice")
        self.assertEqual(self.deliver(["alice@" + D])[0]["status"], "sent")
        added = self.new_files("alice") - before
        self.assertEqual(len(added), 1)
        self.assertNotIn("P%dQ" % worker, added.pop())

    def test_concurrent_deliveries_share_one_worker_batch(self):
        """Deliveries in flight at once, to two virtual users (one uid) and an
        mbox user, on one connection: every one answered, stored once, the
        Maildir ones by one worker (they go to it without waiting, to be
        stored in batches), the mbox one by another."""
        before = {u: self.new_files(u) for u in ("alice", "bob")}
        mbox = os.path.join(self.inst.mail_dir, "carol", "mbox")
        marker = b"Delivered-To: carol@" + D.encode()

        def in_mbox():
            return read(mbox).count(marker) if os.path.exists(mbox) else 0

        mbox_before = in_mbox()
        rcpts = ["alice@" + D, "bob@" + D] * 6 + ["carol@" + D]
        with tempfile.TemporaryFile() as f:
            f.write(MESSAGE)
            f.flush()
            with pbx_ipc.Client(self.sock, DELIVERY, timeout=30) as c:
                ids = {}
                for rcpt in rcpts:
                    rid = LocalDeliveryTest.next_id
                    LocalDeliveryTest.next_id += 1
                    ids[rid] = rcpt
                    c.send("deliver", id=rid, queue_id="QBATCH%d" % rid,
                           sender="sender@example.net", message=f.fileno(), size=len(MESSAGE),
                           arrival=int(time.time()), rcpt=[rcpt], rcpt_orcpt=[""],
                           rcpt_notify=[0])
                results, done = {}, set()
                while len(done) < len(ids):
                    name, fields = c.recv(timeout=30)
                    self.assertIn(fields["id"], ids)
                    if name == "done":
                        done.add(fields["id"])
                    else:
                        self.assertEqual(name, "rcpt_result")
                        self.assertNotIn(fields["id"], results)
                        results[fields["id"]] = fields
        self.assertEqual(sorted(results), sorted(ids))
        for rid, fields in results.items():
            self.assertEqual(fields["status"], "sent", (ids[rid], fields))
        pids = set()
        for user in ("alice", "bob"):
            added = self.new_files(user) - before[user]
            self.assertEqual(len(added), 6, (user, added))
            for path in added:
                self.assertTrue(read(path).endswith(MESSAGE))
                pids.add(re.search(r"P(\d+)Q", os.path.basename(path)).group(1))
            self.assertEqual(os.listdir(os.path.join(self.inst.mail_dir, user, "Maildir", "tmp")),
                             [])
        self.assertEqual(len(pids), 1, pids)  # one worker for the uid's Maildir writes
        self.assertEqual(in_mbox(), mbox_before + 1)

    def test_unknown_user(self):
        r = self.deliver(["nobody-here@" + D, "bob@" + D])
        self.assertEqual(r[0]["status"], "failed")
        self.assertEqual(r[0]["dsn_status"], "5.1.1")
        self.assertEqual(r[1]["status"], "sent")

    def test_mbox(self):
        mbox = os.path.join(self.inst.mail_dir, "carol", "mbox")
        old = read(mbox) if os.path.exists(mbox) else b""
        r = self.deliver(["carol@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(r[0]["reply"], "250 2.0.0 delivered to mbox")
        data = read(mbox)[len(old):]
        self.assertRegex(data, rb"^From sender@example.net [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d "
                               rb"\d\d:\d\d:\d\d \d{4}\n")
        body = data.split(b"\n", 1)[1]
        self.assertTrue(body.startswith(b"Return-Path: <sender@example.net>\nDelivered-To: carol@"))
        self.assertIn(b"\n>From the body", body)
        self.assertIn(b"bytes \xc3\xa9 intact\n", body)
        self.assertTrue(body.endswith(b"\n\n"))
        self.assertNotIn(b"\r", body)
        st = os.stat(mbox)
        self.assertEqual(st.st_uid, pwd.getpwnam("pbx-vmail").pw_uid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertFalse(os.path.exists(mbox + ".lock"))

    def test_alias_pipe_and_loop(self):
        # (test_aliases.py covers commands, files, includes and .forward.)
        before = self.new_files("alice")
        r = self.deliver(["staff@" + D, "pipe@" + D, "loop1@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(len(self.new_files("alice") - before), 1)
        self.assertEqual(r[1]["status"], "sent", r)
        self.assertEqual(r[1]["reply"], "250 2.0.0 delivered to command")
        self.assertEqual(r[2]["status"], "failed")
        self.assertEqual(r[2]["dsn_status"], "5.4.6")

    def test_loop_detected(self):
        looped = b"Delivered-To: bob@" + D.encode() + b"\r\n" + MESSAGE
        before = self.new_files("bob")
        r = self.deliver(["bob@" + D], message=looped)
        self.assertEqual(r[0]["status"], "failed")
        self.assertEqual(r[0]["dsn_status"], "5.4.6")
        self.assertEqual(self.new_files("bob"), before)

    def test_slow_mailbox_does_not_block_others(self):
        # carol's mbox is locked (fcntl) by us: her delivery waits for the
        # lock in its child while alice's goes through at once.
        mbox = os.path.join(self.inst.mail_dir, "carol", "mbox")
        if not os.path.exists(mbox):
            self.deliver(["carol@" + D])
        with open(mbox, "ab") as locked, tempfile.TemporaryFile() as msg:
            fcntl.lockf(locked, fcntl.LOCK_EX)
            msg.write(MESSAGE)
            msg.flush()
            with pbx_ipc.Client(self.sock, DELIVERY, timeout=30) as slow:
                slow.send("deliver", id=999, queue_id="QSLOW", sender="s@example.net",
                          message=msg.fileno(), size=len(MESSAGE), arrival=int(time.time()),
                          rcpt=["carol@" + D], rcpt_orcpt=[""], rcpt_notify=[0])
                started = time.monotonic()
                r = self.deliver(["alice@" + D])
                self.assertEqual(r[0]["status"], "sent")
                self.assertLess(time.monotonic() - started, 10)
                fcntl.lockf(locked, fcntl.LOCK_UN)
                name, fields = slow.recv(timeout=30)
                self.assertEqual((name, fields["status"]), ("rcpt_result", "sent"), fields)
                self.assertEqual(slow.recv(timeout=30)[0], "done")

    def test_only_root_and_the_queue_manager_may_connect(self):
        smtpd = pwd.getpwnam("pbx-smtpd")
        auth_sock = os.path.join(self.inst.runtime_dir, "auth", "auth.sock")
        auth = pbx_ipc.load_protocol("auth")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgroups([])
                os.setgid(smtpd.pw_gid)
                os.setuid(smtpd.pw_uid)
                # authd answers resolve (mailbox paths, uids) to root only.
                with pbx_ipc.Client(auth_sock, auth, timeout=5) as c:
                    _, f = c.request("resolve", id=1, address="alice@" + D)
                    if f["status"] != "tempfail" or "user" in f:
                        os._exit(4)
                try:
                    with pbx_ipc.Client(self.sock, DELIVERY, timeout=5) as c:
                        c.recv(timeout=5)
                    code = 0
                except (EOFError, OSError, pbx_ipc.DecodeError):
                    code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 3)

    def test_privileges(self):
        pid = self.inst.wait_for_child("local-delivery")
        st = harness.proc_status(pid)
        self.assertEqual(st["CapEff"], "00000000000000c0")
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(st["Uid"].split()[0], "0")


if __name__ == "__main__":
    unittest.main()
