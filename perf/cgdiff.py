#!/usr/bin/env python3
"""Instructions per call from two callgrind outputs of the same program run for N and M calls.

    perf/cgdiff.py SHORT.out LONG.out CALLS [TOP]

CALLS is the difference in calls between the two runs. Prints the total per call, the same
total without the clock source (clock_gettime and the vDSO code valgrind names after the
function that first called it, `once_cell::...::initialize::{{closure}}`), whose cost per
read varies from run to run under valgrind (a retry loop), and with TOP the TOP functions by
self cost per call, with their calls per call.
"""
import collections
import re
import sys

CLOCK = ("clock_gettime", "once_cell::imp::OnceCell<T>::initialize::{{closure}}")


def load(path):
    names, self_cost, calls = {}, collections.Counter(), collections.Counter()
    fn = cfn = None
    skip = False
    for line in open(path, errors="replace"):
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
            if m.group(2):
                names[m.group(1)] = m.group(2)
            name = names.get(m.group(1), m.group(1))
            if line.startswith("fn="):
                fn = name
            else:
                cfn = name
            continue
        if line.startswith("calls="):
            skip = True
            calls[cfn] += int(line.split()[0][6:])
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if skip:
                skip = False
                continue
            if len(parts) >= 2 and fn:
                self_cost[fn] += int(parts[1])
    return self_cost, calls


def main():
    (a, ca), (b, cb) = load(sys.argv[1]), load(sys.argv[2])
    n = float(sys.argv[3])
    per = {k: (b[k] - a.get(k, 0)) / n for k in b}
    total = sum(per.values())
    clock = sum(v for k, v in per.items() if k.startswith(CLOCK))
    reads = (cb.get("clock_gettime@@GLIBC_2.17", 0) - ca.get("clock_gettime@@GLIBC_2.17", 0)) / n
    print(f"{total:.0f} per call; {total - clock:.0f} without the clock source "
          f"({reads:.1f} clock reads per call)")
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    for k, v in sorted(per.items(), key=lambda x: -x[1])[:top]:
        print(f"{v:9.0f} {(cb.get(k, 0) - ca.get(k, 0)) / n:6.2f}x  {k[:140]}")


main()
