#!/usr/bin/env python3
"""Do concurrent fdatasyncs of disjoint ranges of one file overlap on this disk?

Each of N threads writes 1 KiB at its own 4 KiB-aligned offsets of one preallocated file and
fdatasyncs after each write, for SECONDS seconds; prints syncs per second and the mean time of
one sync for N = 1..4 (decision 108 in docs/ARCHITECTURE.md: the engine runs two flushes at
once because they do). The file goes in DIR (default: target/, on the disk the data lives on)
and is removed at the end.

    python3 benches/fsync-threads.py [DIR] [SECONDS]
"""
import os
import sys
import threading
import time

directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target")
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
os.makedirs(directory, exist_ok=True)
path = os.path.join(directory, "fsync-threads.dat")
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
try:
    os.ftruncate(fd, 64 << 20)
    os.fsync(fd)

    def worker(index, threads, stop, counts):
        offset, done, data = index * 4096, 0, b"x" * 1024
        while time.time() < stop:
            os.pwrite(fd, data, offset)
            os.fdatasync(fd)
            offset = (offset + threads * 4096) % (64 << 20)
            done += 1
        counts[index] = done

    for threads in (1, 2, 3, 4):
        counts = [0] * threads
        stop = time.time() + seconds
        workers = [threading.Thread(target=worker, args=(i, threads, stop, counts)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = sum(counts)
        print(f"{threads} threads: {total / seconds:,.0f} syncs/s, {seconds * 1e6 * threads / max(total, 1):.0f} us each")
finally:
    os.close(fd)
    os.unlink(path)
