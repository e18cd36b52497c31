"""Releases parsed per second, per format, over a folder of releases (default: ../shared/corpus/releases).

    .venv/bin/python bench/parse.py [FOLDER] [--rounds N]

Prints figures; asserts nothing (timings belong here, not in tests)."""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from pipeline.errors import ReleaseParseError
from pipeline.parse import READERS, parse_release


def main() -> None:
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "releases"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=default)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    suffixes = {s for r in READERS for s in r.SUFFIXES if s}
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in suffixes)
    by_format: dict[str, list[float]] = defaultdict(list)
    for path in files:
        try:
            parse_release(path)  # warm caches (regexes, language model)
        except ReleaseParseError:
            continue
        start = time.perf_counter()
        for _ in range(args.rounds):
            parse_release(path)
        by_format[path.suffix.lower()].append((time.perf_counter() - start) / args.rounds)
    print(f"{'format':<8}{'files':>6}{'releases/s':>12}{'mean ms':>10}{'max ms':>9}")
    for suffix, times in sorted(by_format.items()):
        mean = sum(times) / len(times)
        print(f"{suffix:<8}{len(times):>6}{1 / mean:>12.0f}{mean * 1000:>10.2f}{max(times) * 1000:>9.2f}")


if __name__ == "__main__":
    main()
