"""Feeds of published releases: RSS 2.0, Atom 1.0 and JSON Feed 1.1, for all releases, per category and per
language (as `feeds:` in config.yaml says).

Each item is rendered once per format and reused by every feed it appears in. Every feed is read back with
feedparser and compared, item by item, with what it was built from; only when all of them pass are they
written (atomically), so a bad build leaves every previous feed in place and FeedError says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
from markupsafe import Markup

from pipeline.errors import FeedError
from pipeline.files import write_atomically
from pipeline.models import Release, slugify
from pipeline.render import Renderer, summary

FILES = {"rss": "feed.xml", "atom": "atom.xml", "json": "feed.json"}
MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}


@dataclass(frozen=True, slots=True)
class FeedEntry:
    release: Release
    slug: str
    published_at: datetime | None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FeedSet:
    """One feed in every format: all releases, one category or one language."""

    key: str  # "all", "category:funding", "language:fr"
    title: str
    folder: str  # "" for the site root, "categories/funding/", "languages/fr/"
    entries: tuple[FeedEntry, ...]


@dataclass(frozen=True, slots=True)
class Item:
    """What every format says about one release; also what the read-back check compares against."""

    guid: str
    url: str
    title: str
    summary: str
    content: str
    published: datetime
    updated: datetime | None
    creator: str
    categories: tuple[str, ...]
    language: str | None
    media: tuple[tuple[str, str, int, str | None], ...]  # (url, type, length, title)
    correction: str | None


def guid(base_url: str, slug: str) -> str:
    """A tag: URI (RFC 4151) from the site's host and the release slug. The slug (date + headline) is kept by
    re-parsing and by corrections, so the guid never changes; its year is the slug's."""
    host = urlsplit(base_url).hostname or "localhost"
    year = slug[:4] if re.match(r"(?:19|20)\d\d-", slug) else "2000"
    return f"tag:{host},{year}:releases/{slug}"


def feed_sets(renderer: Renderer, entries: Sequence[FeedEntry]) -> list[FeedSet]:
    """The feeds config.yaml asks for, each with every matching entry (newest first); a feed shows the newest
    `site.feed_items` of them, the newsroom listing shows them all."""
    settings = renderer.settings
    title = settings.site_title
    sets = [FeedSet("all", title, "", tuple(entries))]
    wanted_categories = settings.feeds.categories
    if wanted_categories != "none":
        names = sorted({c for e in entries for c in e.release.categories}, key=str.lower)
        for name in names if wanted_categories == "all" else wanted_categories:
            chosen = tuple(e for e in entries if name in e.release.categories)
            sets.append(FeedSet(f"category:{name}", f"{title} · {name}", f"categories/{slugify(name)}/", chosen))
    wanted_languages = settings.feeds.languages
    if wanted_languages != "none":
        codes = sorted({e.release.language for e in entries if e.release.language})
        for code in codes if wanted_languages == "all" else wanted_languages:
            chosen = tuple(e for e in entries if e.release.language == code)
            sets.append(FeedSet(f"language:{code}", f"{title} ({code})", f"languages/{code}/", chosen))
    return sets


