#!/usr/bin/env python3
"""A mixed IMAP load, Pillarbox (imap-login + imapd behind pillarbox-master)
vs Dovecot (dovecot-imapd: imap-login + imap behind dovecot), side by side
in one run (bench/README.md's rules: ratios in the same run).

    PBX_BUILD_DIR=build-bench python3 bench/imap_mixed.py   # as root

Both serve the same messages (imap_fetch.py's, hard links to the same
files) from one Maildir per user owned by pbx-vmail, on 127.0.0.1 without
TLS (loopback may send passwords in the clear on both), sha512-crypt
passwords. CLIENTS clients (one user each) loop for SECONDS over

    LOGIN, SELECT INBOX, FETCH 20 (FLAGS RFC822.SIZE ENVELOPE),
    FETCH 1 BODY.PEEK[], STORE +FLAGS (\\Seen), STORE -FLAGS (\\Seen),
    SEARCH UNSEEN, SEARCH SUBJECT, APPEND (one new message),
    UID STORE +FLAGS.SILENT (\\Deleted) of that message, EXPUNGE, LOGOUT

so the folder keeps N messages. The clients are bench/imap_load.cpp (built
here with g++ -O2, one thread per client, blocking sockets, prebuilt
commands, responses parsed only to the tagged line): the same program for
both servers, at about 50 us of CPU per command, so on 2 cores the ratio
measures the servers. Any tagged reply other than OK and any failed check
is an error; the run exits 1 if there was one (the target needs 0).

Reported per side: commands/s, errors, the client's CPU time, and the CPU
time per command of the server's processes by process name: live ones
from /proc/PID/stat (utime+stime before and after), exited ones (sessions,
Dovecot's per-connection imap-login) from the kernel's taskstats
(bench/taskstats.py, microseconds per process). CPU per command hardly
depends on the load of the machine; commands/s does.
Environment: N (1000 messages per folder), CLIENTS (10), SECONDS (30),
RUNS (1; sides alternate), SIDES (pillarbox,dovecot), PBX_BUILD_DIR, KEEP=1,
SPOOL_FS (loop: a new ext4 on a loop device for all mail and indexes,
removed at the end; tmp: /tmp's file system), CLIENT (cpp: bench/imap_load.cpp built with g++ -O2; python: the old
threaded client), PROFILE=1 (then syscalls per loop under strace -f).
"""

import os
import pwd
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import dovecot_conf  # noqa: E402
import taskstats  # noqa: E402
from imap_fetch import make_messages  # noqa: E402

PASSWORD = "pw"
CLK = os.sysconf("SC_CLK_TCK")


# ---- the old Python client (CLIENT=python; literals handled)

class ImapError(Exception):
    pass


class Client:
    def __init__(self, port, timeout=120):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.n = 0
        greeting = self.line()
        if not greeting.startswith(b"* OK"):
            raise ImapError("greeting: %r" % greeting[:200])

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 2:]
                return out
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise ImapError("connection closed")
            self.buf += chunk

    def exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise ImapError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, tag):
        """Untagged lines (literals folded in) until the tagged one."""
        lines = []
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}$", line)
            while m:  # a literal follows: read it and the rest of the line
                line += b"\r\n" + self.exact(int(m.group(1))) + self.line()
                m = re.search(rb"\{(\d+)\}$", line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise ImapError(line[:300].decode("latin-1"))
                return lines, line
            lines.append(line)

    def cmd(self, text, literal=None):
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d}\r\n" % len(literal))
            cont = self.line()
            if not cont.startswith(b"+"):
                raise ImapError("no continuation: %r" % cont[:200])
            self.sock.sendall(literal + b"\r\n")
        return self.response(tag)

    def close(self):
        self.sock.close()


def new_message(i):
    body = ("Appended line %d, a short body.\r\n" % i) * 30
    return (("From: Client <client@example.net>\r\nTo: alice@example.test\r\n"
             "Subject: appended %d\r\nDate: Wed, 2 Feb 2022 11:00:00 +0100\r\n"
             "Message-ID: <a%d@example.net>\r\n\r\n" % (i, i)) + body).encode()


