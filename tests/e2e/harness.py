"""End-to-end test harness: runs a real pillarbox-master on loopback.

Standard library only. Tests run as root (the master must be root); run.py
runs them all, test.sh runs run.py. Typical use::

    from harness import Instance

    class T(unittest.TestCase):
        def test_smtp(self):
            with Instance(config={"smtpd_greet_pause": "0s"}) as inst:
                # started: control socket present, listeners accepting
                port = inst.port("smtp")
                ...
                self.assertEqual(inst.proc_status(inst.children()["smtpd"])["CapEff"],
                                 "0000000000000000")
            # stopped: no process of the instance left, no sanitizer report

Module functions
    source_dir()           the source tree (this file's ../..)
    build_dir()            $PBX_BUILD_DIR (relative to the source tree), else
                           build-test
    program(name)          path of a built program (build/<dir>/<name>, or a
                           copy any user may execute when the build tree is
                           out of their reach, as under /root in CI) or None
    built_program(name)    the path in the build tree itself, or None
    schema_keys()          config keys of common/config/schema.cpp (a set)
    free_port()            a free 127.0.0.1 TCP port, never handed out twice
    tls_files()            (cert, key): a self-signed localhost/example.test
                           certificate made once per run
    password_hash(pw)      sha512-crypt hash (openssl passwd -6), cached
    ensure_users()         runs packaging/create-users.sh when a user is missing
    reachable_program(p)   p, or a copy of it that unprivileged users can
                           execute when the build tree is out of their reach
    proc_status(pid)       /proc/PID/status as a dict ("Uid" -> "0 0 0 0", ...)
    proc_name(pid)         program name of a process (argv[0] basename)

class Instance(config=None, users=None, start=True, args=(), build=None)
    config    dict of overrides on top of the test defaults (a value None
              removes a default key). Defaults: runtime_dir, spool_dir,
              program_dir, users_file, aliases_file, tls_*, domains
              example.test, myhostname mail.example.test, minimal backoff, and
              a free port on 127.0.0.1 for every *_listen key the schema has
              (set one to "" to switch that listener off).
    users     dict name -> password; default {"alice": "demo", "bob": "demo"}.
              Each gets a Maildir under <dir>/mail/<name>/Maildir/ owned by
              pbx-vmail, and a line in <dir>/users (pillarbox-users(5)).
    start     start the master at once (False: call start() yourself, e.g.
              after editing files or to test a failing start).
    args      extra arguments for pillarbox-master (e.g. ["-d"]).
  Attributes
    dir, conf_path, runtime_dir, spool_dir, libexec_dir, log_path,
    control_socket, config (the dict written), users, process (Popen or None)
  Methods
    write_config(overrides=None)  rewrite pillarbox.conf (config updated with
                                  overrides first); returns the path
    start(wait=True, timeout=30)  start the master; with wait, until the
                                  control socket exists and every listener of
                                  a built program accepts. Raises
                                  StartupError (with the log) if it exits.
    stop(timeout=30, check=True)  SIGTERM, wait, then assert that no process
                                  of the instance is left and that the log
                                  holds no sanitizer report (with check).
                                  Returns the master's exit status.
    kill()                        SIGKILL everything of the instance (cleanup)
    reload()                      SIGHUP the master
    pid                           the master's pid
    port(name)                    port of listener name (smtp, submission,
                                  submissions, pop3, pop3s, imap, imaps)
    ports                         {name: port} of the listeners configured
    children()                    {name: pid} of the master's child processes
    child_list()                  [(pid, name)] (when names repeat)
    descendants()                 [(pid, name)] of every process below the master
    wait_for_child(name, timeout) pid of that child once it runs
    proc_status(pid)              as the module function
    log_text()                    the master's stdout+stderr so far
    wait_for_log(regex, timeout=10, start=0)
                                  re.Match of the first match at or after
                                  offset start; AssertionError on timeout
    tool(*args, check=False)      runs build/tools/pillarbox with
                                  PBX_CONFIG set; returns CompletedProcess
    maildir_messages(user)        paths of the files in new/ and cur/
    cleanup()                     stop if running, remove the directory
                                  (kept when PBX_KEEP=1)
  Used as a context manager: enter starts (if not yet), exit stops and
  cleans up, even when the test failed.

Environment: PBX_BUILD_DIR (build directory), PBX_KEEP=1 (keep instance
directories and print where they are), PBX_E2E_TIMEOUT_SCALE (multiply
timeouts, for slow machines).
"""

import atexit
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

