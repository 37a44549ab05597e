#!/usr/bin/env python3
"""1,000 idle IMAP sessions, Pillarbox (imap-login + imapd) vs Dovecot
(imap-login + imap), side by side in one run: the memory they take.

    PBX_BUILD_DIR=build-bench python3 bench/imap_idle.py   # as root

Both servers are set up as in imap_mixed.py (same users, the same N
messages hard-linked into each user's INBOX, 127.0.0.1 without TLS, plain
LOGIN allowed on loopback). SESSIONS connections (spread over USERS users)
each LOGIN, SELECT INBOX and IDLE; once all are idling, the RSS and PSS
(/proc/PID/smaps_rollup) of the login processes and of the session
processes are summed, and of the whole server tree (with authd / Dovecot's
auth, anvil, log, config, stats). Then a message is linked into one user's
new/ and every session of that user must report EXISTS (IDLE still works
with that many sessions). Limits raised for both so that SESSIONS fit:
Pillarbox imap_max_connections / imap_max_connections_per_ip; Dovecot
mail_max_userip_connections, service imap process_limit, imap-login
client_limit. File descriptors: the benchmark's own soft limit must allow
2 x SESSIONS (it raises it to the hard limit).
Environment: SESSIONS (1000), USERS (10), N (100), PBX_BUILD_DIR, KEEP=1.
"""

import os
import resource
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imap_mixed as mx  # noqa: E402

SESSIONS = int(os.environ.get("SESSIONS", "1000"))
USERS = int(os.environ.get("USERS", "10"))
N = int(os.environ.get("N", "100"))


def open_idle(port, users, count):
    """count sessions, round robin over users, each SELECTed and IDLE."""
    out = []
    t0 = time.monotonic()
    for i in range(count):
        user = users[i % len(users)]
        c = mx.Client(port)
        c.cmd(b'LOGIN %s "%s"' % (user.encode(), mx.PASSWORD.encode()))
        c.cmd(b"SELECT INBOX")
        c.sock.sendall(b"i IDLE\r\n")
        line = c.line()
        if not line.startswith(b"+"):
            raise mx.ImapError("IDLE refused: %r" % line)
        c.user = user
        out.append(c)
        if (i + 1) % 200 == 0:
            print("  %d sessions idling (%.0f s)" % (i + 1, time.monotonic() - t0), flush=True)
    return out


def smaps(pid):
    out = {"Rss": 0, "Pss": 0}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k = line.split(":")[0]
                if k in out:
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out


def measure(root, login_comm, session_comm):
    t = mx.proc_table()
    res = {"login": [0, 0, 0], "session": [0, 0, 0], "all": [0, 0, 0]}
    for pid in mx.tree(t, root):
        comm = t[pid][1]
        m = smaps(pid)
        for k in ["all"] + (["login"] if comm == login_comm else []) + \
                (["session"] if comm == session_comm else []):
            res[k][0] += 1
            res[k][1] += m["Rss"]
            res[k][2] += m["Pss"]
    return res


def new_mail_seen(clients, maildir_of, template_file):
    """Links a message into the first user's new/; every session of that
    user must say EXISTS within 10 s."""
    user = clients[0].user
    mine = [c for c in clients if c.user == user]
    os.link(template_file, os.path.join(maildir_of(user), "new",
                                        "%d.idle-bench.host" % int(time.time())))
    deadline = time.monotonic() + 10
    pending = {c.sock.fileno(): c for c in mine}
    while pending and time.monotonic() < deadline:
        r, _, _ = select.select(list(pending), [], [], 0.5)
        for fd in r:
            c = pending[fd]
            c.sock.settimeout(5)
            line = c.line()
            if b"EXISTS" in line:
                del pending[fd]
    return len(mine) - len(pending), len(mine)


def main():
    if os.geteuid() != 0:
        sys.exit("run me as root")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    users = ["u%d" % i for i in range(USERS)]
    srv = mx.Servers(
        users, N,
        pbx_config={"imap_max_connections": str(SESSIONS + 10),
                    "imap_max_connections_per_ip": str(SESSIONS + 10)},
        dovecot_extra="""
protocol imap {
  mail_max_userip_connections = %d
}
service imap {
  process_limit = %d
}
service imap-login {
  client_limit = %d
}
default_client_limit = %d
""" % (SESSIONS + 10, SESSIONS + 10, SESSIONS + 10, 4 * SESSIONS))
    results = {}
    try:
        sides = srv.start()
        template = os.path.join(srv.work, "template", "cur")
        one_file = os.path.join(template, sorted(os.listdir(template))[0])
        for name, port, root, login, sess in sides:
            print("%s: opening %d sessions" % (name, SESSIONS), flush=True)
            clients = open_idle(port, users, SESSIONS)
            time.sleep(1)  # let the last processes settle (not a synchronisation)
            m = measure(root, login, sess)
            if name == "pillarbox":
                def maildir_of(u):
                    return os.path.join(srv.inst.mail_dir, u, "Maildir")
            else:
                def maildir_of(u):
                    return os.path.join(srv.work, "home", u, "Maildir")
            seen, want = new_mail_seen(clients, maildir_of, one_file)
            m["idle_seen"] = (seen, want)
            results[name] = m
            for c in clients:
                c.close()
            print("%s: %d login processes %d kB RSS; %d sessions %d kB RSS, %d kB PSS; "
                  "whole server %d kB RSS, %d kB PSS; new mail seen by %d of %d idling "
                  "sessions of that user" %
                  (name, m["login"][0], m["login"][1], m["session"][0], m["session"][1],
                   m["session"][2], m["all"][1], m["all"][2], seen, want), flush=True)
            time.sleep(2)
    finally:
        srv.stop()
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    p, d = results["pillarbox"], results["dovecot"]
    print("%d idle IMAP sessions (IDLE, %d messages selected); load %s" % (SESSIONS, N, loadavg))
    print("%-40s %12s %12s %8s" % ("", "pillarbox", "dovecot", "ratio"))
    for label, key, i in [("session processes", "session", 0), ("login processes", "login", 0)]:
        print("%-40s %12d %12d" % (label, p[key][i], d[key][i]))
    for label, key, i in [("login + sessions, RSS sum (MiB)", "ls", 1),
                          ("login + sessions, PSS sum (MiB)", "ls", 2),
                          ("whole server, RSS sum (MiB)", "all", 1),
                          ("whole server, PSS sum (MiB)", "all", 2)]:
        if key == "ls":
            a = (p["login"][i] + p["session"][i]) / 1024
            b = (d["login"][i] + d["session"][i]) / 1024
        else:
            a, b = p[key][i] / 1024, d[key][i] / 1024
        print("%-40s %12.1f %12.1f %7.2f" % (label, a, b, a / b))
    print("%-40s %12.1f %12.1f" % ("RSS per session process (KiB)",
                                    p["session"][1] / max(1, p["session"][0]),
                                    d["session"][1] / max(1, d["session"][0])))
    print("(ratio: pillarbox / dovecot; target: login + sessions well under 1 GiB)")


if __name__ == "__main__":
    main()