def one_loop(port, user, n, rnd, counter):
    """One pass of the mix; returns the number of commands answered OK."""
    c = Client(port)
    done = 0
    try:
        c.cmd(b'LOGIN %s "%s"' % (user.encode(), PASSWORD.encode()))
        done += 1
        lines, _ = c.cmd(b"SELECT INBOX")
        done += 1
        exists = 0
        for line in lines:
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                exists = int(m.group(1))
        if exists < n:
            raise ImapError("%s: %d messages, expected %d" % (user, exists, n))
        k = rnd.randint(1, exists - 19)
        lines, _ = c.cmd(b"FETCH %d:%d (FLAGS RFC822.SIZE ENVELOPE)" % (k, k + 19))
        if len(lines) != 20:
            raise ImapError("FETCH answered %d lines" % len(lines))
        done += 1
        j = rnd.randint(1, exists)
        lines, _ = c.cmd(b"FETCH %d BODY.PEEK[]" % j)
        if not lines or b"BODY[]" not in lines[0]:
            raise ImapError("FETCH BODY.PEEK[]: %r" % (lines[:1],))
        done += 1
        c.cmd(b"STORE %d +FLAGS (\\Seen)" % j)
        done += 1
        c.cmd(b"STORE %d -FLAGS (\\Seen)" % j)
        done += 1
        lines, _ = c.cmd(b"SEARCH UNSEEN")
        if not any(x.startswith(b"* SEARCH") for x in lines):
            raise ImapError("no SEARCH answer")
        done += 1
        lines, _ = c.cmd(b'SEARCH SUBJECT "number %d"' % rnd.randint(0, n - 1))
        if not any(x.startswith(b"* SEARCH") for x in lines):
            raise ImapError("no SEARCH answer")
        done += 1
        with counter[1]:
            counter[0] += 1
            i = counter[0]
        _, ok = c.cmd(b"APPEND INBOX (\\Seen)", new_message(i))
        m = re.search(rb"\[APPENDUID \d+ (\d+)\]", ok)
        if not m:
            raise ImapError("APPEND without APPENDUID: %r" % ok)
        done += 1
        c.cmd(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % m.group(1))
        done += 1
        lines, _ = c.cmd(b"EXPUNGE")
        done += 1
        c.cmd(b"LOGOUT")
        done += 1
    finally:
        c.close()
    return done


# ---- processes and their CPU time ---------------------------------------------

def proc_table():
    """{pid: (ppid, comm, self ticks, reaped children's ticks)}"""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        # fields after comm: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        out[int(d)] = (int(f[1]), comm, int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
    return out


