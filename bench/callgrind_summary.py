#!/usr/bin/env python3
"""Reads one callgrind output file (one dump) for bench/instructions.sh.

callgrind_annotate attributes every cost of a dump taken with ``callgrind_control -d``
to ``clone`` (the dump's call contexts start mid-stack), so this reads the format itself:
``ob=``/``fl=``/``fn=`` and their ``c*`` forms with name compression (``(id) name``
defines, ``(id)`` refers; objects and functions are two id spaces, file names are not
needed and skipped), cost lines
(a position then the events; only the first event is read), and ``calls=`` lines, whose
next cost line is the inclusive cost of that call, not the caller's own.

Prints one JSON object:
  total          the dump's ``summary:`` (every instruction in it)
  pmd_self       self cost of the functions in an object matching ``--pmd`` and of
                 ``__tls_get_addr`` (the PMD's mempool calls make those lookups)
  rx_function    the ``--pmd`` function with the largest self cost (the replay's
                 receive burst) and rx_calls, the calls made to it
  excluded       inclusive cost of the calls to functions matching ``--exclude``
Only the Python standard library is used.
"""

import argparse
import json
import re
import sys

NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


class Names:
    """One compressed-name id space."""

    def __init__(self):
        self.by_id = {}

    def resolve(self, text):
        m = NAMED.match(text)
        if not m:
            return text
        ident, name = m.group(1), m.group(2)
        if name is not None:
            self.by_id[ident] = name
            return name
        return self.by_id.get(ident, f"({ident})")


def first_event(fields):
    """The first event's count of a cost line's fields (after the position)."""
    return int(fields[1]) if len(fields) > 1 else 0


def summarize(lines, pmd_re, exclude_re):
    objs, fns = Names(), Names()  # file names (fl=, fi=, ...) are not needed
    ob = fn = None
    cob = cfn = None
    pending_call = None  # (object, function, count) of the last calls= line
    total = 0
    self_cost = {}
    calls = {}
    excluded = 0
    for raw in lines:
        line = raw.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        if line.startswith("summary:"):
            total = int(line.split()[1])
            continue
        key, sep, value = line.partition("=")
        if sep and key in ("ob", "fl", "fi", "fe", "fn", "cob", "cfi", "cfl", "cfn", "calls"):
            if key == "ob":
                ob = objs.resolve(value)
            elif key == "fn":
                fn = fns.resolve(value)
                cob = cfn = None
            elif key == "cob":
                cob = objs.resolve(value)
            elif key == "cfn":
                cfn = fns.resolve(value)
            elif key == "calls":
                count = int(value.split()[0])
                pending_call = (cob if cob is not None else ob, cfn, count)
            continue
        if ":" in line.split()[0]:
            continue  # a header line (events:, positions:, cmd:, ...)
        fields = line.split()
        if not fields or not re.match(r"^([+-]?\d+|\*|0x[0-9a-f]+)$", fields[0]):
            continue
        cost = first_event(fields)
        if pending_call is not None:
            c_ob, c_fn, count = pending_call
            key_ = (c_ob, c_fn)
            calls[key_] = calls.get(key_, 0) + count
            if c_fn is not None and exclude_re and re.search(exclude_re, c_fn):
                excluded += cost
            pending_call = None
            cob = cfn = None
            continue
        k = (ob, fn)
        self_cost[k] = self_cost.get(k, 0) + cost
    pmd = {k: v for k, v in self_cost.items() if k[0] and re.search(pmd_re, k[0])}
    tls = sum(v for k, v in self_cost.items() if k[1] == "__tls_get_addr")
    rx = max(pmd, key=pmd.get) if pmd else None
    return {
        "total": total,
        "pmd_self": sum(pmd.values()) + tls,
        "rx_function": rx[1] if rx else None,
        "rx_calls": calls.get(rx, 0) if rx else 0,
        "excluded": excluded,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--pmd", default=r"librte_net_pcap")
    ap.add_argument("--exclude", default="", help="regex: calls to leave out (inclusive)")
    args = ap.parse_args(argv)
    with open(args.file, errors="replace") as f:
        out = summarize(f, args.pmd, args.exclude)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
