#!/usr/bin/env python3
"""The median and max of 20 small file + directory fsyncs in DIR, in ms:
what an fsync-per-message design (the outbox, a campaign's journal) pays
on that disk. Usage: scripts/fsync-probe.py DIR"""
import os
import statistics
import sys
import time

d = sys.argv[1]
p = os.path.join(d, ".fsync-probe")
ts = []
for _ in range(20):
    t = time.monotonic()
    with open(p, "wb") as f:
        f.write(b"x" * 500)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(d, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    ts.append((time.monotonic() - t) * 1000)
os.unlink(p)
print(f"median {statistics.median(ts):.2f} ms, max {max(ts):.2f} ms")