def tree(table, root):
    kids = {}
    for pid, v in table.items():
        kids.setdefault(v[0], []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_of(pid, key):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---- the two servers ----------------------------------------------------------

def fill_maildir(maildir, template, vmail):
    for sub in ("", "/cur", "/new", "/tmp"):
        os.makedirs(maildir + sub, exist_ok=True)
        os.chown(maildir + sub, vmail.pw_uid, vmail.pw_gid)
        os.chmod(maildir + sub, 0o700)
    for name in os.listdir(os.path.join(template, "cur")):
        os.link(os.path.join(template, "cur", name), os.path.join(maildir, "cur", name))


class Servers:
    """Both servers with the same users and the same messages."""

    def __init__(self, users, n, pbx_config=None, dovecot_extra="", spool_fs="tmp"):
        self.vmail = pwd.getpwnam("pbx-vmail")
        self.work = tempfile.mkdtemp(prefix="pbx-bench-imap-", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.loop_dev = None
        self.fs = None
        self.dove = None
        config = {"pop3_listen": "", "pop3s_listen": "", "smtp_listen": "",
                  "submission_listen": "", "submissions_listen": "", "imaps_listen": "",
                  "queue_manager_enable": "no", "local_delivery_enable": "no",
                  "remote_delivery_enable": "no"}
        config.update(pbx_config or {})
        self.inst = harness.Instance(users={u: PASSWORD for u in users}, config=config,
                                     start=False)
        # The messages, both servers' Maildirs and Dovecot's indexes on one
        # file system: /tmp's, or (spool_fs "loop") a new ext4 (Debian's
        # mkfs.ext4 defaults, with a journal) on a loop device, mounted over
        # the instance's mail directory; its users' homes are made again on
        # it. (This machine's / is ext4 without a journal, where creating a
        # file after many deletions costs up to a millisecond of system CPU.)
        try:
            self._prepare(users, n, dovecot_extra, spool_fs)
        except BaseException:
            self.stop()
            raise

    def _prepare(self, users, n, dovecot_extra, spool_fs):
        data = self.work
        if spool_fs == "loop":
            self.fs = self.inst.mail_dir
            img = os.path.join(self.work, "fs.img")
            subprocess.run(["dd", "if=/dev/zero", "of=" + img, "bs=1M", "count=256",
                            "status=none"], check=True)
            self.loop_dev = subprocess.run(
                ["losetup", "--find", "--show", "--direct-io=on", img], check=True,
                capture_output=True, text=True).stdout.strip()
            subprocess.run(["mkfs.ext4", "-q", "-F", self.loop_dev], check=True)
            subprocess.run(["mount", self.loop_dev, self.fs], check=True)
            os.chmod(self.fs, 0o755)
            for u in users:
                home = os.path.join(self.fs, u)
                for d in (home, home + "/Maildir", home + "/Maildir/cur", home + "/Maildir/new",
                          home + "/Maildir/tmp"):
                    os.mkdir(d, 0o700)
                    os.chown(d, self.vmail.pw_uid, self.vmail.pw_gid)
            data = os.path.join(self.fs, "bench")
            os.mkdir(data, 0o755)
        elif spool_fs != "tmp":
            raise ValueError("SPOOL_FS is loop or tmp")
        self.fs_desc = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", data],
                                      capture_output=True, text=True).stdout.strip()
        template = os.path.join(data, "template")
        if n:
            make_messages(template, n)
            for root, dirs, files in os.walk(template):
                for x in dirs + files:
                    os.chown(os.path.join(root, x), self.vmail.pw_uid, self.vmail.pw_gid)
        self.dove_port = harness.free_port()
        os.makedirs(os.path.join(data, "home"))
        for u in users:
            home = os.path.join(data, "home", u)
            os.makedirs(home)
            os.chown(home, self.vmail.pw_uid, self.vmail.pw_gid)
            if n:
                fill_maildir(os.path.join(self.inst.mail_dir, u, "Maildir"), template,
                             self.vmail)
                fill_maildir(os.path.join(home, "Maildir"), template, self.vmail)
        self.conf = dovecot_conf.write(self.work, "imap", self.dove_port, self.vmail, users,
                                       PASSWORD, dovecot_extra,
                                       homes=os.path.join(data, "home"))

    def start(self):
        self.inst.start()
        self.dove = subprocess.Popen(["dovecot", "-F", "-c", self.conf])
        for _ in range(200):
            try:
                Client(self.dove_port, timeout=2).close()
                break
            except (OSError, ImapError):
                time.sleep(0.1)
        # name, port, root pid, login comm, session comm
        return [("pillarbox", self.inst.port("imap"), self.inst.pid, "imap-login", "imapd"),
                ("dovecot", self.dove_port, self.dove.pid, "imap-login", "imap")]

    def stop(self):
        if self.dove:
            self.dove.terminate()
            self.dove.wait(30)
        self.inst.stop(check=False)
        if self.fs:
            for _ in range(50):  # a server process may still be exiting
                if subprocess.run(["umount", self.fs], capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)
        if self.loop_dev:
            subprocess.run(["losetup", "-d", self.loop_dev], capture_output=True)
        self.inst.cleanup()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)


def load_python(port, users, n, seconds):
    """The old client: one Python thread per user (CLIENT=python), about
    165 us of CPU per command (3-4x imap_load's) and the GIL between its
    threads. Returns (commands, loops, errors, elapsed, client CPU seconds)."""
    stop_at = time.monotonic() + seconds
    stats = {"cmds": 0, "loops": 0, "errors": []}
    lock = threading.Lock()
    counter = [0, threading.Lock()]

    def run(user, seed):
        rnd = random.Random(seed)
        while time.monotonic() < stop_at:
            try:
                k = one_loop(port, user, n, rnd, counter)
                with lock:
                    stats["cmds"] += k
                    stats["loops"] += 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    stats["errors"].append("%s: %s" % (user, e))
                time.sleep(0.1)

    threads = [threading.Thread(target=run, args=(u, i)) for i, u in enumerate(users)]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    el = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return stats["cmds"], stats["loops"], stats["errors"], el, cpu


def build_client(work):
    """bench/imap_load.cpp, the lean client, built with g++ -O2 (not meson)."""
    exe = os.path.join(work, "imap_load")
    subprocess.run(["g++", "-O2", "-std=c++20", "-pthread", "-o", exe,
                    os.path.join(HERE, "imap_load.cpp")], check=True)
    return exe