class FeedBuilder:
    """Renders items once per release and format; builds, checks and writes feed sets."""

    def __init__(self, renderer: Renderer, built_at: datetime) -> None:
        self.renderer = renderer
        self.built_at = built_at
        self.base = renderer.settings.site.base_url
        self._items: dict[str, Item] = {}
        self._rendered: dict[tuple[str, str], str] = {}

    def item(self, entry: FeedEntry) -> Item:
        if entry.slug not in self._items:
            release = entry.release
            context = self.renderer.context(release, entry.slug, entry.published_at)
            published = entry.published_at or self.built_at
            updated = entry.updated_at if release.correction and entry.updated_at else None
            self._items[entry.slug] = Item(
                guid=guid(self.base, entry.slug),
                url=self.renderer.page_url(entry.slug),
                title=re.sub(r"\s+", " ", release.title).strip(),
                summary=_summary_with_correction(release),
                content=self.renderer.render("release_content.html", **context),
                published=published,
                updated=updated,
                creator=release.organization or self.renderer.settings.organization.name,
                categories=release.categories,
                language=release.language,
                media=tuple((m.url, m.type, m.length, m.title) for m in release.media),
                correction=release.correction,
            )
        return self._items[entry.slug]

    def rendered_item(self, fmt: str, item: Item) -> str:
        key = (fmt, item.guid)
        if key not in self._rendered:
            template = {"rss": "feed_item.xml", "atom": "atom_entry.xml"}[fmt]
            self._rendered[key] = self.renderer.render(template, item=item)
        return self._rendered[key]

    def shown(self, feed: FeedSet) -> list[Item]:
        """The items a feed carries: its newest `site.feed_items` entries."""
        return [self.item(e) for e in feed.entries[: self.renderer.settings.site.feed_items]]

    def render(self, fmt: str, feed: FeedSet) -> str:
        items = self.shown(feed)
        self_url = f"{self.base}/{feed.folder}{FILES[fmt]}"
        hub = self.renderer.settings.feeds.websub_hub
        if fmt == "json":
            return _json_feed(self.renderer, feed, items, self_url, hub)
        rendered = [Markup(self.rendered_item(fmt, item)) for item in items]  # noqa: S704 - our autoescaped templates
        updated = max([self.built_at, *(i.updated or i.published for i in items)]) if items else self.built_at
        return self.renderer.render(
            "feed.xml" if fmt == "rss" else "atom.xml",
            feed=feed,
            items=rendered,
            built_at=self.built_at,
            updated=updated,
            self_url=self_url,
            home_url=f"{self.base}/{feed.folder}",
            feed_id=f"{guid(self.base, 'feeds')}/{feed.key}",
            hub=hub,
        )

    def build(self, feeds: Sequence[FeedSet]) -> dict[str, str]:
        """{relative path: text} for every feed in every configured format, each checked. Raises FeedError."""
        out: dict[str, str] = {}
        for feed in feeds:
            for fmt in self.renderer.settings.feeds.formats:
                text = self.render(fmt, feed)
                path = f"{feed.folder}{FILES[fmt]}"
                check_feed(text, self.shown(feed), where=path)
                out[path] = text
        return out


def render_item(renderer: Renderer, entry: FeedEntry, built_at: datetime) -> str:
    """One release as an RSS item (for `pipeline preview`)."""
    builder = FeedBuilder(renderer, built_at)
    return builder.rendered_item("rss", builder.item(entry))


def write_feeds(renderer: Renderer, feeds: Sequence[FeedSet], out_dir: Path, built_at: datetime) -> list[Path]:
    """Build and check every feed first; write them only when all pass, each atomically."""
    built = FeedBuilder(renderer, built_at).build(feeds)
    written = []
    for relative, text in built.items():
        write_atomically(out_dir / relative, text)
        written.append(out_dir / relative)
    return written


def _summary_with_correction(release: Release) -> str:
    text = summary(release)
    return f"Correction: {release.correction} — {text}" if release.correction else text


