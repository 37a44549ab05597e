"""queue-manager end to end: enqueue over queue/enqueue.sock (as root and as
a local user), the files of the commit protocol, `pillarbox queue`
list/show/hold/release/delete/flush, group commit with 20 concurrent
sessions, recovery after kill -9 during a burst, maildrop pickup of a valid
and of hostile files, and the process's privileges (issue: queue-manager)."""

import grp
import json
import os
import pwd
import re
import signal
import subprocess
import threading
import time
import unittest

import harness
import pbx_ipc
from harness import Instance

QUEUE = pbx_ipc.load_protocol("queue")
NOBODY = pwd.getpwnam("nobody")
NO_CAPS = "0000000000000000"

# A message with 8-bit bytes and a line that looks like a header: the queue
# must store it byte for byte after its own Received: line.
MESSAGE = (b"From: <alice@example.net>\r\n"
           b"To: <bob@example.org>\r\n"
           b"Subject: queue test\r\n"
           b"\r\n"
           b"caf\xc3\xa9 \xff\x00 bytes intact\r\n"
           b"Received: not a header, a body line\r\n"
           b".\r\n"
           b"..\r\n")

SMTP_BEGIN = {"origin": "smtp", "protocol": "ESMTPS", "client_address": "192.0.2.7",
              "client_hostname": "client.example.net", "helo": "helo.example.net",
              "tls": "TLSv1.3 TLS_AES_256_GCM_SHA384"}


def new_queue_id(tag=1):
    return "%014x%06x" % (int(time.time() * 1e6), tag)


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def envelope(path):
    """The envelope as {key: value} (xtext left as is) plus "rcpt": [lines]."""
    out = {"rcpt": []}
    lines = read(path, "r").split("\n")
    assert lines[0] == "pillarbox-envelope 1", lines[0]
    assert lines[-2:] == ["end", ""], lines[-2:]
    for line in lines[1:-2]:
        k, _, v = line.partition(": ")
        if k == "rcpt":
            out["rcpt"].append(v)
        else:
            out[k] = v
    return out


def enqueue(sock, sender, rcpts, data, begin=None, chunk=65536, timeout=30):
    """One transaction; returns (reply name, fields)."""
    with pbx_ipc.Client(sock, QUEUE, timeout=timeout) as c:
        fields = {"origin": "smtp", "sender": sender, "protocol": "ESMTP"}
        fields.update(begin or {})
        c.send("begin", **fields)
        for r in rcpts:
            c.send("rcpt", address=r)
        for i in range(0, len(data), chunk):
            c.send("data", bytes=data[i:i + chunk])
        c.send("commit")
        return c.recv(timeout)