def load_cpp(exe, port, users, n, seconds, warmup=False):
    """Runs imap_load; (commands, loops, errors, elapsed, client CPU seconds)."""
    cmd = [exe, str(port), str(seconds), str(n)] + users + (["-w"] if warmup else [])
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    f = p.stdout.split()
    v = dict(zip(f[0::2], f[1::2]))
    errors = [x[len("error: "):] for x in p.stderr.splitlines() if x.startswith("error: ")]
    nerr = int(v["errors"])
    errors += ["(more errors)"] * (nerr - len(errors))
    return int(v["cmds"]), int(v["loops"]), errors, float(v["elapsed"]), float(v["cpu"])


def own_cpu(pids):
    """{pid: (comm, own CPU seconds)} of live processes (utime+stime)."""
    t = proc_table()
    return {p: (t[p][1], t[p][2] / CLK) for p in pids if p in t}


def measure(root, run):
    """CPU seconds per process name of the tree under root while run() runs:
    live processes from /proc (own utime+stime, before and after), exited
    ones from taskstats (the whole life of each, microseconds). Returns
    (run()'s result, {comm: CPU seconds}, taskstats lost records)."""
    before = own_cpu(tree(proc_table(), root))
    known = set(before)
    ex = taskstats.ExitRecorder()
    try:
        result = run()
        time.sleep(0.5)  # the last sessions exit
    finally:
        recs = ex.stop()
    after = own_cpu(tree(proc_table(), root))
    by = {}
    for pid, (comm, c) in after.items():
        by[comm] = by.get(comm, 0.0) + c - (before[pid][1] if pid in before else 0.0)
    mine = set(known) | set(after)
    grew = True
    counted = set()
    while grew:  # exited children of exited children too
        grew = False
        for pid, ppid, comm, c in recs:
            if ppid in mine and pid not in counted and pid not in after:
                counted.add(pid)
                mine.add(pid)
                by[comm] = by.get(comm, 0.0) + c - (before[pid][1] if pid in before else 0.0)
                grew = True
    return result, by, ex.lost


