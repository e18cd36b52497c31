"""Renders per second for the email (HTML with CSS inlined + text) and for feed items, and the time to build
and check the feeds of 10,000 releases.

    .venv/bin/python bench/render.py [--releases N] [--rounds N]

Uses the project's sample releases and a throwaway config; prints figures, asserts nothing."""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import load_settings
from pipeline.feed import FeedBuilder, FeedEntry, feed_sets
from pipeline.parse import parse_release, release_files
from pipeline.render import Renderer

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """\
database: sqlite:///var/bench.db
timezone: America/Toronto
sender: {from: newsroom@bench.example.com}
organization: {name: Bench Co, postal_address: "1 Bench Road, Halifax, NS"}
site: {base_url: https://news.bench.example.com, feed_items: 50}
unsubscribe: {mailto: unsubscribe@bench.example.com}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "config.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        renderer = Renderer(load_settings(config))
        samples = [parse_release(p) for p in release_files(ROOT / "releases")]

        start = time.perf_counter()
        for n in range(args.rounds):
            release = samples[n % len(samples)]
            renderer.email(release, f"{release.slug}-{n}")
        email_seconds = (time.perf_counter() - start) / args.rounds
        print(f"email (HTML inlined + text):  {1 / email_seconds:8.0f} renders/s  ({email_seconds * 1000:.2f} ms)")

        now = datetime(2026, 11, 26, 12, tzinfo=UTC)
        start = time.perf_counter()
        for n in range(args.rounds * 10):
            release = samples[n % len(samples)]
            builder = FeedBuilder(renderer, now)
            builder.rendered_item("rss", builder.item(FeedEntry(release, f"{release.slug}-{n}", now)))
        item_seconds = (time.perf_counter() - start) / (args.rounds * 10)
        print(f"feed item (RSS, with content): {1 / item_seconds:7.0f} renders/s  ({item_seconds * 1000:.2f} ms)")

        categories = ["products", "funding", "people", "events", "research"]
        entries = []
        for n in range(args.releases):
            base = samples[n % len(samples)]
            release = replace(
                base,
                headline=f"{base.title} #{n}",
                categories=(categories[n % len(categories)],),
                language="fr" if n % 4 == 0 else "en",
            )
            entries.append(FeedEntry(release, f"2026-11-01-release-{n}", now - timedelta(minutes=n)))
        settings_full = renderer.settings.site.model_copy(update={"feed_items": args.releases})
        big = Renderer(renderer.settings.model_copy(update={"site": settings_full}))
        start = time.perf_counter()
        sets = feed_sets(big, entries)
        built = FeedBuilder(big, now).build(sets[:1])  # the all-releases feed, every format, with its check
        seconds = time.perf_counter() - start
        size = sum(len(text.encode()) for text in built.values()) / 1024 / 1024
        print(
            f"feed of {args.releases:,} releases (RSS + Atom + JSON Feed, rendered and checked): "
            f"{seconds:.1f} s, {size:.0f} MB"
        )
        start = time.perf_counter()
        FeedBuilder(renderer, now).build(feed_sets(renderer, entries))
        seconds = time.perf_counter() - start
        print(
            f"every configured feed over {args.releases:,} releases ({len(sets)} sets x 3 formats, newest "
            f"{renderer.settings.site.feed_items} each): {seconds:.2f} s"
        )


if __name__ == "__main__":
    main()
