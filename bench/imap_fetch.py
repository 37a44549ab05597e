#!/usr/bin/env python3
"""imapd vs Dovecot's imap, session against session (both pre-authenticated,
no login process, no TLS): the same Maildir of N messages copied for each,
each server started as pbx-vmail on a socketpair, then

  cold:  SELECT INBOX + FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE), first run
         on a fresh copy (no uid list, no cache/index yet)
  warm:  the same again (uid list and cache/index present)
  rss:   VmRSS of the session process after SELECT of the N messages

    sudo python3 bench/imap_fetch.py --imapd build-bench/imapd/imapd [-n 5000] [--runs 3]

Run as root (it drops to pbx-vmail). Prints one line per run and medians.
"""

import argparse
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

DOVECOT = "/usr/lib/dovecot/imap"


def make_messages(maildir, n):
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, d), exist_ok=True)
    for i in range(n):
        body = ("Line %d of a message body, some text to make it ~4 KB.\r\n" % i) * 60
        msg = ("From: Sender %d <sender%d@example.net>\r\n"
               "To: alice@example.test\r\nSubject: message number %d\r\n"
               "Date: Tue, 1 Feb 2022 10:00:00 +0100\r\nMessage-ID: <m%d@example.net>\r\n"
               "\r\n" % (i, i, i, i)) + body
        name = "%d.M%dP1Q%d.bench,S=%d" % (1600000000 + i, i, i, len(msg))
        with open(os.path.join(maildir, "cur", name + ":2,"), "w", newline="") as f:
            f.write(msg)


def drop_caches():
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


class Server:
    def __init__(self, argv, env):
        v = pwd.getpwnam("pbx-vmail")
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL,
                                     env=env, user=v.pw_uid, group=v.pw_gid, extra_groups=[],
                                     cwd="/")
        theirs.close()
        self.sock = ours
        self.buf = b""
        self.read_line()  # PREAUTH

    def read_line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, tag, text):
        self.sock.sendall(tag + b" " + text + b"\r\n")
        n = 0
        while True:
            # Literals are not expected in these answers (no 8-bit headers).
            line = self.read_line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line)
                return n
            n += 1

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def close(self):
        try:
            self.cmd(b"z", b"LOGOUT")
        except Exception:
            pass
        self.sock.close()
        self.proc.wait(timeout=30)


def run_one(kind, maildir, imapd, workdir):
    if kind == "pillarbox":
        argv = [imapd, "-c", "/dev/null"]
        env = {"PBX_USER": "alice", "PBX_MAILBOX": maildir, "HOME": workdir}
    else:
        conf = os.path.join(workdir, "dovecot.conf")
        argv = [DOVECOT, "-c", conf]
        env = {"USER": "alice", "HOME": workdir}
    t0 = time.monotonic()
    s = Server(argv, env)
    s.cmd(b"a", b"SELECT INBOX")
    rss = s.rss_kb()
    lines = s.cmd(b"b", b"FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
    t = time.monotonic() - t0
    s.close()
    return t, lines, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imapd", required=True)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    v = pwd.getpwnam("pbx-vmail")
    top = tempfile.mkdtemp(prefix="pbx-imapbench-", dir="/var/tmp")
    os.chmod(top, 0o755)
    template = os.path.join(top, "template")
    make_messages(template, opts.n)
    results = {}
    for run in range(opts.runs):
        order = ["pillarbox", "dovecot"] if run % 2 == 0 else ["dovecot", "pillarbox"]
        for kind in order:
            work = os.path.join(top, "%s-%d" % (kind, run))
            maildir = os.path.join(work, "Maildir")
            shutil.copytree(template, maildir)
            with open(os.path.join(work, "dovecot.conf"), "w") as f:
                f.write("base_dir = %s/run\nlog_path = /dev/null\nmail_location = maildir:%s\n"
                        "ssl = no\nprotocols = imap\n" % (work, maildir))
            os.makedirs(os.path.join(work, "run"))
            for root, dirs, files in os.walk(work):
                for x in dirs + files:
                    os.chown(os.path.join(root, x), v.pw_uid, v.pw_gid)
            os.chown(work, v.pw_uid, v.pw_gid)
            drop_caches()
            cold, lines, rss = run_one(kind, maildir, opts.imapd, work)
            warm, lines2, _ = run_one(kind, maildir, opts.imapd, work)
            assert lines >= opts.n and lines2 >= opts.n, (lines, lines2)
            results.setdefault(kind, []).append((cold, warm, rss))
            print("%-9s run %d  cold %.3f s  warm %.3f s  rss %d kB" % (kind, run + 1, cold, warm,
                                                                      rss), flush=True)
            shutil.rmtree(work)
    shutil.rmtree(top)
    med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in results.items()}
    p, d = med["pillarbox"], med["dovecot"]
    print("median    pillarbox cold %.3f warm %.3f rss %d | dovecot cold %.3f warm %.3f rss %d"
          % (p[0], p[1], p[2], d[0], d[1], d[2]))
    print("speed ratio (dovecot time / pillarbox time): cold %.2fx  warm %.2fx; "
          "rss ratio pillarbox/dovecot %.2f" % (d[0] / p[0], d[1] / p[1], p[2] / d[2]))


if __name__ == "__main__":
    main()
