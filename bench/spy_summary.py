"""Summarise py-spy's collapsed stacks (``bench.ingest --profile DIR``) per thread.

``python -m bench.spy_summary DIR/<run>.txt [--top N]`` prints, for each thread, its share of
the samples and the functions with the most samples of their own ("self") and in all
(including what they call).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

_THREAD_ADDRESS = re.compile(r" ?\(0x[0-9a-f]+\)")
_PATH_PREFIX = re.compile(r"\((?:[^()]*/(?:site-packages|src|python3\.\d+)/)")


def summarise(lines: list[str], top: int) -> str:
    samples: Counter[str] = Counter()
    own: defaultdict[str, Counter[str]] = defaultdict(Counter)
    total: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        thread = _THREAD_ADDRESS.sub("", thread)
        n = int(count)
        samples[thread] += n
        frames = [_PATH_PREFIX.sub("(", frame) for frame in frames]
        if frames:
            own[thread][frames[-1]] += n
        for frame in set(frames):
            total[thread][frame] += n
    out: list[str] = []
    every = sum(samples.values()) or 1
    for thread, n in samples.most_common():
        out.append(f"== {thread}: {n} samples, {100 * n / every:.1f}%")
        for title, table in (("self", own[thread]), ("total", total[thread])):
            out.append(f"  {title}:")
            out += [f"    {100 * c / n:5.1f}%  {frame}" for frame, c in table.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spy_summary", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    sys.stdout.write(summarise(args.file.read_text().splitlines(), args.top) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
