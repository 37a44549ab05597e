"""authd end to end: rcpt and domain lookups, password checks (a failure
arrives late, other clients are not held up), reload of the users and aliases
files, the peer table, and authd's privileges (issue: authd)."""

import grp
import os
import pwd
import re
import shutil
import subprocess
import time
import unittest

import harness
import pbx_ipc
from harness import Instance

AUTH = pbx_ipc.load_protocol("auth")
D = harness.DOMAIN


def auth_socket(inst):
    return os.path.join(inst.runtime_dir, "auth", "auth.sock")


def wait_for_socket(inst, timeout=15):
    path = auth_socket(inst)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                pbx_ipc.Client(path, AUTH, timeout=5).close()
                return path
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("authd socket %s not ready:\n%s" % (path, inst.log_text()))


@unittest.skipUnless(harness.program("authd"), "authd is not built")
class AuthdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Only what authd needs: no listeners, no other services.
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config.update({"queue_manager_enable": "no", "local_delivery_enable": "no",
                       "remote_delivery_enable": "no", "domains": D + ", Example.NET"})
        cls.inst = Instance(config=config, users={"alice": "alice pw", "bob": "bob pw", "erin": "erin pw"},
                            start=False)
        # authd has no use for the spool; a path that does not exist keeps the
        # master's spool checks out of this test.
        cls.inst.write_config({"spool_dir": os.path.join(cls.inst.dir, "no-spool")})
        cls.inst.start()
        cls.path = wait_for_socket(cls.inst)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.inst.stop()  # also: no sanitizer report in the log
        finally:
            cls.inst.cleanup()

    def client(self):
        return pbx_ipc.Client(self.path, AUTH, timeout=30)

    def rcpt(self, c, address, id=1):
        name, f = c.request("rcpt", id=id, address=address)
        self.assertEqual(name, "rcpt_result")
        self.assertEqual(f["id"], id)
        return f["status"], f.get("canonical")

    def test_rcpt_and_domain(self):
        with self.client() as c:
            cases = [
                ("alice@" + D, "found", "alice@" + D),
                ("ALICE@" + D.upper(), "found", "alice@" + D),
                ("Alice+Lists@" + D, "found", "alice+Lists@" + D),
                ("bob@example.net", "found", "bob@example.net"),
                ("postmaster@" + D, "found", "postmaster@" + D),  # an alias here
                ("PostMaster", "found", "postmaster"),
                ("abuse@" + D, "found", "abuse@" + D),
                ("carol@" + D, "unknown", "carol@" + D),
                ("alice@" + D + ".", "unknown", None),
                ("alice@elsewhere.example", "remote", None),
                ("daemon@" + D, "unknown", "daemon@" + D),  # system_users = no
            ]
            for i, (address, status, canonical) in enumerate(cases):
                with self.subTest(address=address):
                    self.assertEqual(self.rcpt(c, address, id=100 + i), (status, canonical))
            for domain, local in [(D, 1), (D.upper(), 1), ("example.net", 1), (D + ".", 0),
                                  ("elsewhere.example", 0)]:
                name, f = c.request("domain", id=7, domain=domain)
                self.assertEqual((name, f["id"], f["local"]), ("domain_result", 7, local), domain)

    def verify(self, c, user, password, client="192.0.2.10", id=1):
        t = time.monotonic()
        name, f = c.request("verify", id=id, user=user, password=password.encode(),
                            client_address=client, service="imap")
        self.assertEqual((name, f["id"]), ("verify_result", id))
        return f["status"], f.get("user"), time.monotonic() - t

    def test_verify(self):
        with self.client() as c:
            status, user, took = self.verify(c, "alice", "alice pw", client="192.0.2.20")
            self.assertEqual((status, user), ("ok", "alice"))
            self.assertLess(took, 1.0)
            status, user, took = self.verify(c, "Alice@" + D, "alice pw", client="192.0.2.21")
            self.assertEqual((status, user), ("ok", "alice"))

            # A failure arrives late (1 s after the first failure), and an
            # unknown user looks the same.
            status, user, took = self.verify(c, "bob", "wrong", client="192.0.2.22")
            self.assertEqual((status, user), ("fail", None))
            self.assertGreaterEqual(took, 0.9)
            status, user, took = self.verify(c, "nosuchuser", "x", client="192.0.2.23")
            self.assertEqual((status, user), ("fail", None))
            self.assertGreaterEqual(took, 0.9)
        log = self.inst.log_text()
        self.assertRegex(log, r"verify failed: user=bob client=192\.0\.2\.22 service=imap")
        self.assertRegex(log, r"verify failed: user=nosuchuser client=192\.0\.2\.23")
        self.assertNotIn("wrong", log.replace("wrong password", ""))

    def test_delayed_failure_does_not_hold_up_others(self):
        with self.client() as slow, self.client() as fast:
            slow.send("verify", id=1, user="erin", password=b"bad", client_address="192.0.2.30",
                      service="submission")
            time.sleep(0.1)
            t = time.monotonic()
            self.assertEqual(self.rcpt(fast, "bob@" + D), ("found", "bob@" + D))
            # The same connection too: replies carry ids, so they may overtake.
            self.assertEqual(self.rcpt(slow, "alice@" + D, id=2), ("found", "alice@" + D))
            self.assertLess(time.monotonic() - t, 0.5)
            name, f = slow.recv()
            self.assertEqual((name, f["id"], f["status"]), ("verify_result", 1, "fail"))

    def test_reload_users_and_aliases(self):
        users = self.inst.config["users_file"]
        aliases = self.inst.config["aliases_file"]
        with open(users) as f:
            original = f.read()
        try:
            with self.client() as c:
                self.assertEqual(self.rcpt(c, "carol@" + D)[0], "unknown")
                line = "carol:%s:5000:5000:/nonexistent/carol:\n" % harness.password_hash("c pw")
                self.rewrite(users, original + line)
                self.assertEqual(self.wait_status(c, "carol@" + D, "found"), "found")
                self.assertEqual(self.verify(c, "carol", "c pw", client="192.0.2.40")[0], "ok")

                # A broken file is logged with file:line; the old content stays.
                start = len(self.inst.log_text())
                self.rewrite(users, original + line + "dave:x:0:5000:/home/dave:\n")
                pattern = r"%s:\d+: uid 0 \(root\) is refused" % re.escape(users)
                deadline = time.monotonic() + 5
                while not re.search(pattern, self.inst.log_text()[start:]):
                    self.assertLess(time.monotonic(), deadline, self.inst.log_text())
                    self.rcpt(c, "carol@" + D)  # files are looked at when requests come
                    time.sleep(0.2)
                self.assertEqual(self.rcpt(c, "carol@" + D)[0], "found")

                self.rewrite(aliases, "postmaster: alice\nteam: alice, bob\n")
                self.assertEqual(self.wait_status(c, "team@" + D, "found"), "found")
        finally:
            self.rewrite(users, original)

    def rewrite(self, path, text):
        st = os.stat(path)
        with open(path + ".new", "w") as f:
            f.write(text)
        os.chown(path + ".new", st.st_uid, st.st_gid)
        os.chmod(path + ".new", st.st_mode & 0o7777)
        os.rename(path + ".new", path)

    def wait_status(self, c, address, want, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            status = self.rcpt(c, address)[0]
            if status == want or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    def test_unlisted_users_are_refused(self):
        # "nobody" is no program of the auth channel's peer table: the socket
        # (mode 0666) lets it connect, the server closes at once.
        nobody = pwd.getpwnam("nobody")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                try:
                    with pbx_ipc.Client(self.path, AUTH, timeout=5) as c:
                        c.request("domain", id=1, domain="x")
                    code = 0
                except (EOFError, OSError, pbx_ipc.DecodeError):
                    code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 3)
        self.inst.wait_for_log(r"refused uid=%d" % nobody.pw_uid)

    def test_privileges(self):
        pid = self.inst.wait_for_child("authd", 10)
        st = self.inst.proc_status(pid)
        auth = pwd.getpwnam("pbx-auth")
        self.assertEqual(st["Uid"].split(), [str(auth.pw_uid)] * 4)
        self.assertEqual(st["Gid"].split(), [str(auth.pw_gid)] * 4)
        self.assertEqual(st["CapEff"], "0000000000000000")
        self.assertEqual(st["CapPrm"], "0000000000000000")
        self.assertEqual(st["NoNewPrivs"], "1")
        try:
            shadow = grp.getgrnam("shadow").gr_gid
            self.assertIn(str(shadow), st["Groups"].split())
        except KeyError:
            pass


