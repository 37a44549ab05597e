#!/usr/bin/env python3
"""POP3 retrieval, Pillarbox (pop3-login + pop3d) vs Dovecot (dovecot-pop3d),
side by side in one run (bench/README.md's rules: ratios in the same run).

    PBX_BUILD_DIR=build-bench python3 bench/pop3_retr.py   # as root

Both serve the same ~4 KB messages (hard links to the same files) from
Maildirs of the same shape, one per user, owned by pbx-vmail; both on
127.0.0.1 without TLS (loopback counts as secure for both), passwords with
sha512-crypt. Measured with the same client for both servers:
CLIENT=c (the default) is bench/pop3_load.cpp, built here with g++ (into
the build directory, again whenever the source is newer): all sessions in
one epoll loop, one command at a time per session (no pipelining), every
RETR answer compared byte for byte with the message's CRLF dot-stuffed
form (any difference, -ERR or closed connection stops the run). It is the
default because the Python client (CLIENT=raw, the same checks in Python)
ran the parallel sessions as threads of one process, serialized by the
GIL, and cost 29-47 us of CPU per RETR, about half of what either server
costs, on the same 2 cores as the servers: the load generator, not the
servers, pulled the ratio towards 1. CLIENT=poplib is Python's poplib,
which reads line by line and costs more CPU per RETR than either server.
The client's CPU per RETR (its session threads or its loop, from connect
to the last RETR answer) is printed as "client". With CLIENT=c the rates
come from the client's own clock (connect to the QUIT reply, the pause for
measuring left out), the rates of the RETRs alone (first RETR sent to last
answer) are printed too, and the client process's user and system CPU per
RETR. HOPS=1 always uses the Python client (RawPop3), whatever CLIENT
says; STRACE=1 uses CLIENT's.
  - one session: USER/PASS, RETR 1..N, QUIT; "cold" is the very first
    session on a fresh Maildir (Pillarbox: no size cache; Dovecot: no
    index), "warm" the median of RUNS later sessions;
  - PAR parallel sessions, one user each, the same N messages each: time
    until all are done (warm);
  - memory: Rss and Pss (/proc/PID/smaps_rollup) of each session process
    while it is open (after the RETRs), plus its share of the login
    processes (their Rss or Pss / sessions), the same for both servers;
  - CPU per RETR: schedstat run time of the session process (while open)
    and of the login processes, and utime+stime of the whole server tree
    (the master, everything below it, and the children they reaped).
Environment: N (1000), PAR (20), RUNS (3), SIZE (4096), CLIENT (c), W (1: the
message names carry ",S=<size>,W=<CRLF size>" as Dovecot's and Pillarbox's
delivery agents write them; 0: ",S=" only, so a cold open reads every
message on both servers), PBX_BUILD_DIR, AHEAD (yes: pop3_reply_ahead, the
default; no: pop3-login only proxies, a before/after pair with one build),
SMAPS=1 (also print the resident KiB of each process's largest mappings),
STRACE=1 (also one warm session of each server under strace -f: system
calls per RETR of each of its processes),
HOPS=1 (also round-trip times of one command at a time, median of 5 rounds
of N each: Pillarbox's CAPA before login, answered by pop3-login alone,
NOOP after login, through pop3-login and pop3d, and RETR; Dovecot's NOOP
and RETR. NOOP minus CAPA is the session's leg of the chain: what
reply-ahead (pop3_reply_ahead, AHEAD above: pop3-login answers the RETR
pop3d predicted) takes off a RETR, bench/RESULTS.md).
"""

import os
import re
import poplib
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot_conf  # noqa: E402

N = int(os.environ.get("N", "1000"))
PAR = int(os.environ.get("PAR", "20"))
RUNS = int(os.environ.get("RUNS", "3"))
SIZE = int(os.environ.get("SIZE", "4096"))
PASSWORD = "pw"


