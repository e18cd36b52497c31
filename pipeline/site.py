"""The static newsroom: a page per published release, an index, and the feed beside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.feed import FeedEntry, write_feed
from pipeline.files import write_atomically
from pipeline.render import Renderer
from pipeline.store import Store


@dataclass(frozen=True, slots=True)
class SiteReport:
    pages: int
    feed_items: int
    index: Path
    feed: Path


def build_site(store: Store, renderer: Renderer, now: datetime) -> SiteReport:
    """Rebuild everything public from the database; only releases published by `now` appear."""
    out = renderer.settings.output_dir
    published = store.published_releases(now)
    for item in published:
        page = renderer.page(item.release, item.slug, item.published_at)
        write_atomically(out / "releases" / item.slug / "index.html", page)
    items = [
        {"release": p.release, "url": renderer.page_url(p.slug), "published_at": p.published_at} for p in published
    ]
    index = out / "index.html"
    write_atomically(index, renderer.render("index.html", items=items))
    entries = [FeedEntry(p.release, p.slug, p.published_at) for p in published[: renderer.settings.site.feed_items]]
    feed_path = out / "feed.xml"
    count = write_feed(renderer, entries, feed_path, now)
    return SiteReport(pages=len(published), feed_items=count, index=index, feed=feed_path)