__all__ = [
    "Instance", "StartupError", "source_dir", "build_dir", "program", "built_program",
    "schema_keys",
    "free_port", "tls_files", "password_hash", "ensure_users", "reachable_program",
    "proc_status", "proc_name",
    "SYSTEM_USERS", "SYSTEM_GROUPS", "LISTENERS", "PROGRAMS",
]

# DESIGN §2: the system users (each with its own group) and extra groups.
SYSTEM_USERS = ["pbx-smtpd", "pbx-submit", "pbx-queue", "pbx-remote", "pbx-auth",
                "pbx-login", "pbx-vmail"]
SYSTEM_GROUPS = SYSTEM_USERS + ["pbx-drop"]

# Listener name -> (config key, program serving it); master_interface.hpp.
LISTENERS = {
    "smtp": ("smtp_listen", "smtpd"),
    "submission": ("submission_listen", "submitd"),
    "submissions": ("submissions_listen", "submitd"),
    "pop3": ("pop3_listen", "pop3-login"),
    "pop3s": ("pop3s_listen", "pop3-login"),
    "imap": ("imap_listen", "imap-login"),
    "imaps": ("imaps_listen", "imap-login"),
}

# Program name -> its directory in the build tree.
PROGRAMS = {
    "authd": "authd", "queue-manager": "queue-manager", "local-delivery": "local-delivery",
    "remote-delivery": "remote-delivery", "smtpd": "smtpd", "submitd": "submitd",
    "pop3-login": "pop3d", "pop3d": "pop3d", "imap-login": "imapd", "imapd": "imapd",
}

DOMAIN = "example.test"

SANITIZER_PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"ERROR: UndefinedBehaviorSanitizer")


class StartupError(AssertionError):
    """The master exited or did not become ready; the message has the log."""


def _scale():
    try:
        return float(os.environ.get("PBX_E2E_TIMEOUT_SCALE", "1"))
    except ValueError:
        return 1.0


def source_dir():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    d = os.environ.get("PBX_BUILD_DIR", "build-test")
    return d if os.path.isabs(d) else os.path.join(source_dir(), d)


def built_program(name):
    """Path of the program `name` in the build tree, or None if not built."""
    special = {"pillarbox-master": "master", "pillarbox": "tools", "sendmail": "tools",
               "mailq": "tools", "newaliases": "tools"}
    sub = special.get(name) or PROGRAMS.get(name) or name
    path = os.path.join(build_dir(), sub, name)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def program(name):
    """Path of the built program `name` (master, tools included) that any user
    may execute, or None if it is not built. Usually the file in the build
    tree; when that is out of reach of unprivileged users (CI clones under
    /root), a copy made once per run."""
    path = built_program(name)
    return reachable_program(path) if path else None


def schema_keys():
    with open(os.path.join(source_dir(), "common", "config", "schema.cpp")) as f:
        return set(re.findall(r'\{"([a-z0-9_]+)",\s*Type::', f.read()))


_ports_given = set()


