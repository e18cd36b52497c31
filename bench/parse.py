"""Releases parsed per second, per format, over a folder of releases (default: ../shared/corpus/releases).

    .venv/bin/python bench/parse.py [FOLDER] [--rounds N]

Besides the files in the folder, each .txt release is also saved as a Word document (when python-docx is
installed, one paragraph per block) to time the .docx reader, and the partner feeds beside the corpus
(../shared/corpus/feeds) are timed per entry. The seed wire release is timed on its own.
Prints figures; asserts nothing (timings belong here, not in tests)."""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.errors import PipelineError
from pipeline.parse import READERS, parse_release
from pipeline.parse.feeds import read_feed


def per_call(action: Callable[[], object], rounds: int) -> float | None:
    """Mean seconds per call after one warm-up call (regexes, language model); None if it fails."""
    try:
        action()
    except PipelineError:
        return None
    start = time.perf_counter()
    for _ in range(rounds):
        action()
    return (time.perf_counter() - start) / rounds


def as_word(text_file: Path, folder: Path) -> Path | None:
    try:
        import docx
    except ImportError:
        return None
    document = docx.Document()
    text = text_file.read_text(encoding="utf-8", errors="replace")
    for block in re.split(r"\n\s*\n", text):
        if block.strip():
            document.add_paragraph(block.strip().replace("\x00", ""))
    target = folder / f"{text_file.stem}.docx"
    document.save(str(target))
    return target


def main() -> None:
    corpus = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=corpus / "releases")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    suffixes = {s for r in READERS for s in r.SUFFIXES if s}
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in suffixes)
    by_format: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as scratch:
        word_files = [w for p in files if p.suffix == ".txt" for w in [as_word(p, Path(scratch))] if w]
        for path in files + word_files:
            seconds = per_call(lambda path=path: parse_release(path), args.rounds)  # type: ignore[misc]
            if seconds is not None:
                by_format[path.suffix.lower()].append(seconds)
    zone = ZoneInfo("UTC")
    for feed in sorted((corpus / "feeds").glob("*.xml")):
        data = feed.read_bytes()
        entries = len(read_feed(data, feed.name, zone).items)
        seconds = per_call(lambda data=data, name=feed.name: read_feed(data, name, zone), args.rounds)  # type: ignore[misc]
        if seconds is not None and entries:
            by_format["feed entry"].extend([seconds / entries] * entries)
    print(f"{'format':<11}{'files':>6}{'releases/s':>12}{'mean ms':>10}{'max ms':>9}")
    for suffix, times in sorted(by_format.items()):
        mean = sum(times) / len(times)
        print(f"{suffix:<11}{len(times):>6}{1 / mean:>12.0f}{mean * 1000:>10.2f}{max(times) * 1000:>9.2f}")
    seed = args.folder / "000-seed-bioquebec.txt"
    if seed.exists():
        seconds = per_call(lambda: parse_release(seed), args.rounds * 5)
        if seconds is not None:
            print(f"seed wire release ({seed.name}): {seconds * 1000:.2f} ms ({1 / seconds:.0f} releases/s), one core")


if __name__ == "__main__":
    main()
