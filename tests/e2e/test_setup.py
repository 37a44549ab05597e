"""The setup around the programs: system users, packaging files, man pages,
the example configuration and demo.sh's instance. None of it needs a running
master."""

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import harness
from harness import SYSTEM_GROUPS, SYSTEM_USERS, source_dir

SRC = source_dir()
PACKAGING = os.path.join(SRC, "packaging")


def config_keys(path):
    """Keys set in a pillarbox.conf-format file, in order."""
    keys = []
    with open(path) as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#") or line[0] in " \t":
                continue
            keys.append(line.split("=", 1)[0].strip())
    return keys


class SystemUsers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.ensure_users()

    def test_every_user_is_an_unprivileged_system_user(self):
        uids = set()
        for name in SYSTEM_USERS:
            with self.subTest(user=name):
                pw = pwd.getpwnam(name)
                self.assertNotEqual(pw.pw_uid, 0)
                self.assertLess(pw.pw_uid, 1000, "not a system uid")
                self.assertIn(os.path.basename(pw.pw_shell), ("nologin", "false"))
                self.assertEqual(grp.getgrgid(pw.pw_gid).gr_name, name, "own primary group")
                self.assertNotIn(pw.pw_uid, uids)
                uids.add(pw.pw_uid)

    def test_groups_exist(self):
        for name in SYSTEM_GROUPS:
            with self.subTest(group=name):
                self.assertNotEqual(grp.getgrnam(name).gr_gid, 0)

    def test_create_users_is_idempotent(self):
        before = {n: pwd.getpwnam(n).pw_uid for n in SYSTEM_USERS}
        out = subprocess.run([os.path.join(PACKAGING, "create-users.sh")], check=True,
                             capture_output=True, text=True)
        self.assertEqual(out.stdout, "", "a second run must create nothing")
        self.assertEqual(before, {n: pwd.getpwnam(n).pw_uid for n in SYSTEM_USERS})


