"""Aliases, ~/.forward, pipes and files end to end (issue: local delivery):
real system users made with useradd (removed afterwards), a real master
with authd, local-delivery and the queue-manager (forwarded copies go back
through the queue). Deliver requests are sent to local/local.sock as root,
like test_local_delivery.py, so each result is seen directly.

Checked: aliases to lists; |command as default_privs (nobody) with a clean
environment and the message on stdin; /file as mbox; :include: files;
commands refused from a group-writable aliases file or a user's include
file; mbox delivery for a system user in /var/mail; ~/.forward with \\user,
a command run as the user (the file it creates is theirs) and an address
re-submitted through the queue; a group-writable .forward ignored and
logged; a command exiting 75 defers and later succeeds; exit 1 fails with
the command's output in the reply (also through the queue-manager: 75 is
retried until it succeeds, 1 is final); forwarding to a remote address
queues a new copy with the original sender and Delivered-To; a slow command
does not hold up other recipients."""

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

import harness
import pbx_ipc
from harness import Instance

DELIVERY = pbx_ipc.load_protocol("delivery")
QUEUE = pbx_ipc.load_protocol("queue")
D = harness.DOMAIN
SAM = "pbxt-sam"   # has a .forward
KIM = "pbxt-kim"   # plain mbox in /var/mail
MESSAGE = (b"From: <sender@example.net>\r\n"
           b"Subject: alias test\r\n"
           b"\r\n"
           b"body line\r\n"
           b"From here, mbox quotes\r\n")

RECORD = """#!/bin/sh
# record TAG: proves who ran, with which environment and input.
out=%(out)s/$1
id -u > "$out.uid"
env | sort > "$out.env"
cat > "$out.in"
"""

SLOW = """#!/bin/sh
# waits (at most 15 s) for the flag file, like a command stuck on a lock.
cat > /dev/null
i=0
while [ ! -e %(out)s/slow-go ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
echo slow done
"""

DEFER = """#!/bin/sh
# exit 75 (EX_TEMPFAIL) until the flag file exists.
cat > /dev/null
if [ -e %(out)s/defer-ok ]; then echo ok > %(out)s/deferred-delivered; exit 0; fi
echo "not yet, try later"
exit 75
"""


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def remove_user(name):
    subprocess.run(["userdel", "-f", name], capture_output=True)
    for p in ("/var/mail/" + name, "/var/mail/" + name + ".lock"):
        if os.path.exists(p):
            os.unlink(p)


@unittest.skipUnless(harness.program("local-delivery") and harness.program("authd")
                     and harness.program("queue-manager") and shutil.which("useradd"),
                     "local-delivery, authd, queue-manager or useradd missing")
class AliasesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config.update({"remote_delivery_enable": "no", "system_users": "yes",
                       "command_time_limit": "20s"})
        cls.inst = inst = Instance(config=config, start=False)
        cls.users = {}
        try:
            cls._setup_files()
            inst.start()
        except BaseException:
            cls._teardown()
            raise
        cls.sock = os.path.join(inst.runtime_dir, "local", "local.sock")
        for prog in ("authd", "queue-manager", "local-delivery"):
            inst.wait_for_log(r"%s\[\d+\]: listening on" % prog, timeout=15)

    @classmethod
    def _setup_files(cls):
        inst = cls.inst
        home_root = os.path.join(inst.dir, "home")
        os.mkdir(home_root, 0o755)
        for name in (SAM, KIM):
            remove_user(name)
            home = os.path.join(home_root, name)
            subprocess.run(["useradd", "-M", "-U", "-d", home, "-s", "/bin/sh", name],
                           check=True, capture_output=True)
            pw = pwd.getpwnam(name)
            assert pw.pw_uid >= 1000, pw
            os.mkdir(home, 0o755)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            cls.users[name] = pw
        cls.out = os.path.join(inst.dir, "out")
        os.mkdir(cls.out)
        os.chmod(cls.out, 0o1777)
        bindir = os.path.join(inst.dir, "bin")
        os.mkdir(bindir, 0o755)
        cls.record = os.path.join(bindir, "record")
        cls.defer = os.path.join(bindir, "defer")
        cls.slow = os.path.join(bindir, "slow")
        for path, text in ((cls.record, RECORD), (cls.defer, DEFER), (cls.slow, SLOW)):
            with open(path, "w") as f:
                f.write(text % {"out": cls.out})
            os.chmod(path, 0o755)
        # A directory nobody (default_privs) may write: /file targets of aliases.
        nobody = pwd.getpwnam("nobody")
        cls.files = os.path.join(inst.dir, "files")
        os.mkdir(cls.files, 0o755)
        os.chown(cls.files, nobody.pw_uid, nobody.pw_gid)
        cls.staff_list = os.path.join(inst.dir, "staff.list")
        with open(cls.staff_list, "w") as f:
            f.write("# included\nalice\n\"|%s include\"\n" % cls.record)
        os.chmod(cls.staff_list, 0o644)
        cls.unsafe_list = os.path.join(inst.dir, "unsafe.list")
        with open(cls.unsafe_list, "w") as f:
            f.write("alice, \"|%s unsafe\"\n" % cls.record)
        os.chown(cls.unsafe_list, cls.users[SAM].pw_uid, cls.users[SAM].pw_gid)
        os.chmod(cls.unsafe_list, 0o644)
        with open(os.path.join(inst.dir, "aliases"), "a") as f:
            f.write("team: alice, bob\n"
                    "piper: \"|%(record)s piper\"\n"
                    "tofile: %(files)s/archive\n"
                    "defer: \"|%(defer)s\"\n"
                    "slow: \"|%(slow)s\"\n"
                    "fail: \"|echo 'mailing list closed'; echo second line >&2; exit 1\"\n"
                    "remote: alice, far@elsewhere.example\n"
                    "incl: :include:%(staff)s\n"
                    "badincl: :include:%(unsafe)s\n"
                    "tosam: %(sam)s\n" % {"record": cls.record, "files": cls.files,
                                          "defer": cls.defer, "slow": cls.slow, "staff": cls.staff_list,
                                          "unsafe": cls.unsafe_list, "sam": SAM})

    @classmethod
    def _teardown(cls):
        try:
            if cls.inst.process:
                cls.inst.stop()
        finally:
            cls.inst.cleanup()
            for name in (SAM, KIM):
                remove_user(name)

    @classmethod
    def tearDownClass(cls):
        cls._teardown()

    next_id = 1

    def deliver(self, rcpts, message=MESSAGE, sender="sender@example.net"):
        """One deliver request; returns {index: rcpt_result fields}."""
        with tempfile.TemporaryFile() as f:
            f.write(message)
            f.flush()
            rid = AliasesTest.next_id
            AliasesTest.next_id += 1
            with pbx_ipc.Client(self.sock, DELIVERY, timeout=60) as c:
                c.send("deliver", id=rid, queue_id="QALIAS%d" % rid, sender=sender,
                       message=f.fileno(), size=len(message), arrival=int(time.time()),
                       rcpt=list(rcpts), rcpt_orcpt=[""] * len(rcpts),
                       rcpt_notify=[0] * len(rcpts))
                results = {}
                while True:
                    name, fields = c.recv(timeout=60)
                    if name == "done":
                        break
                    results[fields["index"]] = fields
        self.assertEqual(sorted(results), list(range(len(rcpts))))
        return results

    def maildir(self, user):
        return set(self.inst.maildir_messages(user))

    def wait_for(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        self.fail("timed out waiting")

    def write_forward(self, user, text, mode=0o644):
        pw = self.users[user]
        path = os.path.join(pw.pw_dir, ".forward")
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, mode)
        return path

    # ---- aliases -------------------------------------------------------------

    def test_alias_to_a_list(self):
        a, b = self.maildir("alice"), self.maildir("bob")
        r = self.deliver(["team@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(len(self.maildir("alice") - a), 1)
        self.assertEqual(len(self.maildir("bob") - b), 1)

    def test_alias_to_a_pipe_runs_as_nobody_with_a_clean_environment(self):
        r = self.deliver(["Piper+ext@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(r[0]["reply"], "250 2.0.0 delivered to command")
        base = os.path.join(self.out, "piper")
        nobody = pwd.getpwnam("nobody")
        self.assertEqual(read(base + ".uid", "r").strip(), str(nobody.pw_uid))
        self.assertEqual(os.stat(base + ".in").st_uid, nobody.pw_uid)
        env = dict(line.split("=", 1) for line in read(base + ".env", "r").splitlines())
        self.assertEqual(env["SENDER"], "sender@example.net")
        self.assertEqual(env["RECIPIENT"], "Piper+ext@" + D)
        self.assertEqual(env["LOCAL"], "Piper+ext")
        self.assertEqual(env["EXTENSION"], "ext")
        self.assertEqual(env["DOMAIN"], D)
        self.assertEqual(env["USER"], "nobody")
        self.assertEqual(env["LOGNAME"], "nobody")
        self.assertEqual(env["HOME"], nobody.pw_dir)
        self.assertEqual(env["PATH"], "/usr/bin:/bin")
        self.assertEqual(env["SHELL"], "/bin/sh")
        # Nothing of the daemon's environment leaks (sh adds PWD and SHLVL).
        self.assertEqual(set(env) - {"PWD", "SHLVL", "_", "OLDPWD"},
                         {"SENDER", "RECIPIENT", "LOCAL", "EXTENSION", "DOMAIN", "USER",
                          "LOGNAME", "HOME", "PATH", "SHELL"})
        data = read(base + ".in")
        self.assertEqual(data, b"Return-Path: <sender@example.net>\nDelivered-To: Piper+ext@"
                         + D.encode() + b"\n" + MESSAGE.replace(b"\r\n", b"\n"))

    def test_alias_to_a_file(self):
        path = os.path.join(self.files, "archive")
        old = read(path) if os.path.exists(path) else b""
        r = self.deliver(["tofile@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(r[0]["reply"], "250 2.0.0 delivered to file")
        data = read(path)[len(old):]
        self.assertTrue(data.startswith(b"From sender@example.net "), data)
        self.assertIn(b"Delivered-To: tofile@" + D.encode() + b"\n", data)
        self.assertIn(b"\n>From here, mbox quotes\n", data)
        st = os.stat(path)
        self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def test_pipe_exit_75_defers_then_succeeds(self):
        flag = os.path.join(self.out, "defer-ok")
        if os.path.exists(flag):
            os.unlink(flag)
        r = self.deliver(["defer@" + D])
        self.assertEqual(r[0]["status"], "deferred", r)
        self.assertEqual(r[0]["dsn_status"], "4.3.0")
        self.assertIn("exit 75", r[0]["reply"])
        self.assertIn("not yet, try later", r[0]["reply"])
        self.inst.wait_for_log(r"to=<defer@%s>, .*status=deferred" % re.escape(D))
        open(flag, "w").close()
        r = self.deliver(["defer@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertTrue(os.path.exists(os.path.join(self.out, "deferred-delivered")))

    def test_slow_pipe_does_not_block_others(self):
        with tempfile.TemporaryFile() as msg:
            msg.write(MESSAGE)
            msg.flush()
            with pbx_ipc.Client(self.sock, DELIVERY, timeout=30) as slow:
                slow.send("deliver", id=9999, queue_id="QSLOWPIPE", sender="s@example.net",
                          message=msg.fileno(), size=len(MESSAGE), arrival=int(time.time()),
                          rcpt=["slow@" + D, "alice@" + D], rcpt_orcpt=["", ""],
                          rcpt_notify=[0, 0])
                # alice, in the same request, is answered while the command runs.
                name, fields = slow.recv(timeout=10)
                self.assertEqual((name, fields["index"], fields["status"]),
                                 ("rcpt_result", 1, "sent"), fields)
                started = time.monotonic()
                r = self.deliver(["team@" + D, "piper@" + D])
                self.assertEqual([r[0]["status"], r[1]["status"]], ["sent", "sent"], r)
                self.assertLess(time.monotonic() - started, 8)
                open(os.path.join(self.out, "slow-go"), "w").close()
                name, fields = slow.recv(timeout=30)
                self.assertEqual((name, fields["index"], fields["status"]),
                                 ("rcpt_result", 0, "sent"), fields)
                self.assertEqual(slow.recv(timeout=30)[0], "done")

    def test_pipe_exit_1_fails_with_its_output(self):
        r = self.deliver(["fail@" + D])
        self.assertEqual(r[0]["status"], "failed", r)
        self.assertEqual(r[0]["dsn_status"], "5.3.0")
        self.assertEqual(r[0]["reply"], "550 5.3.0 command failed with exit status 1: "
                                        "mailing list closed second line")
        self.inst.wait_for_log(r"QALIAS\d+: to=<fail@%s>, relay=local, .*status=failed "
                               r"\(command failed with exit status 1: mailing list closed"
                               % re.escape(D))

    def test_include_files(self):
        a = self.maildir("alice")
        r = self.deliver(["incl@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(len(self.maildir("alice") - a), 1)
        self.assertEqual(read(os.path.join(self.out, "include.uid"), "r").strip(),
                         str(pwd.getpwnam("nobody").pw_uid))
        # A user's include file may not run commands.
        r = self.deliver(["badincl@" + D])
        self.assertEqual(r[0]["status"], "failed", r)
        self.assertEqual(r[0]["dsn_status"], "5.7.1")
        self.assertFalse(os.path.exists(os.path.join(self.out, "unsafe.uid")))
        self.inst.wait_for_log(r"resolve badincl@%s: refused: .*unsafe\.list: command targets "
                               r"need a file owned by root" % re.escape(D))

    def test_group_writable_aliases_file_refuses_commands(self):
        aliases = os.path.join(self.inst.dir, "aliases")
        mark = len(self.inst.log_text())
        os.chmod(aliases, 0o660)
        try:
            # authd looks at the file at most once a second.
            def refused():
                r = self.deliver(["piper@" + D])
                return r if r[0]["status"] == "failed" else None
            r = self.wait_for(refused)
            self.assertEqual(r[0]["dsn_status"], "5.7.1")
            self.assertIn("not writable by group or others", r[0]["reply"])
            # Plain aliases still work.
            self.assertEqual(self.deliver(["team@" + D])[0]["status"], "sent")
            self.inst.wait_for_log(r"resolve piper@%s: refused" % re.escape(D), start=mark)
        finally:
            os.chmod(aliases, 0o640)
        self.wait_for(lambda: self.deliver(["piper@" + D])[0]["status"] == "sent")

    # ---- system users ---------------------------------------------------------

    def test_mbox_for_a_system_user(self):
        pw = self.users[KIM]
        path = "/var/mail/" + KIM
        old = read(path) if os.path.exists(path) else b""
        r = self.deliver([KIM + "@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(r[0]["reply"], "250 2.0.0 delivered to mbox")
        data = read(path)[len(old):]
        self.assertTrue(data.startswith(b"From sender@example.net "), data)
        self.assertIn(b"\nReturn-Path: <sender@example.net>\nDelivered-To: %s@%s\n"
                      % (KIM.encode(), D.encode()), data)
        st = os.stat(path)
        self.assertEqual(st.st_uid, pw.pw_uid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertFalse(os.path.exists(path + ".lock"))

    def test_dotforward_keeps_a_copy_runs_a_command_as_the_user_and_forwards(self):
        pw = self.users[SAM]
        self.write_forward(SAM, "# sam's forwarding\n\\%s, \"|%s sam\"\nalice\n"
                           % (SAM, self.record))
        mbox = "/var/mail/" + SAM
        old = read(mbox) if os.path.exists(mbox) else b""
        a = self.maildir("alice")
        # Through an alias, as the final user would be reached.
        r = self.deliver(["tosam@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        # \sam: sam's own mailbox.
        self.assertIn(b"Subject: alias test", read(mbox)[len(old):])
        # The command ran as sam: what it wrote is sam's.
        base = os.path.join(self.out, "sam")
        self.assertEqual(read(base + ".uid", "r").strip(), str(pw.pw_uid))
        self.assertEqual(os.stat(base + ".in").st_uid, pw.pw_uid)
        env = dict(line.split("=", 1) for line in read(base + ".env", "r").splitlines())
        self.assertEqual((env["USER"], env["HOME"]), (SAM, pw.pw_dir))
        # alice: a new message through the queue, with sam's Delivered-To.
        added = self.wait_for(lambda: self.maildir("alice") - a)
        data = read(added.pop())
        self.assertIn(b"Delivered-To: tosam@" + D.encode() + b"\r\n", data)
        self.assertIn(b"Return-Path: <sender@example.net>", data)
        self.inst.wait_for_log(r"to=<tosam@%s>: ~%s/\.forward gives 3 deliveries"
                               % (re.escape(D), SAM))

    def test_dotforward_to_oneself_and_loops(self):
        # "sam" without a backslash is sam too: the mailbox, not a loop.
        self.write_forward(SAM, "%s@%s\n" % (SAM, D))
        mbox = "/var/mail/" + SAM
        old = read(mbox) if os.path.exists(mbox) else b""
        r = self.deliver([SAM + "@" + D])
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertIn(b"Subject: alias test", read(mbox)[len(old):])
        # A message that already passed sam: the forward is a loop.
        self.write_forward(SAM, "bob\n")
        looped = b"Delivered-To: %s@%s\r\n" % (SAM.encode(), D.encode()) + MESSAGE
        r = self.deliver([SAM + "@" + D], message=looped)
        self.assertEqual(r[0]["status"], "failed", r)
        self.assertEqual(r[0]["dsn_status"], "5.4.6")

    def test_group_writable_dotforward_is_ignored(self):
        mark = len(self.inst.log_text())
        path = self.write_forward(KIM, "\"|%s kim\"\n" % self.record, mode=0o664)
        try:
            mbox = "/var/mail/" + KIM
            old = read(mbox) if os.path.exists(mbox) else b""
            r = self.deliver([KIM + "@" + D])
            self.assertEqual(r[0]["status"], "sent", r)
            self.assertEqual(r[0]["reply"], "250 2.0.0 delivered to mbox")
            self.assertIn(b"Subject: alias test", read(mbox)[len(old):])
            self.assertFalse(os.path.exists(os.path.join(self.out, "kim.uid")))
            self.inst.wait_for_log(r"to=<%s@%s>: .*/\.forward is writable by group or others: "
                                   r"ignored" % (KIM, re.escape(D)), start=mark)
        finally:
            os.unlink(path)

    # ---- through the queue-manager ----------------------------------------------

    def enqueue(self, rcpts, sender="sender@example.net"):
        sock = os.path.join(self.inst.runtime_dir, "queue", "enqueue.sock")
        with pbx_ipc.Client(sock, QUEUE, timeout=30) as c:
            c.send("begin", origin="sendmail", sender=sender, protocol="local")
            for r in rcpts:
                c.send("rcpt", address=r)
            c.send("data", bytes=MESSAGE)
            c.send("commit")
            name, fields = c.recv(30)
        self.assertEqual(name, "queued", fields)
        return fields["queue_id"]

    def test_queued_pipe_exit_75_is_retried_until_it_succeeds(self):
        flag = os.path.join(self.out, "defer-ok")
        done = os.path.join(self.out, "deferred-delivered")
        for p in (flag, done):
            if os.path.exists(p):
                os.unlink(p)
        qid = self.enqueue(["defer@" + D])
        self.inst.wait_for_log(r"local-delivery\[\d+\]: %s: to=<defer@%s>, .*status=deferred "
                               r"\(command deferred delivery \(exit 75\): not yet, try later\)"
                               % (qid, re.escape(D)), timeout=20)
        self.assertIn(qid, self.inst.tool("queue", "list").stdout)
        open(flag, "w").close()
        # minimal_backoff_time is 5s in the harness.
        self.inst.wait_for_log(r"local-delivery\[\d+\]: %s: to=<defer@%s>, .*status=sent "
                               r"\(delivered to command\)" % (qid, re.escape(D)), timeout=40)
        self.assertTrue(os.path.exists(done))
        self.inst.wait_for_log(r"queue-manager\[\d+\]: %s: removed" % qid, timeout=20)

    def test_queued_pipe_exit_1_fails_the_recipient(self):
        qid = self.enqueue(["fail@" + D])
        self.inst.wait_for_log(r"queue-manager\[\d+\]: %s: to=<fail@%s>, relay=local, .*"
                               r"5\.3\.0 command failed with exit status 1: mailing list closed"
                               % (qid, re.escape(D)), timeout=20)
        # Failed is final: the recipient is not tried again.
        time.sleep(6)
        self.assertEqual(len(re.findall(r"local-delivery\[\d+\]: %s: to=<fail@" % qid,
                                        self.inst.log_text())), 1)

    # ---- forwarding to other domains -------------------------------------------

    def test_alias_to_a_remote_address_is_queued_again(self):
        a = self.maildir("alice")
        r = self.deliver(["remote@" + D], sender="orig@example.net")
        self.assertEqual(r[0]["status"], "sent", r)
        self.assertEqual(len(self.maildir("alice") - a), 1)
        self.assertIn("forwarded as ", r[0]["reply"])
        self.assertIn("delivered to maildir", r[0]["reply"])
        self.inst.wait_for_log(r"to=<remote@%s>, relay=local, .*status=sent \(.*forwarded as \w+"
                               % re.escape(D))

        def queued():
            out = self.inst.tool("queue", "list", "--json").stdout
            for e in map(json.loads, out.splitlines()):
                if [x["address"] for x in e["recipients"]] == ["far@elsewhere.example"]:
                    return e
            return None
        entry = self.wait_for(queued)
        self.assertEqual(entry["sender"], "orig@example.net")
        qid = entry["queue_id"]
        msg = read(os.path.join(self.inst.spool_dir, "queue", qid + ".msg"))
        self.assertIn(b"Delivered-To: remote@" + D.encode() + b"\r\n", msg)
        self.assertIn(b"Subject: alias test\r\n", msg)
        self.inst.tool("queue", "delete", qid)


@unittest.skipUnless(harness.program("local-delivery") and harness.program("authd")
                     and shutil.which("useradd"), "local-delivery, authd or useradd missing")
class HomeMailboxTest(unittest.TestCase):
    def test_home_maildir_for_a_system_user(self):
        name = "pbxt-hm"
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config.update({"queue_manager_enable": "no", "remote_delivery_enable": "no",
                       "system_users": "yes", "home_mailbox": "Maildir/"})
        inst = Instance(config=config, start=False)
        remove_user(name)
        try:
            home = os.path.join(inst.dir, name)
            subprocess.run(["useradd", "-M", "-U", "-d", home, "-s", "/bin/sh", name],
                           check=True, capture_output=True)
            pw = pwd.getpwnam(name)
            os.mkdir(home, 0o755)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            inst.start()
            for prog in ("authd", "local-delivery"):
                inst.wait_for_log(r"%s\[\d+\]: listening on" % prog, timeout=15)
            sock = os.path.join(inst.runtime_dir, "local", "local.sock")
            with tempfile.TemporaryFile() as f:
                f.write(MESSAGE)
                f.flush()
                with pbx_ipc.Client(sock, DELIVERY, timeout=30) as c:
                    c.send("deliver", id=1, queue_id="QHOME", sender="s@example.net",
                           message=f.fileno(), size=len(MESSAGE), arrival=int(time.time()),
                           rcpt=[name + "@" + D], rcpt_orcpt=[""], rcpt_notify=[0])
                    _, fields = c.recv(timeout=30)
            self.assertEqual(fields["reply"], "250 2.0.0 delivered to maildir", fields)
            new = os.path.join(home, "Maildir", "new")
            files = os.listdir(new)
            self.assertEqual(len(files), 1)
            st = os.stat(os.path.join(new, files[0]))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (pw.pw_uid, 0o600))
            self.assertEqual(os.stat(os.path.join(home, "Maildir")).st_uid, pw.pw_uid)
            self.assertFalse(os.path.exists("/var/mail/" + name))
        finally:
            inst.cleanup()
            remove_user(name)


if __name__ == "__main__":
    unittest.main()