def strace_profile(exe, name, port, root, users, n, loops):
    """Syscalls per loop of the whole server tree under strace -f -c
    (PROFILE=1; after the timed runs): one -w pass per user, `loops` times.
    Prints the calls per loop of the commonest syscalls and fsyncs."""
    out = os.path.join(tempfile.mkdtemp(dir="/tmp"), "strace")
    args = ["strace", "-f", "-c", "-o", out]
    for pid in tree(proc_table(), root):
        args += ["-p", str(pid)]
    st = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    total = 0
    for _ in range(loops):
        _c, lp, errs, _e, _cpu = load_cpp(exe, port, users, n, 0, warmup=True)
        total += lp
        if errs:
            print("   error under strace:", errs[0])
    time.sleep(0.5)
    st.send_signal(2)
    st.wait(30)
    calls = {}
    with open(out) as f:
        for line in f:
            x = line.split()
            if len(x) >= 5 and x[-1].isidentifier() and x[-1] not in ("syscall", "total") and x[3].isdigit():
                calls[x[-1]] = int(x[3])
    allc = sum(calls.values())
    print("%-9s under strace -f: %d loops of 12 commands, %.0f syscalls per loop (%.1f per "
          "command); fsync %.2f, fdatasync %.2f per loop" %
          (name, total, allc / total, allc / total / 12, calls.get("fsync", 0) / total,
           calls.get("fdatasync", 0) / total))
    print("          per loop: " + ", ".join(
        "%s %.1f" % (k, v / total) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:25]))
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("run me as root")
    n = int(os.environ.get("N", "1000"))
    clients = int(os.environ.get("CLIENTS", "10"))
    seconds = float(os.environ.get("SECONDS", "30"))
    runs = int(os.environ.get("RUNS", "1"))
    client = os.environ.get("CLIENT", "cpp")
    users = ["u%d" % i for i in range(clients)]
    srv = Servers(users, n, spool_fs=os.environ.get("SPOOL_FS", "loop"))
    try:
        exe = build_client(srv.work) if client == "cpp" else None
        sides = srv.start()
        only = os.environ.get("SIDES")  # e.g. SIDES=pillarbox for profiling one side
        if only:
            sides = [s for s in sides if s[0] in only.split(",")]
        # Warm-up: one loop per user, so both have their indexes (not timed).
        for name, port, _root, _l, _s in sides:
            if exe:
                _c, _l, errs, _e, _cpu = load_cpp(exe, port, users, n, 0, warmup=True)
                if errs:
                    sys.exit("%s warm-up: %s" % (name, errs[0]))
            else:
                for u in users:
                    one_loop(port, u, n, random.Random(0), [10 ** 6, threading.Lock()])
        with open("/proc/loadavg") as f:
            load_before = " ".join(f.read().split()[:3])
        res = {}
        for r in range(runs):
            for name, port, root, login, sess in (sides if r % 2 == 0 else sides[::-1]):
                if exe:
                    go = lambda: load_cpp(exe, port, users, n, seconds)  # noqa: E731
                else:
                    go = lambda: load_python(port, users, n, seconds)  # noqa: E731
                (cmds, loops, errors, el, ccpu), by, lost = measure(root, go)
                total = sum(by.values())
                ls = sum(v for k, v in by.items() if k in (login, sess))
                res.setdefault(name, []).append((cmds, loops, errors, el, total, ls, ccpu, by))
                print("%-9s run %d: %d commands in %.1f s (%.0f/s), %d loops, %d errors; "
                      "CPU client %.2f s, login+session %.2f s, whole server %.2f s%s" %
                      (name, r + 1, cmds, el, cmds / el, loops, len(errors), ccpu, ls, total,
                       " (taskstats lost records!)" if lost else ""), flush=True)
                print("          CPU s by process: " + ", ".join(
                    "%s %.2f" % kv for kv in sorted(by.items(), key=lambda kv: -kv[1])
                    if kv[1] >= 0.005))
                for e in errors[:5]:
                    print("   error:", e)
        with open("/proc/loadavg") as f:
            load_after = " ".join(f.read().split()[:3])
        agg = {}
        for name, rows in res.items():
            cmds = sum(x[0] for x in rows)
            el = sum(x[3] for x in rows)
            by = {}
            for x in rows:
                for k, v in x[7].items():
                    by[k] = by.get(k, 0.0) + v
            agg[name] = {"rate": cmds / el, "errors": sum(len(x[2]) for x in rows),
                         "ls_us": 1e6 * sum(x[5] for x in rows) / max(1, cmds),
                         "all_us": 1e6 * sum(x[4] for x in rows) / max(1, cmds),
                         "client_us": 1e6 * sum(x[6] for x in rows) / max(1, cmds),
                         "by": {k: 1e6 * v / max(1, cmds) for k, v in by.items()}}
        if os.environ.get("PROFILE") == "1" and exe:
            for name, port, root, _l, _s in sides:
                strace_profile(exe, name, port, root, users, n, 3)
        if len(agg) < 2:
            return
        p, d = agg["pillarbox"], agg["dovecot"]
        print("IMAP mixed load: %d clients (%s client), %d s, %d messages per folder; "
              "nproc %d; load %s before, %s after; mail on %s"
              % (clients, client, seconds, n, os.cpu_count(), load_before, load_after,
                 srv.fs_desc))
        print("%-36s %12s %12s %8s" % ("", "pillarbox", "dovecot", "ratio"))
        print("%-36s %12.0f %12.0f %7.2fx" % ("commands/s", p["rate"], d["rate"],
                                             p["rate"] / d["rate"]))
        print("%-36s %12d %12d" % ("errors", p["errors"], d["errors"]))
        print("%-36s %12.0f %12.0f %7.2fx" % ("CPU us/command, login+session", p["ls_us"],
                                             d["ls_us"], d["ls_us"] / p["ls_us"]))
        print("%-36s %12.0f %12.0f %7.2fx" % ("CPU us/command, whole server", p["all_us"],
                                             d["all_us"], d["all_us"] / p["all_us"]))
        print("%-36s %12.0f %12.0f" % ("CPU us/command, the client", p["client_us"],
                                       d["client_us"]))
        for name in ("pillarbox", "dovecot"):
            print("  %s CPU us/command by process: %s" % (name, ", ".join(
                "%s %.0f" % kv for kv in sorted(agg[name]["by"].items(), key=lambda kv: -kv[1])
                if kv[1] >= 0.5)))
        print("(ratios > 1 favour pillarbox: its rate / dovecot's, dovecot's CPU / its CPU)")
        if p["errors"] or d["errors"]:
            print("ERRORS: the target needs 0 errors")
            sys.exit(1)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