class PackagingFiles(unittest.TestCase):
    def read(self, name):
        with open(os.path.join(PACKAGING, name)) as f:
            return f.read()

    def test_sysusers_create_users_and_harness_agree(self):
        sysusers = [line.split() for line in self.read("pillarbox.sysusers").splitlines()
                    if line.strip() and not line.startswith("#")]
        users = sorted(f[1] for f in sysusers if f[0] == "u")
        groups = sorted(f[1] for f in sysusers if f[0] == "g")
        self.assertEqual(users, sorted(SYSTEM_USERS))
        self.assertEqual(groups, ["pbx-drop"])
        script = self.read("create-users.sh")
        self.assertEqual(sorted(re.findall(r"^add_user (\S+)", script, re.M)),
                         sorted(SYSTEM_USERS))
        self.assertEqual(re.findall(r"^add_group (\S+)", script, re.M), ["pbx-drop"])

    def test_tmpfiles_owners_exist(self):
        harness.ensure_users()
        for line in self.read("pillarbox.tmpfiles").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            kind, path, mode, user, group = line.split()[:5]
            with self.subTest(path=path):
                self.assertEqual(kind, "d")
                self.assertTrue(path.startswith("/"))
                self.assertRegex(mode, r"^[0-7]{4}$")
                pwd.getpwnam(user)
                grp.getgrnam(group)

    def test_service_unit(self):
        unit = self.read("pillarbox.service.in")
        settings = {}
        for line in unit.splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
        self.assertEqual(settings["Type"], ["notify"])
        self.assertEqual(settings["ExecStart"], ["@SBINDIR@/pillarbox-master"])
        self.assertIn("/bin/kill -HUP $MAINPID", settings["ExecReload"])
        # Local delivery writes into home directories.
        self.assertNotIn("ProtectHome", [k for k, v in settings.items() if v != ["no"]])
        caps = settings["CapabilityBoundingSet"][0].split()
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT", "CAP_NET_BIND_SERVICE",
                    "CAP_SETPCAP"):
            self.assertIn(cap, caps)
        generated = os.path.join(harness.build_dir(), "packaging", "pillarbox.service")
        if os.path.exists(generated):
            with open(generated) as f:
                text = f.read()
            self.assertNotIn("@", text.replace("multi-user.target", ""),
                             "unsubstituted @VAR@ in the generated unit")

    def test_service_unit_passes_systemd_analyze(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        # verify wants the programs to exist: point the Exec lines at /bin/true.
        unit = self.read("pillarbox.service.in")
        unit = re.sub(r"@SBINDIR@/\S+( config check)?", "/bin/true", unit)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "pillarbox.service")
            with open(path, "w") as f:
                f.write(unit)
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                               capture_output=True, text=True, timeout=120)
        # Unknown or misspelt settings are only warnings, on stderr.
        complaints = [line for line in r.stderr.splitlines() if "pillarbox.service" in line]
        self.assertEqual((r.returncode, complaints), (0, []), r.stderr)

    def test_example_config_uses_known_keys(self):
        keys = config_keys(os.path.join(PACKAGING, "pillarbox.conf.example"))
        self.assertGreater(len(keys), 5)
        self.assertEqual(len(keys), len(set(keys)), "a key set twice")
        unknown = set(keys) - harness.schema_keys()
        self.assertFalse(unknown, "keys not in common/config/schema.cpp")

    def test_example_config_passes_config_check(self):
        tool = harness.program("pillarbox")
        if not tool:
            self.skipTest("tools/pillarbox is not built yet")
        r = subprocess.run([tool, "config", "check", "-c",
                            os.path.join(PACKAGING, "pillarbox.conf.example")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class ManPages(unittest.TestCase):
    def pages(self):
        man = os.path.join(SRC, "man")
        return sorted(f for f in os.listdir(man) if re.search(r"\.[1-8]$", f))

    def test_pages_render_without_warnings(self):
        if not shutil.which("groff"):
            self.skipTest("groff is not installed")
        self.assertIn("pillarbox.7", self.pages())
        self.assertIn("pillarbox.conf.5", self.pages())
        for page in self.pages():
            path = os.path.join(SRC, "man", page)
            with open(path) as f:
                first = f.readline()
            # A first line '\" t asks man(1) for tbl (e for eqn, p for pic).
            pre = ["-" + c for c in first[3:].strip() if c in "tep"] \
                if first.startswith("'\\\" ") else []
            with self.subTest(page=page):
                r = subprocess.run(["groff"] + pre + ["-ww", "-man", "-z", path],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_overview_points_to_every_page(self):
        with open(os.path.join(SRC, "man", "pillarbox.7")) as f:
            overview = f.read().replace("\\-", "-")
        for page in self.pages():
            name, section = page.rsplit(".", 1)
            if page == "pillarbox.7":
                continue
            with self.subTest(page=page):
                self.assertIn(".BR %s (%s)" % (name, section), overview,
                              "add it to SEE ALSO in man/pillarbox.7")

    def test_every_page_is_installed(self):
        with open(os.path.join(SRC, "man", "meson.build")) as f:
            build = f.read()
        for page in self.pages():
            with self.subTest(page=page):
                self.assertIn("'%s'" % page, build)


class DemoSetup(unittest.TestCase):
    """demo.sh --no-run against the test build, into a temporary directory."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = os.path.realpath(tempfile.mkdtemp(prefix="pbx-demo-", dir="/tmp"))
        os.chmod(cls.tmp, 0o755)
        cls.instance = os.path.join(cls.tmp, "demo")
        cls.env = dict(os.environ, DEMO_NO_RUN="1", PBX_DEMO_SKIP_BUILD="1",
                       PBX_BUILD_DIR=harness.build_dir(),
                       PBX_DEMO_DIR=cls.instance, PBX_DEMO_RUNTIME_DIR=cls.tmp + "/run",
                       PBX_JOBS="2")
        cls.first = cls.run_demo()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def run_demo(cls):
        return subprocess.run([os.path.join(SRC, "demo.sh")], env=cls.env, cwd="/",
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300)

    def path(self, *parts):
        return os.path.join(self.instance, *parts)

    def content(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def test_runs_and_explains(self):
        r = self.first
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("127.0.0.1", r.stdout)
        self.assertIn("10025", r.stdout)
        self.assertIn("swaks", r.stdout)
        self.assertIn("not started", r.stdout)

    def test_config(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        conf = self.path("pillarbox.conf")
        keys = config_keys(conf)
        self.assertFalse(set(keys) - harness.schema_keys())
        with open(conf) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^smtp_listen = 127\.0\.0\.1:10025$")
        self.assertRegex(text, r"(?m)^domains = example\.test$")
        tool = harness.program("pillarbox")
        if tool:
            r = subprocess.run([tool, "config", "check", "-c", conf], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_users_file(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        vmail = pwd.getpwnam("pbx-vmail")
        st = os.stat(self.path("users"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(grp.getgrgid(st.st_gid).gr_name, "pbx-auth")
        entries = {}
        with open(self.path("users")) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    fields = line.rstrip("\n").split(":")
                    self.assertEqual(len(fields), 6, line)
                    entries[fields[0]] = fields
        self.assertEqual(sorted(entries), ["alice", "bob"])
        for name, (_, hashed, uid, gid, home, mailbox) in entries.items():
            with self.subTest(user=name):
                self.assertEqual((int(uid), int(gid)), (vmail.pw_uid, vmail.pw_gid))
                salt = hashed.split("$")[2]
                again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                                       input="demo\n", capture_output=True, text=True,
                                       check=True).stdout.strip()
                self.assertEqual(again, hashed, "the password is not 'demo'")
                self.assertTrue(mailbox.endswith("/Maildir/"))
                for sub in ("", "cur", "new", "tmp"):
                    st = os.stat(os.path.join(mailbox, sub))
                    self.assertEqual(st.st_uid, vmail.pw_uid)
                    self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)

    def test_tree(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        queue = pwd.getpwnam("pbx-queue")
        st = os.stat(self.path("spool"))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                         (queue.pw_uid, grp.getgrnam("pbx-drop").gr_gid, 0o710))
        st = os.stat(self.path("tls", "key.pem"))
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600))
        r = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                            self.path("tls", "cert.pem")], capture_output=True, text=True)
        self.assertIn("example.test", r.stdout)
        # libexec holds exactly the programs that were built.
        built = {n for n in harness.PROGRAMS if harness.program(n)}
        self.assertEqual(set(os.listdir(self.path("libexec"))), built)
        for name in built:
            self.assertTrue(os.access(self.path("libexec", name), os.X_OK), name)

    def test_rerun_keeps_certificate_and_users(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        files = ("tls/cert.pem", "tls/key.pem", "users")
        before = {f: self.content(f) for f in files}
        r = self.run_demo()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(before, {f: self.content(f) for f in files})


if __name__ == "__main__":
    unittest.main()