def make_messages(src_dir, vmail):
    os.makedirs(src_dir)
    names = []
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n"
    for i in range(N):
        head = (b"From: sender@example.org\nTo: user@example.test\nSubject: message %d\n"
                b"Message-ID: <%d@bench.example>\n\n" % (i, i))
        body = (line * (SIZE // len(line) + 1))[:SIZE - len(head)]
        data = head + body
        # Named as both delivery agents name them (Dovecot's LDA and, since
        # W= was added, local-delivery): S= the file's size, W= its size with
        # CRLF line ends, which both POP3 servers take instead of reading
        # the message on a cold open. W=0 for the names with S= only.
        name = "%d.M%dP1Q%d.bench,S=%d" % (1700000000 + i, i, i, len(data))
        if os.environ.get("W", "1") == "1":
            name += ",W=%d" % (len(data) + data.count(b"\n") - data.count(b"\r\n"))
        path = os.path.join(src_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, vmail.pw_uid, vmail.pw_gid)
        os.chmod(path, 0o600)
        names.append(name)
        EXPECTED.append(wire_form(data))
    return names


def fill_maildir(maildir, src_dir, names, vmail):
    for sub in ("", "/cur", "/new", "/tmp"):
        os.makedirs(maildir + sub, exist_ok=True)
        os.chown(maildir + sub, vmail.pw_uid, vmail.pw_gid)
        os.chmod(maildir + sub, 0o700)
    for n in names:
        os.link(os.path.join(src_dir, n), os.path.join(maildir, "new", n))


def wire_form(data):
    """What RETR must send for a stored message after its "+OK" line: CRLF
    line ends, dot-stuffed, then ".\r\n" (RFC 1939)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                   for l in (x[:-1] if x.endswith(b"\r") else x for x in lines))
    return out + b".\r\n"


EXPECTED = []      # wire_form of message i+1, for the byte-exactness check
CLIENT = os.environ.get("CLIENT", "c")
CLIENT_CPU = {}    # (port, what) -> [client thread CPU seconds per session]
CLIENT_RECVS = {}  # what -> [recv() calls per RETR answer], raw and c clients
RETR_WALL = {}     # what -> [seconds from the first RETR to the last answer], c client
CLIENT_SPLIT = {}  # what -> [(user, system) CPU seconds of the pop3_load process]
C_EXE = None       # the built pop3_load (CLIENT=c)
C_EXPECTED = None  # its expected-answers file


def build_c_client():
    """bench/pop3_load.cpp, built with g++ into the build directory (not by
    meson) when missing or older than its source."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pop3_load.cpp")
    out_dir = harness.build_dir()
    if not os.path.isdir(out_dir):
        out_dir = tempfile.gettempdir()
    exe = os.path.join(out_dir, "pop3_load")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run(["g++", "-std=c++20", "-O2", "-pthread", src, "-o", exe], check=True)
    return exe


def write_expected(path):
    """The expected answers for pop3_load: for each message, its wire form's
    length in decimal, a newline, then the wire form."""
    with open(path, "wb") as f:
        for e in EXPECTED:
            f.write(b"%d\n" % len(e))
            f.write(e)


def c_run(port, users, hold=None):
    """Runs pop3_load for users (one session each, in parallel); hold() is
    called while every session is open after its RETRs. Returns
    ([per-session dicts], summary dict); numbers as the client printed them."""
    cmd = [C_EXE, "--port", str(port), "--password", PASSWORD, "--users", ",".join(users),
           "--expected", C_EXPECTED] + (["--hold"] if hold else [])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    sessions, total = [], None
    for line in p.stdout:
        if line == "HOLD\n":
            try:
                hold()
            finally:
                p.stdin.write("\n")
                p.stdin.flush()
            continue
        kind, *fields = line.split()
        v = {}
        for f in fields:
            k, _, x = f.partition("=")
            v[k] = x if k == "user" else float(x)
        if kind == "session":
            sessions.append(v)
        elif kind == "total":
            total = v
    p.stdin.close()
    err = p.stderr.read()
    if p.wait() != 0 or total is None:
        raise RuntimeError("pop3_load failed (exit %s): %s" % (p.returncode, err.strip()))
    return sessions, total


class RawPop3:
    """A lean POP3 client for the benchmark, the same for both servers: one
    command at a time (no pipelining), one recv() per answer as far as the
    kernel delivers it, every RETR answer compared byte for byte with what
    RFC 1939 says it must be. poplib reads line by line and costs more CPU
    per RETR than either server, so it measured mostly itself."""

    def __init__(self, port):
        import socket
        self.s = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.recvs = 0  # recv() calls in RETR answers: how often the client woke
        self.line()  # the greeting

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if not out.startswith(b"+OK"):
                    raise RuntimeError("server said %r" % out)
                return out
            chunk = self.s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk

    def cmd(self, text):
        self.s.sendall(text)
        return self.line()

    def retr(self, i):
        """RETR i: the answer must be exactly "+OK ...\r\n" + EXPECTED[i-1]."""
        self.s.sendall(b"RETR %d\r\n" % i)
        want = EXPECTED[i - 1]
        buf = self.buf
        recv = self.s.recv
        while not buf.endswith(b"\r\n.\r\n"):
            if buf.startswith(b"-ERR") and b"\r\n" in buf:
                raise RuntimeError("RETR %d: %r" % (i, bytes(buf)))
            chunk = recv(65536)
            self.recvs += 1
            if not chunk:
                raise RuntimeError("connection closed in RETR %d" % i)
            buf += chunk
        nl = buf.find(b"\r\n")
        if not buf.startswith(b"+OK") or buf[nl + 2:] != want:
            raise RuntimeError("RETR %d: answer not byte-exact (%d bytes, want %d)" %
                               (i, len(buf) - nl - 2, len(want)))
        n = len(buf) - nl - 2
        self.buf = bytearray()
        return n

    def close(self):
        self.s.close()


def session(port, user, hold=None, what=None):
    """One session of the client CLIENT names: USER/PASS, RETR 1..N, hold()
    while it is open, QUIT. With `what`, records the client's CPU (and
    recv() calls) per session. Returns the session's time measured by the
    client itself (CLIENT=c) or None."""
    if CLIENT == "c":
        (s,), total = c_run(port, [user], hold)
        assert s["retrs"] == N and s["bytes"] == sum(map(len, EXPECTED)), s
        if what:
            CLIENT_SPLIT.setdefault(what, []).append((total["user_us"] / 1e6,
                                                      total["sys_us"] / 1e6))
            CLIENT_CPU.setdefault((port, what), []).append(total["cpu_us"] / 1e6)
            CLIENT_RECVS.setdefault(what, []).append(s["recvs"] / N)
            RETR_WALL.setdefault(what, []).append(s["retr_us"] / 1e6)
        return s["session_us"] / 1e6
    t0 = time.thread_time()
    total = 0
    if CLIENT == "poplib":
        p = poplib.POP3("127.0.0.1", port, timeout=120)
        p.user(user)
        p.pass_(PASSWORD)
        count, _ = p.stat()
        assert count == N, (user, count)
        for i in range(1, count + 1):
            total += p.retr(i)[2]
        client = time.thread_time() - t0
        if hold:
            hold()
        p.quit()
    else:
        p = RawPop3(port)
        p.cmd(b"USER %s\r\n" % user.encode())
        p.cmd(b"PASS %s\r\n" % PASSWORD.encode())
        count = int(p.cmd(b"STAT\r\n").split()[1])
        assert count == N, (user, count)
        for i in range(1, count + 1):
            total += p.retr(i)
        client = time.thread_time() - t0
        if what:
            CLIENT_RECVS.setdefault(what, []).append(p.recvs / N)
        if hold:
            hold()
        p.cmd(b"QUIT\r\n")
        p.close()
    if what:
        CLIENT_CPU.setdefault((port, what), []).append(client)
    return None


def multi(p, text):
    """One command with a multi-line answer (CAPA) on a RawPop3."""
    p.s.sendall(text)
    while not p.buf.endswith(b"\r\n.\r\n"):
        chunk = p.s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        p.buf += chunk
    if not p.buf.startswith(b"+OK"):
        raise RuntimeError("server said %r" % bytes(p.buf[:80]))
    p.buf = bytearray()


def hops(side, user, prelogin):
    """Median round-trip microseconds of one command at a time (HOPS=1), the
    kinds interleaved round by round so that the load moves them alike."""
    side.settle()
    p0 = RawPop3(side.port) if prelogin else None  # stays before login
    p = RawPop3(side.port)
    p.cmd(b"USER %s\r\n" % user.encode())
    p.cmd(b"PASS %s\r\n" % PASSWORD.encode())
    kinds = [("NOOP", lambda i: p.cmd(b"NOOP\r\n")), ("RETR", p.retr)]
    if prelogin:
        kinds.insert(0, ("CAPA before login", lambda i: multi(p0, b"CAPA\r\n")))
    rounds = {}
    for _ in range(5):
        for name, fn in kinds:
            t = time.perf_counter()
            for i in range(1, N + 1):
                fn(i)
            rounds.setdefault(name, []).append((time.perf_counter() - t) * 1e6 / N)
    p.cmd(b"QUIT\r\n")
    p.close()
    if p0:
        p0.close()
    return {name: statistics.median(v) for name, v in rounds.items()}


def rss_kb(pid, key="Rss:"):
    """Rss (or Pss with key="Pss:") of a process in KiB, from smaps_rollup."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def smaps_top(pid, n=12):
    """The mappings of a process with the most resident KiB: [(kib, name)]."""
    per = {}
    name = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                parts = line.split()
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
                elif parts and parts[0] == "Rss:":
                    per[name] = per.get(name, 0) + int(parts[1])
    except OSError:
        return []
    return sorted(((v, k) for k, v in per.items()), reverse=True)[:n]


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid, children=True):
    """utime+stime (and, with children, cutime+cstime) of a process, seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def run_ns(pid):
    """Time a process spent on a CPU so far (ns, /proc/PID/schedstat)."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def ctxt(pid):
    """Context switches of a process so far (voluntary + involuntary):
    each voluntary one is a sleep and a wake-up."""
    n = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches:",
                                     "nonvoluntary_ctxt_switches:")):
                    n += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return n


def tree_cpu(root):
    """CPU seconds of a server: its master and every process below it, with
    the children they reaped (sessions and login processes that exited)."""
    return cpu_s(root) + sum(cpu_s(p) for p in procs_below(root, None))


def procs_below(root, name):
    out = []
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            comm = st[st.index("(") + 1:st.rindex(")")]
            ppid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append((int(d), comm))
    todo = [root]
    while todo:
        p = todo.pop()
        for pid, comm in kids.get(p, []):
            todo.append(pid)
            if name is None or comm == name:
                out.append(pid)
    return out


class Side:
    def __init__(self, name, port, root_pid, session_comm, login_comm, users):
        self.name, self.port, self.root = name, port, root_pid
        self.session_comm, self.login_comm, self.users = session_comm, login_comm, users
        self.cpu = {}  # what -> [seconds per run]

    def settle(self):
        """Waits until no session process is left (reaped: its CPU time is
        in its parent's cutime/cstime)."""
        for _ in range(200):
            if not procs_below(self.root, self.session_comm):
                return
            time.sleep(0.025)

    def one(self, user, what=None):
        """One session; with `what`, its CPU time is recorded: the session
        process (schedstat, while open after the RETRs), the login processes
        (schedstat, before and after) and the whole server (/proc stat ticks,
        reaped children included)."""
        self.settle()
        tree0 = tree_cpu(self.root)
        logins = {p: run_ns(p) for p in procs_below(self.root, self.login_comm)}
        login_cs = {p: ctxt(p) for p in logins}
        got = {}

        def hold():
            got["session"] = sum(run_ns(p) for p in procs_below(self.root, self.session_comm))
            got["session cs"] = sum(ctxt(p) for p in procs_below(self.root, self.session_comm))
            got["login cs"] = sum(ctxt(p) - n for p, n in login_cs.items())

        t = time.monotonic()
        own = session(self.port, user, hold, what and (self.name, what))
        elapsed = time.monotonic() - t if own is None else own
        if what:
            self.settle()
            login = sum(run_ns(p) - n for p, n in logins.items())
            self.cpu.setdefault(what + " session", []).append(got["session"] / 1e9)
            self.cpu.setdefault(what + " login", []).append(login / 1e9)
            self.cpu.setdefault(what + " session cs", []).append(got["session cs"])
            self.cpu.setdefault(what + " login cs", []).append(got["login cs"])
            self.cpu.setdefault(what + " server", []).append(tree_cpu(self.root) - tree0)
            self.cpu.setdefault(what + " client", []).append(
                CLIENT_CPU[(self.port, (self.name, what))][-1])
        return elapsed

    def parallel(self):
        """PAR sessions at once, one user each; (seconds, memory) with the
        memory of the session and login processes while every session is
        open after its RETRs. Records the server's and the client's CPU."""
        mem = {}

        def measure():
            sessions = procs_below(self.root, self.session_comm)
            logins = procs_below(self.root, self.login_comm)
            mem["sessions"] = len(sessions)
            for key, field in (("rss", "Rss:"), ("pss", "Pss:")):
                mem["session_" + key] = (statistics.mean(rss_kb(p, field) for p in sessions)
                                         if sessions else 0)
                mem["login_" + key] = sum(rss_kb(p, field) for p in logins)
            if sessions:
                mem["session_top"] = smaps_top(sessions[0])
            if logins:
                mem["login_top"] = smaps_top(logins[0])

        self.settle()
        tree0 = tree_cpu(self.root)
        what = (self.name, "par")
        if CLIENT == "c":
            sessions, total = c_run(self.port, self.users, measure)
            assert len(sessions) == len(self.users) and total["retrs"] == N * len(self.users), \
                total
            elapsed = total["wall_us"] / 1e6
            client = total["cpu_us"] / 1e6
            CLIENT_RECVS.setdefault(what, []).append(
                sum(s["recvs"] for s in sessions) / total["retrs"])
            RETR_WALL.setdefault(what, []).append(total["retr_wall_us"] / 1e6)
            CLIENT_SPLIT.setdefault(what, []).append((total["user_us"] / 1e6,
                                                      total["sys_us"] / 1e6))
        else:
            barrier = threading.Barrier(len(self.users) + 1)

            def hold():
                barrier.wait()   # every session is open, all RETRs done
                barrier.wait()   # measured

            errors = []

            def run(u):
                try:
                    session(self.port, u, hold, what)
                except Exception as e:  # noqa: BLE001
                    errors.append(e)
                    barrier.abort()

            key = (self.port, what)
            n0 = len(CLIENT_CPU.get(key, []))
            threads = [threading.Thread(target=run, args=(u,)) for u in self.users]
            t = time.monotonic()
            for th in threads:
                th.start()
            barrier.wait()
            paused = time.monotonic()
            measure()
            barrier.wait()
            resumed = time.monotonic()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]
            # The pause for measuring does not count.
            elapsed = (time.monotonic() - t) - (resumed - paused)
            client = sum(CLIENT_CPU[key][n0:])
        self.settle()
        self.cpu.setdefault("par server", []).append(tree_cpu(self.root) - tree0)
        self.cpu.setdefault("par client", []).append(client)
        return elapsed, mem


def strace_session(side, user, work):
    """One warm session with strace -f -ff on the server's master (which
    forks the session, and Dovecot's login processes too) and on its login
    processes already running: system calls per RETR of each kind of
    process, for both servers alike (STRACE=1)."""
    side.settle()
    prefix = os.path.join(work, "strace-" + side.name)
    pids = [side.root] + procs_below(side.root, side.login_comm)
    cmd = ["strace", "-f", "-qq", "-ff", "-o", prefix]
    for pid in pids:
        cmd += ["-p", str(pid)]
    tracer = subprocess.Popen(cmd)
    for _ in range(400):  # until every process is traced
        traced = 0
        for pid in pids:
            with open("/proc/%d/status" % pid) as f:
                traced += any(l.startswith("TracerPid:") and l.split()[1] != "0" for l in f)
        if traced == len(pids):
            break
        time.sleep(0.01)
    comm = {}

    def hold():
        for pid in procs_below(side.root, None):
            try:
                with open("/proc/%d/comm" % pid) as f:
                    comm[pid] = f.read().strip()
            except OSError:
                pass

    session(side.port, user, hold)
    side.settle()
    tracer.send_signal(2)
    tracer.wait(30)
    counts = {}
    for name in os.listdir(work):
        if not name.startswith("strace-" + side.name + "."):
            continue
        pid = int(name.rsplit(".", 1)[1])
        who = comm.get(pid, "master" if pid == side.root else "other")
        per = counts.setdefault(who, {})
        with open(os.path.join(work, name), errors="replace") as f:
            for line in f:
                m = re.match(r"^([a-z_0-9]+)\(", line)
                if m:
                    per[m.group(1)] = per.get(m.group(1), 0) + 1
        os.unlink(os.path.join(work, name))
    for who, per in sorted(counts.items()):
        total = sum(per.values())
        top = sorted(per.items(), key=lambda kv: -kv[1])[:10]
        print("%-10s %-12s %6.2f syscalls per RETR: %s" % (
            side.name, who, total / N, ", ".join("%s %.2f" % (k, v / N) for k, v in top)))


def main():
    if os.geteuid() != 0:
        sys.exit("run me as root")
    if CLIENT not in ("c", "raw", "poplib"):
        sys.exit("CLIENT must be c, raw or poplib")
    vmail = pwd.getpwnam("pbx-vmail")
    work = tempfile.mkdtemp(prefix="pbx-bench-pop3-", dir="/tmp")
    os.chmod(work, 0o755)
    src = os.path.join(work, "messages")
    names = make_messages(src, vmail)
    if CLIENT == "c":
        global C_EXE, C_EXPECTED
        C_EXE = build_c_client()
        C_EXPECTED = os.path.join(work, "expected")
        write_expected(C_EXPECTED)
    users = ["u%d" % i for i in range(PAR)]

    inst = harness.Instance(users={u: PASSWORD for u in users},
                            config={"pop3s_listen": "", "smtp_listen": "",
                                    "submission_listen": "", "submissions_listen": "",
                                    "imap_listen": "", "imaps_listen": "",
                                    "queue_manager_enable": "no",
                                    "local_delivery_enable": "no",
                                    "remote_delivery_enable": "no",
                                    "pop3_reply_ahead": os.environ.get("AHEAD", "yes")},
                            start=False)
    dove_port = harness.free_port()
    os.makedirs(os.path.join(work, "home"))
    for u in users:
        fill_maildir(os.path.join(inst.mail_dir, u, "Maildir"), src, names, vmail)
        home = os.path.join(work, "home", u)
        os.makedirs(home)
        os.chown(home, vmail.pw_uid, vmail.pw_gid)
        fill_maildir(os.path.join(home, "Maildir"), src, names, vmail)
    conf = dovecot_conf.write(work, "pop3", dove_port, vmail, users, PASSWORD)
    inst.start()
    dove = subprocess.Popen(["dovecot", "-F", "-c", conf])
    try:
        for _ in range(100):
            try:
                poplib.POP3("127.0.0.1", dove_port, timeout=2).quit()
                break
            except OSError:
                time.sleep(0.1)
        sides = [Side("pillarbox", inst.port("pop3"), inst.pid, "pop3d", "pop3-login", users),
                 Side("dovecot", dove_port, dove.pid, "pop3", "pop3-login", users)]
        p_side, d_side = sides
        res = {s.name: {} for s in sides}
        for s in sides:  # cold: the first session on each fresh Maildir
            res[s.name]["cold"] = s.one("u0", "cold")
        for r in range(RUNS):
            order = sides if r % 2 == 0 else sides[::-1]
            for s in order:
                res[s.name].setdefault("warm", []).append(s.one("u0", "warm"))
        for r in range(RUNS):
            order = sides if r % 2 == 0 else sides[::-1]
            for s in order:
                t, mem = s.parallel()
                res[s.name].setdefault("par", []).append(t)
                res[s.name]["mem"] = mem
        if os.environ.get("STRACE") == "1":
            for s in sides:
                strace_session(s, "u0", work)
        hop = {}
        if os.environ.get("HOPS") == "1":
            for s in sides:
                hop[s.name] = hops(s, "u0", s is p_side)
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        p, d = res["pillarbox"], res["dovecot"]
        print("POP3 RETR of %d messages of %d bytes; nproc %d; load %s; client %s; names %s" %
              (N, SIZE, os.cpu_count(), " ".join(load),
               {"c": "c (bench/pop3_load.cpp)", "raw": "raw (Python)",
                "poplib": "poplib (Python)"}[CLIENT],
               "S=,W=" if os.environ.get("W", "1") == "1" else "S= only"))
        print("%-28s %12s %12s %8s" % ("", "pillarbox", "dovecot", "ratio"))
        cold_p, cold_d = N / p["cold"], N / d["cold"]
        print("%-28s %12.0f %12.0f %7.2fx" % ("1 session, cold (msg/s)", cold_p, cold_d,
                                             cold_p / cold_d))
        warm_p, warm_d = N / statistics.median(p["warm"]), N / statistics.median(d["warm"])
        print("%-28s %12.0f %12.0f %7.2fx" % ("1 session, warm (msg/s)", warm_p, warm_d,
                                             warm_p / warm_d))
        par_p = PAR * N / statistics.median(p["par"])
        par_d = PAR * N / statistics.median(d["par"])
        print("%-28s %12.0f %12.0f %7.2fx" % ("%d sessions, warm (msg/s)" % PAR, par_p, par_d,
                                             par_p / par_d))
        if CLIENT == "c":  # the RETRs alone: first RETR sent to last answer received
            for label, what, per in (("1 session, warm, RETRs only", "warm", N),
                                     ("%d sessions, RETRs only" % PAR, "par", PAR * N)):
                vp = per / statistics.median(RETR_WALL[("pillarbox", what)])
                vd = per / statistics.median(RETR_WALL[("dovecot", what)])
                print("%-28s %12.0f %12.0f %7.2fx" % (label, vp, vd, vp / vd))
        print("%-28s %12s %12s %8s" % ("memory (KiB)", "pillarbox", "dovecot", "ratio"))
        for key in ("rss", "pss"):
            for s in sides:
                m = res[s.name]["mem"]
                m["per_" + key] = m["session_" + key] + m["login_" + key] / max(1, m["sessions"])
            mp, md = p["mem"]["per_" + key], d["mem"]["per_" + key]
            print("%-28s %12.0f %12.0f %7.2fx" % ("%s per session" % key.upper(), mp, md,
                                                 mp / md))
            print("  (session %s + login %s / %d sessions; pillarbox session %.0f, login %d; "
                  "dovecot session %.0f, login %d)" %
                  (key, key, p["mem"]["sessions"], p["mem"]["session_" + key],
                   p["mem"]["login_" + key], d["mem"]["session_" + key],
                   d["mem"]["login_" + key]))
        print("CPU per RETR (us; schedstat of the session and login processes, /proc "
              "utime+stime of the whole server tree, medians)")
        print("%-28s %12s %12s %8s" % ("", "pillarbox", "dovecot", "ratio"))
        for what in ("cold session", "cold login", "cold server", "cold client",
                     "warm session", "warm login", "warm server", "warm client", "par server",
                     "par client"):
            per = N * (PAR if what.startswith("par") else 1)
            vp = statistics.median(p_side.cpu.get(what, [0])) * 1e6 / per
            vd = statistics.median(d_side.cpu.get(what, [0])) * 1e6 / per
            print("%-28s %12.1f %12.1f %7s" % (what, vp, vd,
                                              "%.2fx" % (vp / vd) if vd else "-"))
        if CLIENT == "c":  # the whole pop3_load process (getrusage): user and system
            for what, per in (("warm", N), ("par", PAR * N)):
                for k, part in ((0, "user"), (1, "system")):
                    vp = statistics.median(x[k] for x in CLIENT_SPLIT[("pillarbox", what)])
                    vd = statistics.median(x[k] for x in CLIENT_SPLIT[("dovecot", what)])
                    print("%-28s %12.1f %12.1f" % ("%s client process %s" % (what, part),
                                                   vp * 1e6 / per, vd * 1e6 / per))
        print("%-28s %12s %12s" % ("context switches per RETR", "pillarbox", "dovecot"))
        for what in ("warm session cs", "warm login cs"):
            vp = statistics.median(p_side.cpu.get(what, [0])) / N
            vd = statistics.median(d_side.cpu.get(what, [0])) / N
            print("%-28s %12.2f %12.2f" % (what[:-3], vp, vd))
        if CLIENT in ("raw", "c"):
            for what in ("cold", "warm", "par"):
                vp = statistics.median(CLIENT_RECVS.get(("pillarbox", what), [0]))
                vd = statistics.median(CLIENT_RECVS.get(("dovecot", what), [0]))
                print("%-28s %12.2f %12.2f" % ("client recv() per RETR, " + what, vp, vd))
        if hop:
            print("round trip of one command (us, median of 5 x %d)" % N)
            for s in sides:
                print("  %-10s %s" % (s.name, ", ".join(
                    "%s %.1f" % kv for kv in hop[s.name].items())))
            h = hop["pillarbox"]
            leg = h["NOOP"] - h["CAPA before login"]
            print("  pillarbox: session leg (NOOP - CAPA) %.1f us; RETR without it %.1f us "
                  "= %.0f msg/s (now %.0f)" % (leg, h["RETR"] - leg,
                                              1e6 / (h["RETR"] - leg), 1e6 / h["RETR"]))
        if os.environ.get("SMAPS") == "1":
            for s in sides:
                for role in ("session", "login"):
                    top = res[s.name]["mem"].get(role + "_top")
                    if top:
                        print("%s %s: resident KiB by mapping: %s" % (
                            s.name, role, ", ".join("%s %d" % (k, v) for v, k in top)))
    finally:
        dove.terminate()
        dove.wait(10)
        inst.stop(check=False)
        inst.cleanup()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
