"""The static newsroom: a page per published release, paginated indexes (all, per category, per language), and
the feeds beside them. Only releases published by `now` (never before their embargo) appear."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from pipeline.feed import FILES, MEDIA_TYPES, FeedEntry, FeedSet, feed_sets, write_feeds
from pipeline.files import write_atomically
from pipeline.render import Renderer, summary
from pipeline.store import Store, StoredRelease


@dataclass(frozen=True, slots=True)
class SiteReport:
    pages: int
    feed_items: int
    index: Path
    feed: Path
    feeds: int = 0


def build_site(store: Store, renderer: Renderer, now: datetime) -> SiteReport:
    """Rebuild everything public from the database. Feeds are built and checked first: a feed that fails its
    check raises FeedError before any page changes."""
    settings = renderer.settings
    out = settings.output_dir
    published = store.published_releases(now)
    entries = [FeedEntry(p.release, p.slug, p.published_at, p.updated_at) for p in published]
    sets = feed_sets(renderer, entries)
    written_feeds = write_feeds(renderer, sets, out, now)
    alternates = {s.key: _alternates(renderer, s) for s in sets}
    for item in published:
        page = renderer.page(
            item.release,
            item.slug,
            item.published_at,
            feeds=alternates["all"],
            json_ld=_json_ld(renderer, item),
            updated_at=item.updated_at if item.release.correction else None,
        )
        write_atomically(out / "releases" / item.slug / "index.html", page)
    by_slug = {p.slug: p for p in published}
    for feed in sets:
        chosen = [by_slug[e.slug] for e in feed.entries]
        _write_listing(renderer, out / feed.folder, feed, chosen, alternates[feed.key])
    feed_path = out / FILES[settings.feeds.formats[0]]
    return SiteReport(
        pages=len(published),
        feed_items=min(len(published), settings.site.feed_items),
        index=out / "index.html",
        feed=feed_path,
        feeds=len(written_feeds),
    )


def _alternates(renderer: Renderer, feed: FeedSet) -> list[dict[str, str]]:
    base = renderer.settings.site.base_url
    names = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
    return [
        {"type": MEDIA_TYPES[fmt], "href": f"{base}/{feed.folder}{FILES[fmt]}", "title": f"{feed.title} ({names[fmt]})"}
        for fmt in renderer.settings.feeds.formats
    ]


def _write_listing(
    renderer: Renderer, folder: Path, feed: FeedSet, items: list[StoredRelease], feeds: list[dict[str, str]]
) -> None:
    """index.html, page/2/index.html, …: newest first, `site.page_size` a page."""
    size = renderer.settings.site.page_size
    base = f"{renderer.settings.site.base_url}/{feed.folder}"
    pages = max(1, -(-len(items) // size))
    for number in range(1, pages + 1):
        chunk = items[(number - 1) * size : number * size]
        listing = [
            {"release": p.release, "url": renderer.page_url(p.slug), "published_at": p.published_at} for p in chunk
        ]
        html = renderer.render(
            "index.html",
            items=listing,
            heading=feed.title,
            feeds=feeds,
            page=number,
            pages=pages,
            url=base if number == 1 else f"{base}page/{number}/",
            newer=None if number == 1 else (base if number == 2 else f"{base}page/{number - 1}/"),
            older=f"{base}page/{number + 1}/" if number < pages else None,
            t=renderer.labels(None),
        )
        target = folder / "index.html" if number == 1 else folder / "page" / str(number) / "index.html"
        write_atomically(target, html)


def _json_ld(renderer: Renderer, item: StoredRelease) -> Markup:
    """schema.org NewsArticle, safe inside <script>: "<", ">" and "&" are escaped as JSON unicode."""
    release = item.release
    settings = renderer.settings
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": release.title[:110],
        "description": summary(release),
        "url": renderer.page_url(item.slug),
        "mainEntityOfPage": renderer.page_url(item.slug),
        "inLanguage": release.language or "en",
        "publisher": {"@type": "Organization", "name": settings.organization.name},
        "author": {"@type": "Organization", "name": release.organization or settings.organization.name},
    }
    if item.published_at:
        data["datePublished"] = item.published_at.isoformat()
        data["dateModified"] = (item.updated_at if release.correction else item.published_at).isoformat()
    if release.dateline:
        data["dateline"] = release.dateline
    images = [m.url for m in release.media if m.is_image]
    if images:
        data["image"] = images
    if release.categories:
        data["keywords"] = list(release.categories)
    text = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - JSON with the characters that could close the script escaped