SYSTEM_USER = "pbxshadow"


@unittest.skipUnless(harness.program("authd") and shutil.which("useradd")
                     and shutil.which("chpasswd"), "authd, useradd or chpasswd missing")
class SystemUserPasswordTest(unittest.TestCase):
    """system_users = yes: a system account's password is checked against
    /etc/shadow (as Debian's chpasswd wrote it, yescrypt), by authd running as
    pbx-auth with the shadow group, never as root."""

    @classmethod
    def setUpClass(cls):
        subprocess.run(["userdel", "-f", SYSTEM_USER], capture_output=True)
        subprocess.run(["useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                        SYSTEM_USER], check=True, capture_output=True)
        subprocess.run(["chpasswd"], input=SYSTEM_USER + ":shadow pw\n", text=True, check=True,
                       capture_output=True)
        config = {key: "" for key, _ in harness.LISTENERS.values()}
        config.update({"queue_manager_enable": "no", "local_delivery_enable": "no",
                       "remote_delivery_enable": "no", "domains": D, "system_users": "yes"})
        cls.inst = Instance(config=config, users={"alice": "alice pw"}, start=False)
        cls.inst.write_config({"spool_dir": os.path.join(cls.inst.dir, "no-spool")})
        cls.inst.start()
        cls.path = wait_for_socket(cls.inst)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.inst.stop()
        finally:
            cls.inst.cleanup()
            subprocess.run(["userdel", "-f", SYSTEM_USER], capture_output=True)

    def verify(self, c, user, password, id):
        t = time.monotonic()
        name, f = c.request("verify", id=id, user=user, password=password.encode(),
                            client_address="192.0.2.40", service="pop3")
        self.assertEqual((name, f["id"]), ("verify_result", id))
        return f["status"], f.get("user"), time.monotonic() - t

    def test_shadow_password(self):
        with open("/etc/shadow") as f:
            entry = [l for l in f if l.startswith(SYSTEM_USER + ":")][0]
        self.assertTrue(entry.split(":")[1].startswith("$"), entry.split(":")[1][:4])
        with pbx_ipc.Client(self.path, AUTH, timeout=30) as c:
            status, user, _ = self.verify(c, SYSTEM_USER, "shadow pw", 1)
            self.assertEqual((status, user), ("ok", SYSTEM_USER))
            status, user, took = self.verify(c, SYSTEM_USER, "not it", 2)
            self.assertEqual((status, user), ("fail", None))
            self.assertGreaterEqual(took, 0.9)
            # The virtual users file still works next to the system accounts.
            status, user, _ = self.verify(c, "alice", "alice pw", 3)
            self.assertEqual((status, user), ("ok", "alice"))
        pid = self.inst.wait_for_child("authd", 10)
        st = self.inst.proc_status(pid)
        self.assertEqual(st["Uid"].split(), [str(pwd.getpwnam("pbx-auth").pw_uid)] * 4)


if __name__ == "__main__":
    unittest.main()
