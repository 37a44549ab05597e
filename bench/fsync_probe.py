#!/usr/bin/env python3
"""What the spool's disk allows: durable small-file commits per second.

Explains smtp_accept.sh's figures: a mail server that answers 250 only after
fsync cannot go faster than its disk lets it commit files, and how the
commits are arranged (how many fsyncs per message, serial or in parallel)
decides how close it gets. Each pattern below writes 2 KB files in a fresh
directory on the same filesystem as DIR (default /var/tmp) and reports
commits/s:

  postfix-like  create, write, fsync the file, rename: one fsync per message
                (Postfix's cleanup(8); the rename is not fsynced)
  pillarbox     create incoming/ID, write, fsync, rename to queue/ID.msg;
                envelope to a temp file, fsync, rename; fsync queue/: the
                commit protocol of DESIGN §4 (three fsyncs per message)
  pillarbox-sfr the same files and fsyncs in the order queue-manager/commit.cpp
                makes them today: both files written, their writeback started
                and waited for (sync_file_range), both fsynced, both renamed,
                queue/ fsynced (two journal commits per message on ext4)
  maildir       local-delivery's Maildir store: tmp/ file, fsync, link into
                new/, unlink, fsync new/ (issue 4's rule)
  postfix-maildir  postfix-like, then the Maildir file fsynced without a
                directory fsync (Postfix's local(8))
  pillarbox-maildir  pillarbox-sfr, then maildir

With --sequential-only, only the 1-thread runs: the ceiling of a 1-session
benchmark, where every message's file-system work is serial and no SMTP is
spoken at all.

each run by 1 thread and by THREADS threads at once (Postfix's 20 cleanup
processes fsync concurrently; Pillarbox's queue-manager runs the per-file
fsyncs of a wave one after the other on one worker thread and shares only
the directory fsync: `pillarbox-wave` models that, waves of WAVE messages).

Usage: fsync_probe.py [--dir DIR] [--count N] [--threads T] [--wave W]
"""

import argparse
import ctypes
import os
import shutil
import tempfile
import threading
import time

BODY = b"x" * 2048
ENVELOPE = b"e" * 350


def write_file(path, data, sync=True):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong,
                                  ctypes.c_uint]
SFR_WAIT_BEFORE, SFR_WRITE, SFR_WAIT_AFTER = 1, 2, 4


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def postfix_like(root, name):
    tmp = os.path.join(root, "incoming", name + ".t")
    write_file(tmp, BODY)
    os.rename(tmp, os.path.join(root, "incoming", name))


def pillarbox_one(root, name, dir_sync=True):
    inc = os.path.join(root, "incoming", name)
    write_file(inc, BODY)
    os.rename(inc, os.path.join(root, "queue", name + ".msg"))
    env = os.path.join(root, "queue", name + ".env")
    write_file(env + ".tmp", ENVELOPE)
    os.rename(env + ".tmp", env)
    if dir_sync:
        fsync_dir(os.path.join(root, "queue"))


def pillarbox_sfr(root, name):
    inc = os.path.join(root, "incoming", name)
    env = os.path.join(root, "queue", name + ".env")
    fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) for p in (inc, env + ".tmp")]
    try:
        os.write(fds[0], BODY)
        os.write(fds[1], ENVELOPE)
        for flags in (SFR_WRITE, SFR_WAIT_BEFORE | SFR_WRITE | SFR_WAIT_AFTER):
            for fd in fds:
                _libc.sync_file_range(fd, 0, 0, flags)
        for fd in fds:
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)
    os.rename(inc, os.path.join(root, "queue", name + ".msg"))
    os.rename(env + ".tmp", env)
    fsync_dir(os.path.join(root, "queue"))


def maildir_store(root, name, dir_sync=True):
    tmp = os.path.join(root, "Maildir", "tmp", name)
    write_file(tmp, BODY)
    os.link(tmp, os.path.join(root, "Maildir", "new", name))
    os.unlink(tmp)
    if dir_sync:
        fsync_dir(os.path.join(root, "Maildir", "new"))


def postfix_maildir(root, name):
    postfix_like(root, name)
    maildir_store(root, name, dir_sync=False)


def pillarbox_maildir(root, name):
    pillarbox_sfr(root, name)
    maildir_store(root, name)


def run(label, base, count, threads, fn):
    root = tempfile.mkdtemp(prefix="fsync-probe-", dir=base)
    os.mkdir(os.path.join(root, "incoming"))
    os.mkdir(os.path.join(root, "queue"))
    for d in ("Maildir", "Maildir/tmp", "Maildir/new"):
        os.mkdir(os.path.join(root, d))
    per = count // threads
    t0 = time.monotonic()

    def worker(k):
        for i in range(per):
            fn(root, "%d-%d" % (k, i))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.monotonic() - t0
    print("%-16s threads=%-3d messages=%-5d %7.2f s %8.1f msg/s"
          % (label, threads, per * threads, secs, per * threads / secs), flush=True)
    return root


def pillarbox_waves(base, count, wave):
    """One thread, per wave: every message's two file fsyncs, then one
    directory fsync (queue-manager/commit.cpp run_wave)."""
    root = tempfile.mkdtemp(prefix="fsync-probe-", dir=base)
    os.mkdir(os.path.join(root, "incoming"))
    os.mkdir(os.path.join(root, "queue"))
    t0 = time.monotonic()
    done = 0
    while done < count:
        n = min(wave, count - done)
        for i in range(n):
            pillarbox_one(root, str(done + i), dir_sync=False)
        fsync_dir(os.path.join(root, "queue"))
        done += n
    secs = time.monotonic() - t0
    print("%-16s threads=1   messages=%-5d %7.2f s %8.1f msg/s  (waves of %d)"
          % ("pillarbox-wave", count, secs, count / secs, wave), flush=True)
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--threads", type=int, default=20)
    ap.add_argument("--wave", type=int, default=10)
    ap.add_argument("--sequential-only", action="store_true")
    a = ap.parse_args()
    patterns = [("postfix-like", postfix_like), ("pillarbox", pillarbox_one),
                ("pillarbox-sfr", pillarbox_sfr), ("maildir", maildir_store),
                ("postfix-maildir", postfix_maildir), ("pillarbox-maildir", pillarbox_maildir)]
    roots = []
    try:
        for threads in (1,) if a.sequential_only else (1, a.threads):
            for label, fn in patterns:
                roots.append(run(label, a.dir, a.count, threads, fn))
        if not a.sequential_only:
            roots.append(pillarbox_waves(a.dir, a.count, a.wave))
    finally:
        # Removed only at the end: deleting thousands of inodes right before
        # a pattern makes ext4 without a journal skip them while allocating
        # (recently_deleted()), which would slow the next pattern down.
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)


if __name__ == "__main__":
    main()
