#!/usr/bin/env python3
"""Where an L7 proxy's CPU goes, from `perf script` of a `--call-graph dwarf` recording.

    perf script -i perf.data | bench/tools/l7_split.py NAME

Every sample is put in one kind: kernel time under the system call it ran in (or "no
system call": interrupts, softirqs on the way out), or user time under the first of
these callers on its stack: the upstream exchange (fulcrum's HTTP/1.1 client), the
request handler (fulcrum's proxy), the HTTP/2 crate, hyper, the async runtime, else
"other" (libc's copies, the allocator, HAProxy's own code). Prints each kind's share.
"""

import collections
import re
import sys

FRAME = re.compile(r"\s*[0-9a-f]+ (.*?)(\+0x[0-9a-f]+)? \((.*)\)$")

USER_KINDS = (
    ("upstream exchange", ("H1Conn::", "upstream::")),
    ("request handler", ("proxy::handle", "proxy::forward")),
    ("HTTP/2 crate", ("h2::",)),
    ("hyper", ("hyper",)),
    ("async runtime", ("tokio::",)),
)


def kind(frames):
    """The kind of one sample; `frames` leaf first, as (symbol, object) pairs."""
    if not frames:
        return "unknown"
    names = [f[0] for f in frames]
    if frames[0][1].startswith("[kernel"):
        call = next((n for n in names if n.startswith(("__x64_sys_", "__sys_"))), None)
        if call is None:
            return "kernel: no system call"
        return "kernel: " + call.replace("__x64_sys_", "").replace("__sys_", "")
    for label, needles in USER_KINDS:
        if any(any(k in n for k in needles) for n in names):
            return "user: " + label
    return "user: other"


def split(lines):
    """Counts of each kind over the samples in `lines` (perf script's text)."""
    counts = collections.Counter()
    frames = []
    started = False
    for line in lines:
        if not line.strip():
            if started:
                counts[kind(frames)] += 1
            frames, started = [], False
            continue
        m = FRAME.match(line)
        if m and started:
            frames.append((m.group(1), m.group(3)))
        elif not line.startswith((" ", "\t")):
            started = True
    if started:
        counts[kind(frames)] += 1
    return counts


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "proxy"
    counts = split(sys.stdin)
    total = sum(counts.values())
    if total == 0:
        print(f"{name}: no samples")
        return 1
    user = sum(v for k, v in counts.items() if k.startswith("user"))
    print(f"{name}: {total} samples, user space {100 * user / total:.1f}%")
    for k, v in counts.most_common():
        if v / total >= 0.005:
            print(f"  {100 * v / total:5.1f}%  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
