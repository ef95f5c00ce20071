#!/usr/bin/env python3
"""The data dir's own flush latency, without the gateway: what one group commit costs the disk.

usage: scripts/disk-flush-probe.py DIR [COUNT] [GAP_MS]
  DIR     a directory on the file system under test (the gateway's data dir's parent)
  COUNT   commits to time (default 5000)
  GAP_MS  pause between commits, in ms (default 1: about the 1,000 msgs/s scenario;
          0 = back to back)

Like the message log (src/store/msglog.rs): a 64 MiB file of written zeros, then COUNT commits
of one 300-byte record each into those blocks, each `pwrite` + `fdatasync` (modes "fdatasync")
and, for comparison, each a 4 KiB `O_DIRECT | O_DSYNC` write ("direct"). Prints p50/p90/p99/
p999/max per mode in microseconds. Compare with `consult_edge_store_commit_seconds` and the
load generator's latency: what the probe does not show is not the disk's. Writes only inside
DIR, removes its file at the end.
"""
import mmap
import os
import sys
import time

RECORD = b"y" * 300
FILE_BYTES = 64 << 20
PAGE = 4096


def quantiles(lat):
    lat.sort()
    at = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
    return "p50 %.0f p90 %.0f p99 %.0f p999 %.0f max %.0f us" % (
        at(0.5), at(0.9), at(0.99), at(0.999), lat[-1] / 1000)


def probe(path, mode, count, gap_s):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, b"\0" * FILE_BYTES, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    flags = os.O_RDWR | (os.O_DIRECT | os.O_DSYNC if mode == "direct" else 0)
    fd = os.open(path, flags)
    page = mmap.mmap(-1, PAGE)  # page-aligned, as O_DIRECT requires
    page.write(b"y" * PAGE)
    lat, offset = [], 0
    try:
        for _ in range(count):
            start = time.perf_counter_ns()
            if mode == "direct":
                os.pwritev(fd, [page], offset - offset % PAGE)
            else:
                os.pwrite(fd, RECORD, offset)
                os.fdatasync(fd)
            lat.append(time.perf_counter_ns() - start)
            offset = (offset + len(RECORD)) % (FILE_BYTES - PAGE)
            if gap_s:
                time.sleep(gap_s)
    finally:
        os.close(fd)
        os.unlink(path)
    return quantiles(lat)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    gap_s = (float(sys.argv[3]) if len(sys.argv) > 3 else 1.0) / 1000
    path = os.path.join(directory, "disk-flush-probe.%d" % os.getpid())
    for mode in ("fdatasync", "direct"):
        print("%-9s %s" % (mode, probe(path, mode, count, gap_s)), flush=True)


if __name__ == "__main__":
    main()
