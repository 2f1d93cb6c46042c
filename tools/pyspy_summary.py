"""Sum py-spy raw (collapsed) stacks: the share of samples in which each function is on the
stack (inclusive) and on top (self), line numbers dropped. Usage: pyspy_summary.py FILE...
Used by tools/profile_rush.sh; the figures in docs/BENCHMARKS.md come from it."""
from __future__ import annotations

import collections
import re
import sys


def main(files: list[str]) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    on_top: collections.Counter[str] = collections.Counter()
    total = 0
    for name in files:
        with open(name) as fh:
            for line in fh:
                line = line.rstrip()
                if not line:
                    continue
                stack, count = line.rsplit(" ", 1)
                n = int(count)
                total += n
                frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
                for frame in set(frames):
                    inclusive[frame] += n
                on_top[frames[-1]] += n
    print(f"samples: {total}")
    for title, counter in (("inclusive", inclusive), ("self", on_top)):
        print(f"--- {title}")
        for frame, n in counter.most_common(60):
            print(f"{100 * n / max(total, 1):5.1f}%  {frame[:140]}")


if __name__ == "__main__":
    main(sys.argv[1:])