def as_user(pw, fn):
    """Runs fn() in a child process with pw's uid and gid; returns its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            out = json.dumps(fn()).encode()
        except BaseException as e:  # reported to the parent
            out = json.dumps({"exception": repr(e)}).encode()
            status = 1
        os.write(w, out)
        os._exit(status)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def no_agents():
    """Config for a queue-manager alone: no listeners, no agents, no authd."""
    config = {key: "" for key, _ in harness.LISTENERS.values()}
    config.update({"local_delivery_enable": "no", "remote_delivery_enable": "no",
                   "authd_enable": "no"})
    return config


@unittest.skipUnless(harness.program("queue-manager") and harness.program("pillarbox"),
                     "queue-manager or pillarbox is not built")
class QueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = no_agents()
        config["message_size_limit"] = "1M"
        cls.inst = Instance(config=config, args=["-d"])
        inst = cls.inst
        cls.sock = os.path.join(inst.runtime_dir, "queue", "enqueue.sock")
        inst.wait_for_child("queue-manager")
        inst.wait_for_log(r"queue-manager.*listening on", timeout=15)
        cls.q = os.path.join(inst.spool_dir, "queue")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.inst.stop()
        finally:
            cls.inst.cleanup()

    def path(self, *parts):
        return os.path.join(self.inst.spool_dir, *parts)

    def queued(self, reply):
        name, fields = reply
        self.assertEqual(name, "queued", fields)
        qid = fields["queue_id"]
        self.assertRegex(qid, r"^[0-9a-f]{20}$")
        return qid

    # ---- enqueue -------------------------------------------------------------

    def test_enqueue_as_root_writes_both_files(self):
        qid = self.queued(enqueue(self.sock, "alice@example.net",
                                  ["bob@example.org", "carol@example.org"], MESSAGE,
                                  begin=SMTP_BEGIN, chunk=7))
        msg = read(self.path("queue", qid + ".msg"))
        received, sep, rest = msg.partition(b";\r\n\t")
        self.assertTrue(received.startswith(
            b"Received: from helo.example.net (client.example.net [192.0.2.7])\r\n"
            b"\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n"
            b"\tby mail.example.test (Pillarbox) with ESMTPS id " + qid.encode()), msg[:300])
        date_line, _, body = rest.partition(b"\r\n")
        self.assertRegex(date_line.decode(), r"^\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
        self.assertEqual(body, MESSAGE)

        env = envelope(self.path("queue", qid + ".env"))
        self.assertEqual(env["id"], qid)
        self.assertEqual(env["sender"], "alice@example.net")
        self.assertEqual(env["origin"], "smtp")
        self.assertEqual(env["client-address"], "192.0.2.7")
        self.assertEqual(env["helo"], "helo.example.net")
        self.assertEqual(int(env["size"]), len(msg))
        self.assertEqual(len(env["rcpt"]), 2)
        self.assertTrue(env["rcpt"][0].startswith("to=bob@example.org state=pending"))

        st = os.stat(self.path("queue", qid + ".msg"))
        self.assertEqual(st.st_uid, pwd.getpwnam("pbx-queue").pw_uid)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(self.path("incoming")), [])
        self.inst.wait_for_log(
            qid + r": from=<alice@example\.net>, size=%d, nrcpt=2, "
            r"client=client\.example\.net\[192\.0\.2\.7\]" % len(msg))

    def test_local_user_submission(self):
        sock = self.sock

        def submit(sender):
            return list(enqueue(sock, sender, ["bob@example.org"], b"Subject: x\r\n\r\nhi\r\n",
                                begin={"origin": "smtp", "client_address": "203.0.113.9",
                                       "helo": "forged.example"}))

        name, fields = as_user(NOBODY, lambda: submit("nobody"))
        self.assertEqual(name, "queued", fields)
        qid = fields["queue_id"]
        msg = read(self.path("queue", qid + ".msg"))
        self.assertTrue(msg.startswith(
            b"Received: by mail.example.test (Pillarbox, from userid %d)\r\n\tid %s; "
            % (NOBODY.pw_uid, qid.encode())), msg[:200])
        env = envelope(self.path("queue", qid + ".env"))
        self.assertEqual(env["origin"], "sendmail")
        self.assertEqual(env["uid"], str(NOBODY.pw_uid))
        self.assertEqual(env["sender"], "nobody@mail.example.test")
        self.assertEqual(env["protocol"], "local")
        self.assertEqual(env.get("client-address", ""), "")
        self.assertEqual(env.get("helo", ""), "")
        self.inst.wait_for_log(qid + r": from=<nobody@mail\.example\.test>, size=\d+, nrcpt=1, "
                               r"uid=%d" % NOBODY.pw_uid)

        name, fields = as_user(NOBODY, lambda: submit("postmaster@example.test"))
        self.assertEqual(name, "failed")
        self.assertEqual(fields["temporary"], 0)
        self.assertTrue(fields["text"].startswith("5.7.1"), fields)

    def test_abort_and_dropped_client_leave_nothing(self):
        with pbx_ipc.Client(self.sock, QUEUE) as c:
            c.send("begin", origin="smtp", sender="a@example.net", protocol="ESMTP")
            c.send("rcpt", address="bob@example.org")
            c.send("data", bytes=b"x" * 100000)
            c.send("abort")
            # The connection stays usable: the next transaction commits.
            c.send("begin", origin="smtp", sender="a@example.net", protocol="ESMTP")
            c.send("rcpt", address="bob@example.org")
            c.send("data", bytes=b"Subject: second\r\n\r\n")
            c.send("commit")
            name, fields = c.recv(30)
            self.assertEqual(name, "queued")
        c = pbx_ipc.Client(self.sock, QUEUE)
        c.send("begin", origin="smtp", sender="a@example.net", protocol="ESMTP")
        c.send("rcpt", address="bob@example.org")
        c.send("data", bytes=b"y" * 100000)
        deadline = time.monotonic() + 10
        while not os.listdir(self.path("incoming")) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(os.listdir(self.path("incoming"))), 1)
        c.close()
        while os.listdir(self.path("incoming")) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(os.listdir(self.path("incoming")), [])

    def test_protocol_error_closes_the_connection(self):
        with pbx_ipc.Client(self.sock, QUEUE) as c:
            c.send("rcpt", address="bob@example.org")  # no begin
            with self.assertRaises(Exception):
                c.recv(10)
        self.inst.wait_for_log(r"protocol error from uid 0 .*unexpected 'rcpt'")

    def test_group_commit_with_20_sessions(self):
        results = [None] * 20
        errors = []

        def one(i):
            try:
                results[i] = enqueue(self.sock, "s%d@example.net" % i, ["bob@example.org"],
                                     MESSAGE * 50, begin=SMTP_BEGIN)
            except Exception as e:  # reported below
                errors.append(repr(e))

        start = len(self.inst.log_text())
        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        ids = [self.queued(r) for r in results]
        self.assertEqual(len(set(ids)), 20)
        for qid in ids:
            self.assertTrue(os.path.exists(self.path("queue", qid + ".env")))
        # The debug log names each wave's size; 20 overlapping commits cannot
        # have needed 20 waves of one.
        self.inst.wait_for_log(r"commit wave of \d+", start=start)
        waves = [int(n) for n in re.findall(r"commit wave of (\d+) message",
                                              self.inst.log_text()[start:])]
        self.assertEqual(sum(waves), 20, waves)
        self.assertGreater(max(waves), 1, waves)

    def test_sessions_per_local_user_are_limited(self):
        sock = self.sock

        def open_many():
            clients, served, refused = [], 0, 0
            for _ in range(12):
                try:  # a refused client is closed before or after the hellos
                    c = pbx_ipc.Client(sock, QUEUE)
                    clients.append(c)
                    c.send("admin", op="list")
                    c.recv(10)
                    served += 1
                except Exception:
                    refused += 1
            for c in clients:
                c.close()
            return [served, refused]

        self.assertEqual(as_user(NOBODY, open_many), [10, 2])
        self.inst.wait_for_log(r"enqueue: uid %d has 10 sessions already; refused" % NOBODY.pw_uid)

    def test_oversize_message_is_refused(self):
        # message_size_limit is 1M here; the queue allows 64k of slack on top.
        name, fields = enqueue(self.sock, "a@example.net", ["bob@example.org"],
                               b"x" * (1024 * 1024 + 64 * 1024 + 10), chunk=256 * 1024)
        self.assertEqual(name, "failed")
        self.assertEqual(fields["temporary"], 0)
        self.assertTrue(fields["text"].startswith("5.3.4"), fields)
        self.assertEqual(os.listdir(self.path("incoming")), [])

    # ---- administration ------------------------------------------------------

    def test_admin_list_show_hold_release_delete(self):
        a = self.queued(enqueue(self.sock, "list-a@example.net", ["x1@example.org"], MESSAGE))
        b = self.queued(enqueue(self.sock, "", ["x2@example.org", "x3@example.org"], MESSAGE))
        r = self.inst.tool("queue", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("-Queue ID-"), lines[0])
        self.assertRegex(r.stdout, r"(?m)^%s[ *] +\d+ +\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d  "
                                   r"list-a@example\.net$" % a)
        self.assertRegex(r.stdout, r"(?m)^%s[ *] .*  MAILER-DAEMON$" % b)
        self.assertRegex(r.stdout, r"(?m)^ {53}x3@example\.org$")
        self.assertRegex(lines[-1], r"^-- \d+ Kbytes in \d+ Requests?\.$")

        r = self.inst.tool("queue", "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        entries = {e["queue_id"]: e for e in map(json.loads, r.stdout.splitlines())}
        self.assertEqual(entries[b]["sender"], "")
        self.assertEqual([x["address"] for x in entries[b]["recipients"]],
                         ["x2@example.org", "x3@example.org"])

        # Any user may list; only root may do the rest.
        tool = harness.reachable_program(harness.program("pillarbox"))
        env = dict(os.environ, PBX_CONFIG=self.inst.conf_path)
        r = subprocess.run([tool, "queue", "list"], env=env, capture_output=True, text=True,
                           user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(a, r.stdout)
        r = subprocess.run([tool, "queue", "show", a], env=env, capture_output=True, text=True,
                           user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[])
        self.assertEqual(r.returncode, 1)
        self.assertIn("permission denied", r.stderr)

        r = self.inst.tool("queue", "show", a)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("id: %s\n" % a, r.stdout)
        self.assertIn("sender: <list-a@example.net>\n", r.stdout)
        self.assertIn("recipient: <x1@example.org>\n  state: pending\n", r.stdout)
        self.assertIn("  next-attempt: ", r.stdout)
        r = self.inst.tool("queue", "show", a, "--json")
        self.assertEqual(json.loads(r.stdout)["queue_id"], a)
        r = self.inst.tool("queue", "show", "0123")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a queue ID", r.stderr)

        r = self.inst.tool("queue", "hold", a)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(self.path("hold", a + ".env")))
        self.assertFalse(os.path.exists(self.path("queue", a + ".env")))
        self.assertTrue(os.path.exists(self.path("queue", a + ".msg")))
        self.assertRegex(self.inst.tool("queue", "list").stdout, r"(?m)^%s! " % a)
        self.assertEqual(self.inst.tool("queue", "hold", a).returncode, 1)

        r = self.inst.tool("queue", "release", a)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(self.path("queue", a + ".env")))
        self.assertFalse(os.path.exists(self.path("hold", a + ".env")))

        r = self.inst.tool("queue", "flush")
        self.assertEqual(r.returncode, 0, r.stderr)

        r = self.inst.tool("queue", "delete", a, b)
        self.assertEqual(r.returncode, 0, r.stderr)
        for qid in (a, b):
            for suffix in (".msg", ".env"):
                self.assertFalse(os.path.exists(self.path("queue", qid + suffix)))
        self.assertNotIn(a, self.inst.tool("queue", "list").stdout)
        self.inst.wait_for_log(a + r": removed \(deleted by uid 0\)")
        self.assertEqual(self.inst.tool("queue", "delete", a).returncode, 1)
        self.assertEqual(self.inst.tool("queue", "bogus").returncode, 2)

    def test_mail_waits_for_disabled_agents(self):
        # local_delivery_enable = no: the mail stays queued, never offered to
        # an agent (test_local_delivery_through_the_agent: one that is only
        # starting is asked again within a second).
        qid = self.queued(enqueue(self.sock, "a@example.net", ["bob@example.test"], MESSAGE))
        self.inst.wait_for_log(qid + r": local delivery is disabled in the configuration; "
                               r"the mail stays queued")
        r = self.inst.tool("queue", "list")
        self.assertIn("(local delivery is disabled in the configuration", r.stdout)
        env = envelope(self.path("queue", qid + ".env"))
        self.assertIn("attempts=0", env["rcpt"][0])

    # ---- maildrop ------------------------------------------------------------

    def drop(self, name, text, uid):
        tmp = self.path("maildrop", name + ".tmp.1.1")
        with open(tmp, "wb") as f:
            f.write(text)
        os.chown(tmp, uid, -1)
        os.chmod(tmp, 0o444)
        os.rename(tmp, self.path("maildrop", name))

    def test_maildrop_pickup(self):
        body = b"Subject: dropped\n\nwritten while the queue was down\n"
        good = new_queue_id(11)
        self.drop(good, b"pillarbox-maildrop 1\nuid: %d\ntime: %d\nsender: nobody\n"
                        b"rcpt: bob@example.org\nsize: %d\n%send\n"
                  % (NOBODY.pw_uid, int(time.time()), len(body), body), NOBODY.pw_uid)
        m = self.inst.wait_for_log(r"(\w{20}): picked up maildrop/" + good)
        qid = m.group(1)
        self.assertFalse(os.path.exists(self.path("maildrop", good)))
        env = envelope(self.path("queue", qid + ".env"))
        self.assertEqual(env["origin"], "sendmail")
        self.assertEqual(env["uid"], str(NOBODY.pw_uid))
        self.assertEqual(env["sender"], "nobody@mail.example.test")
        msg = read(self.path("queue", qid + ".msg"))
        self.assertTrue(msg.endswith(b"Subject: dropped\r\n\r\nwritten while the queue was down\r\n"))

        hostile = {
            new_queue_id(12): (b"pillarbox-maildrop 1\nuid: 0\ntime: 1\nsender: root\n"
                               b"rcpt: bob@example.org\nsize: 2\nhiend\n", NOBODY.pw_uid),
            new_queue_id(13): (b"pillarbox-maildrop 1\nuid: 65534\ntime: 1\nsender: nobody\n"
                               b"rcpt: bob@example.org\nsize: 999999\nshort\nend\n",
                               NOBODY.pw_uid),
            new_queue_id(14): (b"\x00\xff garbage \n" * 100, NOBODY.pw_uid),
            new_queue_id(15): (b"pillarbox-maildrop 1\nuid: 65534\ntime: 1\n"
                               b"sender: someone@else.example\nrcpt: bob@example.org\n"
                               b"size: 2\nhiend\n", NOBODY.pw_uid),
            "not-a-queue-id": (b"whatever", NOBODY.pw_uid),
        }
        for name, (text, uid) in hostile.items():
            self.drop(name, text, uid)
        for name in hostile:
            self.inst.wait_for_log(r"maildrop/%s: .*moved to corrupt/%s" % (re.escape(name),
                                                                           re.escape(name)))
            self.assertTrue(os.path.exists(self.path("corrupt", name)), name)
            self.assertFalse(os.path.exists(self.path("maildrop", name)), name)

    # ---- privileges ----------------------------------------------------------

    def test_privileges(self):
        pid = self.inst.wait_for_child("queue-manager")
        st = self.inst.proc_status(pid)
        uid = pwd.getpwnam("pbx-queue").pw_uid
        self.assertEqual(st["Uid"].split(), [str(uid)] * 4)
        self.assertEqual(st["CapEff"], NO_CAPS)
        self.assertEqual(st["CapPrm"], NO_CAPS)
        self.assertEqual(st["NoNewPrivs"], "1")
        sock = os.stat(self.sock)
        self.assertEqual(sock.st_mode & 0o777, 0o666)
        spool = os.stat(self.inst.spool_dir)
        self.assertEqual(spool.st_mode & 0o7777, 0o710)
        self.assertEqual(os.stat(self.path("maildrop")).st_mode & 0o7777, 0o1730)
        self.assertEqual(os.stat(self.path("maildrop")).st_gid, grp.getgrnam("pbx-drop").gr_gid)


@unittest.skipUnless(harness.program("queue-manager"), "queue-manager is not built")
class QueueRecoveryTest(unittest.TestCase):
    def test_kill_9_during_a_burst(self):
        with Instance(config=no_agents()) as inst:
            sock = os.path.join(inst.runtime_dir, "queue", "enqueue.sock")
            old = inst.wait_for_child("queue-manager")
            inst.wait_for_log(r"queue-manager.*listening on", timeout=15)
            q = os.path.join(inst.spool_dir, "queue")
            pbx = pwd.getpwnam("pbx-queue")

            # Orphans for recovery to find at the restart.
            orphan = new_queue_id(21)
            bad = new_queue_id(22)
            for name, data in ((orphan + ".msg", b"no envelope"),
                               (bad + ".msg", b"m"), (bad + ".env", b"pillarbox-envelope 1\n")):
                p = os.path.join(q, name)
                with open(p, "wb") as f:
                    f.write(data)
                os.chown(p, pbx.pw_uid, pbx.pw_gid)

            queued, stop = [], threading.Event()

            def burst(i):
                n = 0
                while not stop.is_set():
                    try:
                        name, fields = enqueue(sock, "b%d@example.net" % i, ["bob@example.org"],
                                               MESSAGE * 20, begin=SMTP_BEGIN, timeout=10)
                        if name == "queued":
                            queued.append(fields["queue_id"])
                    except Exception:  # the kill interrupts some transactions
                        time.sleep(0.05)
                    n += 1

            threads = [threading.Thread(target=burst, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 20
            while len(queued) < 30 and time.monotonic() < deadline:
                time.sleep(0.01)
            # A message whose recipients were all done when the process died.
            done = new_queue_id(23)
            src = queued[0]
            with open(os.path.join(q, src + ".msg"), "rb") as f:
                msg_bytes = f.read()
            env_text = read(os.path.join(q, src + ".env"), "r")
            env_text = env_text.replace("id: " + src, "id: " + done)
            env_text = env_text.replace("state=pending", "state=delivered")
            for name, data in ((done + ".msg", msg_bytes), (done + ".env", env_text.encode())):
                p = os.path.join(q, name)
                with open(p, "wb") as f:
                    f.write(data)
                os.chown(p, pbx.pw_uid, pbx.pw_gid)

            log_mark = len(inst.log_text())
            os.kill(old, signal.SIGKILL)
            before_kill = list(queued)
            time.sleep(0.3)
            stop.set()
            for t in threads:
                t.join(30)
            self.assertGreater(len(before_kill), 0)

            deadline = time.monotonic() + 30
            new = old
            while new == old and time.monotonic() < deadline:
                new = inst.children().get("queue-manager", old)
                time.sleep(0.05)
            self.assertNotEqual(new, old)
            inst.wait_for_log(r"recovery: \d+ message\(s\) in the queue", start=log_mark,
                              timeout=30)
            inst.wait_for_log(r"listening on", start=log_mark, timeout=30)

            for qid in queued:
                for suffix in (".msg", ".env"):
                    self.assertTrue(os.path.exists(os.path.join(q, qid + suffix)),
                                    "%s%s acknowledged but missing" % (qid, suffix))
                self.assertEqual(envelope(os.path.join(q, qid + ".env"))["id"], qid)
            self.assertEqual(os.listdir(os.path.join(inst.spool_dir, "incoming")), [])
            names = os.listdir(q)
            for n in names:  # every message has its envelope and vice versa
                stem, ext = n.rsplit(".", 1)
                other = stem + (".env" if ext == "msg" else ".msg")
                self.assertIn(other, names, n)
            corrupt = sorted(os.listdir(os.path.join(inst.spool_dir, "corrupt")))
            planted = {orphan + ".msg", bad + ".env", bad + ".msg"}
            self.assertTrue(planted <= set(corrupt), corrupt)
            # Besides them, only messages the kill caught between their rename
            # into queue/ and their envelope: never acknowledged.
            for name in set(corrupt) - planted:
                self.assertTrue(name.endswith(".msg"), name)
                self.assertNotIn(name[:-4], queued)
            inst.wait_for_log(done + r": removed \(finished before the restart\)", start=log_mark)
            self.assertFalse(os.path.exists(os.path.join(q, done + ".msg")))
            inst.wait_for_log(r"recovery: moved queue/%s\.msg to corrupt/%s\.msg: message "
                              r"without envelope" % (orphan, orphan), start=log_mark)
            # The restarted queue-manager knows every message on disk.
            r = inst.tool("queue", "list", "--json")
            listed = {json.loads(l)["queue_id"] for l in r.stdout.splitlines()}
            self.assertTrue(set(queued) <= listed)
            self.assertEqual(len(listed), len(names) // 2)


@unittest.skipUnless(harness.program("queue-manager") and harness.program("local-delivery")
                     and harness.program("authd"), "queue-manager, local-delivery or authd missing")
class QueueDeliveryTest(unittest.TestCase):
    def test_local_delivery_through_the_agent(self):
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config["remote_delivery_enable"] = "no"
        with Instance(config=config) as inst:
            sock = os.path.join(inst.runtime_dir, "queue", "enqueue.sock")
            inst.wait_for_child("queue-manager")
            inst.wait_for_log(r"queue-manager.*listening on", timeout=15)
            name, fields = enqueue(sock, "sender@example.net",
                                   ["alice@example.test", "nosuchuser@example.test"], MESSAGE,
                                   begin=SMTP_BEGIN)
            self.assertEqual(name, "queued", fields)
            qid = fields["queue_id"]
            inst.wait_for_log(qid + r": to=<alice@example\.test>, relay=\S+, delay=\d+, "
                              r"status=sent", timeout=30)
            inst.wait_for_log(qid + r": to=<nosuchuser@example\.test>, .*status=bounced",
                              timeout=30)
            inst.wait_for_log(qid + r": removed", timeout=30)
            self.assertFalse(os.path.exists(os.path.join(inst.spool_dir, "queue", qid + ".msg")))
            self.assertFalse(os.path.exists(os.path.join(inst.spool_dir, "queue", qid + ".env")))
            msgs = inst.maildir_messages("alice")
            self.assertEqual(len(msgs), 1)
            data = read(msgs[0])
            self.assertIn(b"Received: from helo.example.net (client.example.net [192.0.2.7])",
                          data)
            self.assertIn(b"id " + qid.encode(), data)
            self.assertTrue(data.endswith(MESSAGE), data[-200:])

    def test_kill_9_of_local_delivery_during_a_burst(self):
        # local-delivery's mailbox writes run in pooled per-user workers. A
        # kill -9 of its parent mid-burst loses nothing: every message ends
        # in alice's Maildir, and a copy is doubled only where a write was
        # cut (at most one per delivery in flight, local_delivery_concurrency).
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config.update({"remote_delivery_enable": "no", "minimal_backoff_time": "1s",
                       "maximal_backoff_time": "2s", "local_delivery_concurrency": "8"})
        with Instance(config=config) as inst:
            sock = os.path.join(inst.runtime_dir, "queue", "enqueue.sock")
            inst.wait_for_child("queue-manager")
            old = inst.wait_for_child("local-delivery")
            inst.wait_for_log(r"queue-manager.*listening on", timeout=15)
            total = 80
            queued, errors = [], []

            def burst():
                for i in range(total):
                    data = b"Subject: burst %d\r\n" % i + MESSAGE
                    try:
                        name, fields = enqueue(sock, "sender@example.net",
                                               ["alice@example.test"], data, begin=SMTP_BEGIN)
                        if name == "queued":
                            queued.append((i, fields["queue_id"]))
                        else:
                            errors.append(fields)
                    except Exception as e:  # nothing here should fail
                        errors.append(repr(e))

            t = threading.Thread(target=burst)
            t.start()
            deadline = time.monotonic() + 60 * harness._scale()
            new_dir = os.path.join(inst.mail_dir, "alice", "Maildir", "new")
            while time.monotonic() < deadline:
                if os.path.isdir(new_dir) and len(os.listdir(new_dir)) >= 10:
                    break
                time.sleep(0.01)
            log_mark = len(inst.log_text())
            os.kill(old, signal.SIGKILL)
            t.join(60)
            self.assertEqual(errors, [])
            self.assertEqual(len(queued), total)
            inst.wait_for_log(r"local-delivery: pid %d died \(signal 9" % old, start=log_mark)
            for _i, qid in queued:
                inst.wait_for_log(qid + r": removed", timeout=60)
            copies = {}
            for path in inst.maildir_messages("alice"):
                m = re.search(rb"^Subject: burst (\d+)\r?$", read(path), re.M)
                self.assertIsNotNone(m, path)
                copies[int(m.group(1))] = copies.get(int(m.group(1)), 0) + 1
            self.assertEqual(sorted(copies), list(range(total)))
            self.assertLessEqual(sum(n - 1 for n in copies.values()), 8, copies)
            self.assertEqual(os.listdir(os.path.join(inst.spool_dir, "queue")), [])
            # The old parent's workers are gone (they exit at the end of
            # their channel); the new parent's answer to the next delivery.
            name, fields = enqueue(sock, "sender@example.net", ["alice@example.test"],
                                   b"Subject: after\r\n" + MESSAGE, begin=SMTP_BEGIN)
            self.assertEqual(name, "queued", fields)
            inst.wait_for_log(fields["queue_id"] + r": removed", timeout=30)


if __name__ == "__main__":
    unittest.main()
