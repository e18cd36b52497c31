"""RSS 2.0 from published releases. A feed is written atomically and only if feedparser re-reads it cleanly
with every item intact; otherwise the previous file stays and FeedError says why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
from markupsafe import Markup

from pipeline.errors import FeedError
from pipeline.files import write_atomically
from pipeline.models import Release
from pipeline.render import Renderer, summary


@dataclass(frozen=True, slots=True)
class FeedEntry:
    release: Release
    slug: str
    published_at: datetime | None


def guid(base_url: str, slug: str, when: datetime | None) -> str:
    """A tag: URI (RFC 4151) from the site's host and the release slug: stable across re-parses and edits."""
    host = urlsplit(base_url).hostname or "localhost"
    year = when.year if when else 2000
    return f"tag:{host},{year}:releases/{slug}"


def render_item(renderer: Renderer, entry: FeedEntry) -> str:
    context = renderer.context(entry.release, entry.slug, entry.published_at)
    return renderer.render(
        "feed_item.xml",
        **context,
        guid=guid(renderer.settings.site.base_url, entry.slug, _first_day(entry)),
        content=renderer.render("release_content.html", **context),  # the full release for content:encoded
    )


def _first_day(entry: FeedEntry) -> datetime | None:
    # The guid's date must not move when the release is re-published; the printed date is fixed by the author.
    if entry.release.date:
        return datetime(entry.release.date.year, 1, 1)
    return entry.published_at


def render_feed(renderer: Renderer, entries: list[FeedEntry], built_at: datetime) -> str:
    items = [Markup(render_item(renderer, entry)) for entry in entries]  # noqa: S704 - rendered by our autoescaping templates
    return renderer.render(
        "feed.xml", items=items, built_at=built_at, self_url=f"{renderer.settings.site.base_url}/feed.xml"
    )


def check_feed(xml: str, expected: int) -> None:
    """Raise FeedError unless feedparser reads `xml` without error and finds every item with its fields."""
    parsed = feedparser.parse(xml.encode("utf-8"))
    if parsed.bozo:
        raise FeedError(f"feed does not parse cleanly: {parsed.bozo_exception}")
    if len(parsed.entries) != expected:
        raise FeedError(f"feed has {len(parsed.entries)} items, expected {expected}")
    for entry in parsed.entries:
        missing = [key for key in ("id", "link", "title", "published", "summary") if not entry.get(key)]
        if missing:
            raise FeedError(f"feed item {entry.get('id', '?')!r} lacks {', '.join(missing)}")


def write_feed(renderer: Renderer, entries: list[FeedEntry], path: Path, built_at: datetime) -> int:
    """Render, check and atomically write the feed. Returns the number of items."""
    xml = render_feed(renderer, entries, built_at)
    check_feed(xml, len(entries))
    write_atomically(path, xml)
    return len(entries)


__all__ = ["FeedEntry", "check_feed", "guid", "render_feed", "render_item", "summary", "write_feed"]
