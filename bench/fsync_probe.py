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

each run by 1 thread and by THREADS threads at once (Postfix's 20 cleanup
processes fsync concurrently; Pillarbox's queue-manager runs the per-file
fsyncs of a wave one after the other on one worker thread and shares only
the directory fsync: `pillarbox-wave` models that, waves of WAVE messages).

Usage: fsync_probe.py [--dir DIR] [--count N] [--threads T] [--wave W]
"""

import argparse
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


def run(label, base, count, threads, fn):
    root = tempfile.mkdtemp(prefix="fsync-probe-", dir=base)
    os.mkdir(os.path.join(root, "incoming"))
    os.mkdir(os.path.join(root, "queue"))
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
    a = ap.parse_args()
    roots = []
    try:
        for threads in (1, a.threads):
            roots.append(run("postfix-like", a.dir, a.count, threads, postfix_like))
            roots.append(run("pillarbox", a.dir, a.count, threads, pillarbox_one))
        roots.append(pillarbox_waves(a.dir, a.count, a.wave))
    finally:
        # Removed only at the end: deleting thousands of inodes right before
        # a pattern makes ext4 without a journal skip them while allocating
        # (recently_deleted()), which would slow the next pattern down.
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)


if __name__ == "__main__":
    main()