def _json_feed(renderer: Renderer, feed: FeedSet, items: list[Item], self_url: str, hub: str | None) -> str:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    settings = renderer.settings
    document: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": feed.title,
        "home_page_url": f"{settings.site.base_url}/{feed.folder}",
        "feed_url": self_url,
        "description": settings.site.description,
        "authors": [{"name": settings.organization.name}],
        "items": [],
    }
    if feed.key.startswith("language:"):
        document["language"] = feed.key.split(":", 1)[1]
    if hub:
        document["hubs"] = [{"type": "WebSub", "url": hub}]
    for item in items:
        entry: dict[str, Any] = {
            "id": item.guid,
            "url": item.url,
            "title": item.title,
            "summary": item.summary,
            "content_html": item.content,
            "date_published": item.published.astimezone(UTC).isoformat(),
            "authors": [{"name": item.creator}],
            "tags": list(item.categories),
        }
        if item.updated:
            entry["date_modified"] = item.updated.astimezone(UTC).isoformat()
        if item.language:
            entry["language"] = item.language
        images = [m for m in item.media if m[1].startswith("image/")]
        if images:
            entry["image"] = images[0][0]
        if item.media:
            entry["attachments"] = [
                {"url": url, "mime_type": kind, **({"size_in_bytes": length} if length else {})}
                | ({"title": title} if title else {})
                for url, kind, length, title in item.media
            ]
        document["items"].append(entry)
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def check_feed(text: str, items: Sequence[Item], where: str = "feed") -> None:
    """Raise FeedError unless the feed reads back (RSS and Atom with feedparser; JSON Feed, which feedparser 6.0
    does not read, with the json module) and every item carries every field of the release it came from."""
    if text.lstrip().startswith("{"):
        _check_json_feed(text, items, where)
        return
    parsed = feedparser.parse(text.encode("utf-8"), sanitize_html=False, resolve_relative_uris=False)
    if parsed.bozo:
        raise FeedError(f"{where}: does not parse cleanly: {parsed.bozo_exception}")
    if len(parsed.entries) != len(items):
        raise FeedError(f"{where}: has {len(parsed.entries)} items, expected {len(items)}")
    for got, want in zip(parsed.entries, items, strict=True):
        problems = _item_problems(got, want)
        if problems:
            raise FeedError(f"{where}: item {want.guid}: {'; '.join(problems)}")


def _item_problems(got: Any, want: Item) -> list[str]:
    problems = []

    def expect(name: str, ok: bool) -> None:
        if not ok:
            problems.append(f"{name} missing or wrong")

    expect("id", got.get("id") == want.guid)
    expect("link", got.get("link") == want.url)
    expect("title", got.get("title") == want.title)
    expect("summary", (got.get("summary") or "").strip() == want.summary.strip())
    contents = [c.get("value", "") for c in got.get("content") or []]
    expect("content", any(c.strip() == want.content.strip() for c in contents))
    published = got.get("published_parsed")
    expect("published", published is not None and _same_second(published, want.published))
    if want.updated is not None:
        updated = got.get("updated_parsed")
        expect("updated", updated is not None and _same_second(updated, want.updated))
    expect("creator", got.get("author") == want.creator)
    expect("categories", [t.get("term") for t in got.get("tags") or []] == list(want.categories))
    if want.media:
        attached = [*(got.get("enclosures") or []), *(got.get("media_content") or [])]
        found = {e.get("href") or e.get("url") for e in attached}
        expect("media", all(url in found for url, *_ in want.media))
    return problems


def _check_json_feed(text: str, items: Sequence[Item], where: str) -> None:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise FeedError(f"{where}: not valid JSON: {exc}") from None
    if document.get("version") != "https://jsonfeed.org/version/1.1" or not document.get("title"):
        raise FeedError(f"{where}: not a JSON Feed 1.1 document (version and title are required)")
    entries = document.get("items")
    if not isinstance(entries, list) or len(entries) != len(items):
        raise FeedError(f"{where}: has {len(entries or [])} items, expected {len(items)}")
    for got, want in zip(entries, items, strict=True):
        # Shape the JSON item like feedparser's entries so one comparison serves every format.
        shaped = {
            "id": got.get("id"),
            "link": got.get("url"),
            "title": got.get("title"),
            "summary": got.get("summary"),
            "content": [{"value": got.get("content_html", "")}],
            "published_parsed": _json_time(got.get("date_published")),
            "updated_parsed": _json_time(got.get("date_modified")),
            "author": (got.get("authors") or [{}])[0].get("name"),
            "tags": [{"term": tag} for tag in got.get("tags") or []],
            "enclosures": [{"href": a.get("url")} for a in got.get("attachments") or []],
        }
        problems = _item_problems(shaped, want)
        if problems:
            raise FeedError(f"{where}: item {want.guid}: {'; '.join(problems)}")


def _json_time(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(datetime.fromisoformat(str(value)).astimezone(UTC).timetuple()) if value else None
    except ValueError:
        return None


def _same_second(parsed: Any, when: datetime) -> bool:
    return tuple(parsed)[:6] == when.astimezone(UTC).timetuple()[:6]


__all__ = ["FeedBuilder", "FeedEntry", "FeedSet", "check_feed", "feed_sets", "guid", "render_item", "write_feeds"]
