#!/usr/bin/env python3
"""Writes each distinct frame of classic pcap files as a fuzzer seed.

Usage: pcap_frames.py OUTDIR FILE.pcap...  (the first seed byte 0xff means
"no offloaded VLAN" to the fuzz target). At most PER_FILE frames are taken
from each file, so the seed corpus stays small enough to load quickly. Handles both byte orders and both
timestamp precisions; stops at a truncated record.
"""
import hashlib
import os
import struct
import sys


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if incl > 262144 or off + incl > len(data):
            return
        yield data[off:off + incl]
        off += incl


PER_FILE = 64


def main():
    out = sys.argv[1]
    seen = set()
    for path in sys.argv[2:]:
        for i, fr in enumerate(frames(path)):
            if i >= PER_FILE:
                break
            fr = fr[:4096]
            h = hashlib.sha1(fr).hexdigest()
            if h in seen:
                continue
            seen.add(h)
            with open(os.path.join(out, h), "wb") as f:
                f.write(b"\xff" + fr)


if __name__ == "__main__":
    main()
