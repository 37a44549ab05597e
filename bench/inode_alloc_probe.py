#!/usr/bin/env python3
"""What a file creation costs on DIR's file system, and after mass removals.

Explains why smtp_accept.sh's runs on /var/tmp were bimodal (bench/RESULTS.md,
2026-11-26): on ext4 without a journal, the inode allocator skips every free
inode deleted less than 60 s ago (300 s if its inode table block is dirty),
so after thousands of removals each creation in that block group walks past
all of them. With a journal (Debian's mkfs.ext4 default) it does not.

Without any mail server, in a new directory under DIR: creates N files
(create, write 2 KB, close; no fsync), creates REMOVE more, syncs them to
disk, removes them, then creates N files twice more. Prints the system CPU
time (the kernel's, where inode allocation runs) and the wall-clock time per
creation for each step, and how long the removal took (with `discard`, each
removal waits for a discard). Run it twice in a row: the second run meets
the first one's removals.

Usage: inode_alloc_probe.py [--dir DIR] [--count N] [--remove REMOVE]
"""

import argparse
import os
import shutil
import time

BODY = b"x" * 2048


def create(directory, count, tag):
    t0, w0 = os.times(), time.perf_counter()
    for i in range(count):
        fd = os.open(os.path.join(directory, f"{tag}{i}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, BODY)
        finally:
            os.close(fd)
    t1, w1 = os.times(), time.perf_counter()
    return (t1.system - t0.system) / count * 1e6, (w1 - w0) / count * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--remove", type=int, default=4000)
    a = ap.parse_args()
    base = os.path.join(a.dir, f"inode-probe.{os.getpid()}")
    os.mkdir(base)
    try:
        d = os.path.join(base, "d")
        os.mkdir(d)
        load = open("/proc/loadavg").read().split()[0]
        s, w = create(d, a.count, "a")
        print(f"{a.dir}: fresh directory:       {s:7.1f} us system {w:7.1f} us wall per creation (load {load})")
        create(d, a.remove, "b")
        os.sync()
        t0 = time.perf_counter()
        for i in range(a.remove):
            os.unlink(os.path.join(d, f"b{i}"))
        removal = time.perf_counter() - t0
        s, w = create(d, a.count, "c")
        print(f"{a.dir}: after {a.remove} removals: {s:7.1f} us system {w:7.1f} us wall per creation"
              f" (the removal took {removal:.1f} s)")
        s, w = create(d, a.count, "e")
        print(f"{a.dir}: the next {a.count}:       {s:7.1f} us system {w:7.1f} us wall per creation")
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
