#!/usr/bin/env python3
"""Independent reference for fulcrum's Maglev table (equal weights).

Written from the NSDI 2016 paper's Pseudocode 1 (full permutation, modulo per
step) and the hash definition in src/maglev/hash.rs. It prints the same
offset/skip/first16/entries_fnv1a64 lines as golden-3-backends.txt, so the Rust
build can be checked against a second implementation:

    python3 src/maglev/test-data/maglev_reference.py
"""
import struct

MASK = 2**64 - 1


def fnv1a64(seed, data):
    h = seed
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK
    k ^= k >> 33
    return k


def maglev(names, m):
    offset = [fmix64(fnv1a64(0xCBF29CE484222325, n)) % m for n in names]
    skip = [fmix64(fnv1a64(0x84222325CBF29CE4, n)) % (m - 1) + 1 for n in names]
    nxt = [0] * len(names)
    entry = [None] * m
    filled = 0
    while True:
        for i in range(len(names)):
            c = (offset[i] + nxt[i] * skip[i]) % m
            while entry[c] is not None:
                nxt[i] += 1
                c = (offset[i] + nxt[i] * skip[i]) % m
            entry[c] = i
            nxt[i] += 1
            filled += 1
            if filled == m:
                return offset, skip, entry


names = [b"10.0.0.1:80", b"10.0.0.2:80", b"10.0.0.3:80"]
m = 65537
offset, skip, entry = maglev(names, m)
print(f"size {m}")
for i, n in enumerate(names):
    print(f"backend {i} {n.decode()} weight 1 offset {offset[i]} skip {skip[i]}")
print("first16 " + " ".join(str(e) for e in entry[:16]))
packed = b"".join(struct.pack("<I", e) for e in entry)
print(f"entries_fnv1a64 {fnv1a64(0xCBF29CE484222325, packed):016x}")