def free_port():
    """A TCP port free on 127.0.0.1 now, and not handed out before by this run."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free port found")


_run_dir = None


def _per_run_dir():
    """A directory for things made once per run (certificate, program copies)."""
    global _run_dir
    if _run_dir is None:
        _run_dir = tempfile.mkdtemp(prefix="pbx-run-", dir="/tmp")
        os.chmod(_run_dir, 0o755)
        atexit.register(shutil.rmtree, _run_dir, True)
    return _run_dir


_tls = None


def tls_files():
    """(cert_path, key_path) of a self-signed certificate, made once per run."""
    global _tls
    if _tls is None:
        d = os.path.join(_per_run_dir(), "tls")
        os.mkdir(d, 0o755)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,DNS:%s,DNS:mail.%s,IP:127.0.0.1"
             % (DOMAIN, DOMAIN), "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.chmod(key, 0o600)
        os.chmod(cert, 0o644)
        _tls = (cert, key)
    return _tls


_hashes = {}


def password_hash(password):
    if password not in _hashes:
        out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                             check=True, capture_output=True, text=True).stdout.strip()
        _hashes[password] = out
    return _hashes[password]


def ensure_users():
    """Creates the system users with packaging/create-users.sh if one is missing."""
    for u in SYSTEM_USERS:
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run([os.path.join(source_dir(), "packaging", "create-users.sh")],
                           check=True, stdout=subprocess.DEVNULL)
            return


def _traversable(path):
    """True when every directory on the way to path lets others search it."""
    path = os.path.realpath(path)
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        p = "/".join(parts[:i]) or "/"
        try:
            st = os.stat(p)
        except OSError:
            return False
        if os.path.isdir(p) and not st.st_mode & 0o001:
            return False
    return True


_program_copies = {}


def reachable_program(path):
    """path itself when unprivileged users can reach it, else a copy in the
    per-run directory (the master executes sessions as the mail user, and the
    build tree may sit under /root in CI)."""
    if _traversable(path):
        return path
    if path not in _program_copies:
        d = os.path.join(_per_run_dir(), "bin")
        os.makedirs(d, 0o755, exist_ok=True)
        dst = os.path.join(d, os.path.basename(path))
        shutil.copy2(path, dst)
        os.chmod(dst, 0o755)
        _program_copies[path] = dst
    return _program_copies[path]


def _read(path, binary=False):
    with open(path, "rb" if binary else "r") as f:
        return f.read()


_reachable_program = reachable_program  # the old name


def proc_status(pid):
    """/proc/PID/status as a dict of stripped strings ({} if it is gone)."""
    try:
        text = _read("/proc/%d/status" % pid)
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _stat_fields(pid):
    """(ppid, starttime) from /proc/PID/stat, or None if it is gone."""
    try:
        s = _read("/proc/%d/stat" % pid)
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()  # comm may hold spaces and parentheses
    return int(rest[1]), int(rest[19])


def proc_name(pid):
    """The program name of a process: basename of argv[0], else comm."""
    try:
        argv0 = _read("/proc/%d/cmdline" % pid, binary=True).split(b"\0")[0]
        if argv0:
            return os.path.basename(argv0.decode(errors="replace"))
        return _read("/proc/%d/comm" % pid).strip()
    except OSError:
        return ""


def _all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pid_alive(pid, starttime):
    f = _stat_fields(pid)
    return f is not None and f[1] == starttime and proc_status(pid).get("State", "")[:1] != "Z"


class Instance:
    def __init__(self, config=None, users=None, start=True, args=(), build=None):
        if os.geteuid() != 0:
            raise RuntimeError("the end-to-end tests must run as root")
        if build is not None:
            os.environ["PBX_BUILD_DIR"] = build
        self.master_path = program("pillarbox-master")
        ensure_users()
        self.process = None
        self._stopped = False
        self._log_file = None
        self._snapshot = []
        self.args = list(args)
        # Short path: sockets live below it and sun_path holds 108 bytes.
        self.dir = os.path.realpath(tempfile.mkdtemp(prefix="pbx-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.conf_path = os.path.join(self.dir, "pillarbox.conf")
        self.runtime_dir = os.path.join(self.dir, "run")
        self.spool_dir = os.path.join(self.dir, "spool")
        self.libexec_dir = os.path.join(self.dir, "libexec")
        self.mail_dir = os.path.join(self.dir, "mail")
        self.log_path = os.path.join(self.dir, "master.log")
        self.control_socket = os.path.join(self.runtime_dir, "control", "control.sock")
        self.users = dict(users if users is not None else {"alice": "demo", "bob": "demo"})
        self._make_tree()
        self.config = self._default_config()
        for k, v in (config or {}).items():
            if v is None:
                self.config.pop(k, None)
            else:
                self.config[k] = v
        self.write_config()
        if start:
            try:
                self.start()
            except BaseException:
                # The caller never gets the object, so nobody else can clean up
                # (the exception carries the log).
                self.cleanup()
                raise

    # ---- files ---------------------------------------------------------------

    def _make_tree(self):
        q = pwd.getpwnam("pbx-queue")
        v = pwd.getpwnam("pbx-vmail")
        auth = pwd.getpwnam("pbx-auth")
        # As pillarbox-spool(5) wants it; the subdirectories come at start.
        os.mkdir(self.spool_dir)
        os.chown(self.spool_dir, q.pw_uid, grp.getgrnam("pbx-drop").gr_gid)
        os.chmod(self.spool_dir, 0o710)
        os.mkdir(self.libexec_dir, 0o755)
        for name in PROGRAMS:
            path = program(name)
            if path:
                os.symlink(path, os.path.join(self.libexec_dir, name))
        cert, key = tls_files()
        tls = os.path.join(self.dir, "tls")
        os.mkdir(tls, 0o755)
        shutil.copy2(cert, os.path.join(tls, "cert.pem"))
        shutil.copy2(key, os.path.join(tls, "key.pem"))
        os.mkdir(self.mail_dir, 0o755)
        lines = ["# test users (pillarbox-users(5))"]
        for name, password in self.users.items():
            home = os.path.join(self.mail_dir, name)
            for d in (home, home + "/Maildir", home + "/Maildir/cur", home + "/Maildir/new",
                      home + "/Maildir/tmp"):
                os.mkdir(d, 0o700)
                os.chown(d, v.pw_uid, v.pw_gid)
            lines.append("%s:%s:%d:%d:%s:%s/Maildir/" % (name, password_hash(password), v.pw_uid,
                                                        v.pw_gid, home, home))
        self._write_private(os.path.join(self.dir, "users"), "\n".join(lines) + "\n",
                            auth.pw_gid)
        first = next(iter(self.users), "root")
        self._write_private(os.path.join(self.dir, "aliases"),
                            "postmaster: %s\nabuse: %s\n" % (first, first), auth.pw_gid)

    @staticmethod
    def _write_private(path, text, gid):
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, 0, gid)
        os.chmod(path, 0o640)

    def _default_config(self):
        keys = schema_keys()
        c = {
            "myhostname": "mail." + DOMAIN,
            "domains": DOMAIN,
            "runtime_dir": self.runtime_dir,
            "spool_dir": self.spool_dir,
            "program_dir": self.libexec_dir,
            "users_file": os.path.join(self.dir, "users"),
            "aliases_file": os.path.join(self.dir, "aliases"),
            "tls_cert_file": os.path.join(self.dir, "tls", "cert.pem"),
            "tls_key_file": os.path.join(self.dir, "tls", "key.pem"),
            "trusted_networks": "",
            "minimal_backoff_time": "5s",
            "maximal_backoff_time": "30s",
        }
        for key, _prog in LISTENERS.values():
            c[key] = "127.0.0.1:%d" % free_port()
        return {k: v for k, v in c.items() if k in keys}

    def write_config(self, overrides=None):
        if overrides:
            for k, v in overrides.items():
                if v is None:
                    self.config.pop(k, None)
                else:
                    self.config[k] = v
        with open(self.conf_path + ".tmp", "w") as f:
            f.write("# written by tests/e2e/harness.py\n")
            for k in sorted(self.config):
                f.write("%s = %s\n" % (k, self.config[k]))
        os.rename(self.conf_path + ".tmp", self.conf_path)
        return self.conf_path

    @property
    def ports(self):
        out = {}
        for name, (key, _prog) in LISTENERS.items():
            v = self.config.get(key, "")
            m = re.search(r":(\d+)$", v.split()[0]) if v.strip() else None
            if m:
                out[name] = int(m.group(1))
        return out

    def port(self, name):
        return self.ports[name]

    def maildir_messages(self, user):
        base = os.path.join(self.mail_dir, user, "Maildir")
        return sorted(os.path.join(base, sub, f) for sub in ("new", "cur")
                      for f in os.listdir(os.path.join(base, sub)))

    # ---- the master ----------------------------------------------------------

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self, wait=True, timeout=30):
        if not self.master_path:
            raise StartupError("pillarbox-master is not built in %s" % build_dir())
        if self.process and self.process.poll() is None:
            raise RuntimeError("already running")
        self._log_file = open(self.log_path, "ab")
        self._stopped = False
        self._snapshot = []
        self.process = subprocess.Popen(
            [self.master_path, "-f", "-c", self.conf_path] + self.args,
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.dir)
        if wait:
            self._wait_ready(timeout * _scale())
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        pending = {name: port for name, port in self.ports.items()
                   if (self.libexec_dir and os.path.exists(
                       os.path.join(self.libexec_dir, LISTENERS[name][1])))}
        while True:
            if self.process.poll() is not None:
                raise StartupError("pillarbox-master exited with status %s:\n%s"
                                   % (self.process.returncode, self.log_text()))
            if os.path.exists(self.control_socket):
                for name, port in list(pending.items()):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        del pending[name]
                    except OSError:
                        pass
                if not pending:
                    return
            if time.monotonic() > deadline:
                raise StartupError("pillarbox-master not ready after %.0fs (control socket %s,"
                                   " listeners not accepting: %s):\n%s"
                                   % (timeout, "present" if os.path.exists(self.control_socket)
                                      else "missing", sorted(pending), self.log_text()))
            time.sleep(0.05)

    def reload(self):
        os.kill(self.pid, signal.SIGHUP)

    def _tree(self, root):
        """[(pid, ppid, starttime)] of every process below root."""
        procs = {}
        for pid in _all_pids():
            f = _stat_fields(pid)
            if f:
                procs[pid] = f
        below, frontier = [], [root]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, start) in procs.items():
                if ppid == parent:
                    below.append((pid, ppid, start))
                    frontier.append(pid)
        return below

    def child_list(self):
        if not self.pid:
            return []
        return [(pid, proc_name(pid)) for pid, ppid, _s in self._tree(self.pid)
                if ppid == self.pid]

    def children(self):
        return {name: pid for pid, name in sorted(self.child_list(), reverse=True)}

    def descendants(self):
        if not self.pid:
            return []
        return [(pid, proc_name(pid)) for pid, _pp, _s in self._tree(self.pid)]

    def wait_for_child(self, name, timeout=10):
        deadline = time.monotonic() + timeout * _scale()
        while time.monotonic() < deadline:
            pid = self.children().get(name)
            if pid:
                return pid
            time.sleep(0.05)
        raise AssertionError("no child %r of the master after %ss; children: %s\n%s"
                             % (name, timeout, self.children(), self.log_text()))

    def proc_status(self, pid):
        return proc_status(pid)

    def _inside(self):
        """Processes that belong to this instance by their traces: root or cwd
        inside the instance directory, or its path in their command line or
        environment (the master passes PBX_CONFIG to every child)."""
        found = []
        me = os.getpid()
        needle = self.dir.encode() + b"/"
        for pid in _all_pids():
            if pid == me:
                continue
            hit = False
            for link in ("root", "cwd"):
                try:
                    target = os.readlink("/proc/%d/%s" % (pid, link))
                except OSError:
                    continue
                if target == self.dir or target.startswith(self.dir + "/"):
                    hit = True
            for f in ("cmdline", "environ"):
                if hit:
                    break
                try:
                    hit = needle in _read("/proc/%d/%s" % (pid, f), binary=True)
                except OSError:
                    pass
            if hit and proc_status(pid).get("State", "")[:1] != "Z":
                found.append(pid)
        return found

    def leftovers(self):
        """Processes of this instance still alive: those seen below the master
        at stop time, and any with its root or cwd in the instance directory."""
        alive = [(pid, proc_name(pid)) for pid, start in self._snapshot
                 if _pid_alive(pid, start)]
        seen = {p for p, _n in alive}
        alive += [(pid, proc_name(pid)) for pid in self._inside() if pid not in seen]
        return alive

    def stop(self, timeout=30, check=True):
        """Stops the master with SIGTERM; returns its exit status."""
        if not self.process:
            return None
        if self.process.poll() is None:
            self._snapshot = [(pid, start) for pid, _pp, start in self._tree(self.pid)]
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout * _scale())
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("pillarbox-master did not stop within %ss of SIGTERM:\n%s"
                                 % (timeout, self.log_text()))
        # Its children may need a moment after the master is gone.
        deadline = time.monotonic() + 5 * _scale()
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.leftovers()
        if left:
            self.kill()
        self._close_log()
        self._stopped = True
        if check:
            if left:
                raise AssertionError("processes left after the master stopped: %s\n%s"
                                     % (left, self.log_text()))
            m = SANITIZER_PATTERNS.search(self.log_text())
            if m:
                raise AssertionError("sanitizer report in the log:\n%s" % self.log_text())
        return status

    def kill(self):
        """SIGKILL the master and everything of the instance that is left."""
        targets = {pid for pid, _s in self._snapshot}
        if self.process and self.process.poll() is None:
            targets.update(pid for pid, _pp, _s in self._tree(self.pid))
            targets.add(self.pid)
        targets.update(self._inside())
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.process:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def _close_log(self):
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    # ---- logs and tools -------------------------------------------------------

    def log_text(self):
        try:
            return _read(self.log_path, binary=True).decode(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, regex, timeout=10, start=0):
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout * _scale()
        while True:
            m = pattern.search(self.log_text(), start)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("no log line matching %r within %ss:\n%s"
                                     % (regex, timeout, self.log_text()))
            time.sleep(0.05)

    def tool(self, *args, check=False, timeout=30):
        path = program("pillarbox")
        if not path:
            raise AssertionError("build/tools/pillarbox is not built")
        env = dict(os.environ, PBX_CONFIG=self.conf_path)
        return subprocess.run([path] + list(args), env=env, capture_output=True, text=True,
                              check=check, timeout=timeout * _scale())

    # ---- lifetime -------------------------------------------------------------

    def cleanup(self):
        try:
            if self.process and self.process.poll() is None:
                self.stop(check=False)
        finally:
            if self.process and self.process.poll() is None:
                self.kill()
            self._close_log()
            if os.environ.get("PBX_KEEP") == "1":
                sys.stderr.write("PBX_KEEP: instance kept in %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if not self.process:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.process and not self._stopped:
                # A failing test keeps its own exception; a passing one must
                # also stop cleanly (even if the master already died).
                self.stop(check=exc_type is None)
        finally:
            self.cleanup()
        return False
