"""pillarbox-master end to end: privileges of every child, inherited
listeners, restarts after kill -9, reload with good and broken configs,
graceful stop, the control socket (issue: foundation)."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Instance

# Who each program must run as (DESIGN §2); None: uid 0 with only
# CAP_SETUID+CAP_SETGID (local-delivery's parent).
EXPECTED_USER = {
    "authd": "pbx-auth",
    "queue-manager": "pbx-queue",
    "smtpd": "pbx-smtpd",
    "submitd": "pbx-submit",
    "remote-delivery": "pbx-remote",
    "local-delivery": None,
    "pop3-login": "pbx-login",
    "imap-login": "pbx-login",
}
NO_CAPS = "0000000000000000"
SETID_CAPS = "00000000000000c0"


def uid_of(user):
    import pwd
    return pwd.getpwnam(user).pw_uid


def socket_inodes(pid):
    out = {}
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            out[int(fd)] = int(m.group(1))
    return out


def built_children():
    return [name for name in EXPECTED_USER if harness.program(name)]


class MasterTest(unittest.TestCase):
    def setUp(self):
        self.expected = built_children()
        self.assertTrue(self.expected, "no program besides the master is built")

    def wait_children(self, inst, names, timeout=10):
        return {name: inst.wait_for_child(name, timeout) for name in names}

    def dropped_status(self, inst, pid, dropped, timeout=10):
        # A child drops right after exec; on a slow machine it may not be
        # done yet. Poll until its /proc status shows the end state of the
        # drop (or time runs out), then the caller asserts every field.
        deadline = time.monotonic() + timeout
        while True:
            st = inst.proc_status(pid)
            if dropped(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def test_children_run_unprivileged(self):
        with Instance() as inst:
            kids = self.wait_children(inst, self.expected)
            for name, pid in inst.children().items():
                user = EXPECTED_USER[name]
                want_uid = "0" if user is None else str(uid_of(user))
                st = self.dropped_status(
                    inst, pid, lambda st: st.get("NoNewPrivs") == "1"
                    and st.get("Uid", "").split() == [want_uid] * 4
                    and st.get("CapBnd") == NO_CAPS)
                uids = st["Uid"].split()
                with self.subTest(program=name):
                    self.assertEqual(st["NoNewPrivs"], "1")
                    if user is None:
                        self.assertEqual(uids, ["0"] * 4)
                        self.assertEqual(st["CapEff"], SETID_CAPS)
                        self.assertEqual(st["CapPrm"], SETID_CAPS)
                    else:
                        self.assertEqual(uids, [str(uid_of(user))] * 4)
                        self.assertEqual(st["CapEff"], NO_CAPS)
                        self.assertEqual(st["CapPrm"], NO_CAPS)
                    self.assertEqual(st["CapBnd"], NO_CAPS)
                    self.assertEqual(st["CapAmb"], NO_CAPS)
            self.assertEqual(set(kids), set(self.expected))

    def test_listeners_are_inherited(self):
        if "smtpd" not in self.expected:
            self.skipTest("smtpd not built")
        with Instance() as inst:
            pid = inst.wait_for_child("smtpd")
            master_socks = set(socket_inodes(inst.pid).values())
            child = socket_inodes(pid)
            # fd 3 is the listener, the very socket the master bound.
            self.assertIn(3, child)
            self.assertIn(child[3], master_socks)
            port = inst.port("smtp")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                self.assertTrue(s.recv(512).startswith(b"220"))

    def test_kill9_restarts_within_a_second(self):
        with Instance() as inst:
            kids = self.wait_children(inst, self.expected)
            time.sleep(0.5)
            for name, old in kids.items():
                with self.subTest(program=name):
                    os.kill(old, signal.SIGKILL)
                    t0 = time.monotonic()
                    new = None
                    while time.monotonic() - t0 < 1.0:
                        new = inst.children().get(name)
                        if new and new != old:
                            break
                        time.sleep(0.01)
                    self.assertIsNotNone(new)
                    self.assertNotEqual(new, old, "%s not restarted within 1 s" % name)
                    inst.wait_for_log(r"%s: pid %d died \(signal 9" % (re.escape(name), old))
            # Every listener still answers after its server was killed.
            if "smtpd" in kids:
                with socket.create_connection(("127.0.0.1", inst.port("smtp")), timeout=5) as s:
                    self.assertTrue(s.recv(512).startswith(b"220"))

    def test_repeated_fast_crashes_back_off(self):
        name = self.expected[0]
        with Instance() as inst:
            pid = inst.wait_for_child(name)
            for _ in range(3):
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    new = inst.children().get(name)
                    if new and new != pid:
                        break
                    time.sleep(0.01)
                pid = new
            inst.wait_for_log(r"%s: crashed \d+ times in a row; restarting in \d+ ms" % re.escape(name))
            st = json.loads(inst.tool("status", "--json", check=True).stdout)
            entry = next(p for p in st["programs"] if p["name"] == name)
            self.assertGreaterEqual(entry["restarts"], 3)

    def test_broken_config_is_refused_on_reload(self):
        with Instance() as inst:
            before = self.wait_children(inst, self.expected)
            time.sleep(0.3)
            with open(inst.conf_path, "a") as f:
                f.write("no_such_setting = 1\n")
            lines = open(inst.conf_path).read().count("\n")
            check = inst.tool("config", "check")
            self.assertEqual(check.returncode, 1)
            self.assertIn("%s:%d: unknown key 'no_such_setting'" % (inst.conf_path, lines),
                          check.stderr)
            mark = len(inst.log_text())
            inst.reload()
            inst.wait_for_log(r"reload refused, keeping the running configuration: .*:%d: unknown key"
                              % lines, start=mark)
            time.sleep(0.3)
            self.assertEqual(inst.children(), before)  # nothing restarted
            r = inst.tool("reload")
            self.assertEqual(r.returncode, 1)
            self.assertIn("unknown key", r.stderr)

    def test_reload_applies_a_new_listener(self):
        if "smtpd" not in self.expected:
            self.skipTest("smtpd not built")
        with Instance() as inst:
            inst.wait_for_child("smtpd")
            old_port = inst.port("smtp")
            new_port = harness.free_port()
            inst.write_config({"smtp_listen": "127.0.0.1:%d" % new_port})
            r = inst.tool("reload")
            self.assertEqual(r.returncode, 0, r.stderr)
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", new_port), timeout=2) as s:
                        if s.recv(512).startswith(b"220"):
                            break
                except OSError:
                    pass
                self.assertLess(time.monotonic(), deadline, inst.log_text())
                time.sleep(0.1)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", old_port), timeout=2).close()

    def test_status_and_permissions(self):
        with Instance() as inst:
            kids = self.wait_children(inst, self.expected)
            out = inst.tool("status", check=True).stdout
            for name, pid in kids.items():
                self.assertRegex(out, r"(?m)^%s\s+%d\s+\d+\s+\d+s\s+0$" % (re.escape(name), pid))
            st = json.loads(inst.tool("status", "--json", check=True).stdout)
            by_name = {p["name"]: p for p in st["programs"]}
            for name, pid in kids.items():
                self.assertEqual(by_name[name]["pid"], pid)
            # Any user may read the status; only root may stop the master.
            env = dict(os.environ, PBX_CONFIG=inst.conf_path)
            tool = harness.program("pillarbox")
            if harness._reachable_program(tool):
                nobody = subprocess.run(["runuser", "-u", "nobody", "--", tool, "stop"],
                                        env=env, capture_output=True, text=True)
                self.assertEqual(nobody.returncode, 1)
                self.assertIn("permission denied", nobody.stderr)
                self.assertIsNone(inst.process.poll())
                ok = subprocess.run(["runuser", "-u", "nobody", "--", tool, "status"],
                                    env=env, capture_output=True, text=True)
                self.assertEqual(ok.returncode, 0, ok.stderr)
            r = inst.tool("stop", check=True)
            self.assertIn("stopping", r.stdout)
            self.assertEqual(inst.process.wait(20), 0)

    def test_sigterm_leaves_nothing_behind(self):
        inst = Instance()
        try:
            self.wait_children(inst, self.expected)
            all_pids = [p for p, _n in inst.descendants()]
            self.assertTrue(all_pids)
            status = inst.stop()  # asserts that no process is left
            self.assertEqual(status, 0)
            for pid in all_pids:
                self.assertFalse(os.path.exists("/proc/%d/status" % pid)
                                 and harness.proc_status(pid).get("State", "Z")[0] != "Z")
            self.assertIn("stopped", inst.log_text())
        finally:
            inst.cleanup()

    def test_refuses_an_unreachable_runtime_dir(self):
        locked = tempfile.mkdtemp(prefix="pbx-locked-")
        os.chmod(locked, 0o700)
        try:
            inst = Instance(config={"runtime_dir": os.path.join(locked, "run")}, start=False)
            try:
                with self.assertRaises(harness.StartupError) as cm:
                    inst.start(timeout=10)
                self.assertIn("cannot be traversed by other users", str(cm.exception))
            finally:
                inst.cleanup()
        finally:
            os.rmdir(locked)

    def test_children_get_the_checked_config_and_a_clean_environment(self):
        with Instance() as inst:
            pid = inst.wait_for_child(self.expected[0])
            env = open("/proc/%d/environ" % pid, "rb").read().split(b"\0")
            names = {e.split(b"=", 1)[0] for e in env if e}
            self.assertTrue(names <= {b"PBX_CONFIG", b"PBX_CONFIG_FD", b"PBX_SERVICE",
                                      b"PBX_GENERATION", b"PBX_FOREGROUND", b"PBX_DEBUG",
                                      b"PATH", b"TZ", b"LISTEN_FDS", b"LISTEN_PID",
                                      b"LISTEN_FDNAMES"}, names)
            self.assertNotIn(b"HOME", names)


if __name__ == "__main__":
    unittest.main()


def tcp_inodes_by_client_port(server_port):
    """{client port: inode of the server side's socket} from /proc/net/tcp."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if int(local.split(":")[1], 16) == server_port and inode:
                out[int(remote.split(":")[1], 16)] = inode
    return out


@unittest.skipUnless(all(harness.program(p) for p in ("pop3-login", "pop3d", "authd")),
                     "pop3-login, pop3d or authd is not built")
class LoginProcessesTest(unittest.TestCase):
    """pop3_login_processes: several login processes share the listeners, and
    one that crashes loses only its own connections (issue 7)."""

    USERS = ["user%d" % i for i in range(1, 9)]

    def test_several_login_processes_share_the_listeners(self):
        import poplib
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with Instance(users={u: "demo" for u in self.USERS},
                      config={"pop3_login_processes": "3", "remote_delivery_enable": "no"}) as inst:
            deadline = time.monotonic() + 15 * harness._scale()

            def logins():
                return sorted(pid for pid, name in inst.child_list() if name == "pop3-login")

            while len(logins()) < 3:
                self.assertLess(time.monotonic(), deadline, inst.log_text())
                time.sleep(0.05)
            status = json.loads(inst.tool("status", "--json", check=True).stdout)
            named = {p["name"]: p["pid"] for p in status["programs"]}
            self.assertEqual(sorted(named[n] for n in ("pop3-login", "pop3-login#2",
                                                       "pop3-login#3")), logins())
            port = inst.port("pop3s")
            clients = []
            for u in self.USERS:
                for attempt in range(50):
                    try:
                        p = poplib.POP3_SSL("127.0.0.1", port, timeout=30, context=ctx)
                        p.user(u)
                        p.pass_("demo")
                        break
                    except poplib.error_proto:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)  # authd still starting
                self.assertEqual(p.stat(), (0, 0))
                clients.append(p)
            # Which login process holds which connection.
            by_port = tcp_inodes_by_client_port(port)
            owner_of_inode = {}
            for pid in logins():
                for inode in socket_inodes(pid).values():
                    owner_of_inode[inode] = pid
            owners = [owner_of_inode.get(by_port.get(c.sock.getsockname()[1]))
                      for c in clients]
            self.assertNotIn(None, owners, (owners, by_port))
            victim = owners[0]
            os.kill(victim, signal.SIGKILL)
            inst.wait_for_log(r"pop3-login(#\d)?: pid %d died \(signal 9" % victim)
            for c, owner in zip(clients, owners):
                if owner == victim:
                    with self.assertRaises((poplib.error_proto, OSError, EOFError)):
                        c.noop()
                        c.noop()
                else:
                    self.assertTrue(c.noop().startswith(b"+OK"))  # untouched
                    self.assertTrue(c.quit().startswith(b"+OK"))
            # The master put a new instance in the victim's place.
            while len(logins()) < 3 or victim in logins():
                self.assertLess(time.monotonic(), deadline + 15, inst.log_text())
                time.sleep(0.05)
            p = poplib.POP3_SSL("127.0.0.1", port, timeout=30, context=ctx)
            p.user(self.USERS[0])
            p.pass_("demo")
            self.assertEqual(p.stat(), (0, 0))
            p.quit()
