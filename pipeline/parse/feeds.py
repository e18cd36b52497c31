"""Partners' RSS and Atom feeds: fetched politely (conditional GET), read by feedparser, each entry a Release.

An entry's content (Atom `content`, RSS `content:encoded`, else its description) is read as an HTML fragment
by the same extractors as any release, with the entry's title as headline and its publication date as date.
An entry is identified by its guid, else its link, else a hash of its title and content, so the same entry
is recognised on every fetch even when the feed reorders or trims its items.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import feedparser

from pipeline.errors import IngestError, ReleaseParseError
from pipeline.models import Release
from pipeline.parse.assemble import assemble
from pipeline.parse.html import fragment_document

MAX_FEED_BYTES = 5 * 1024 * 1024
TIMEOUT_SECONDS = 20.0
_USER_AGENT = "pipeline-ingest/0.1 (+https://example.com/press-pipeline)"


@dataclass(frozen=True)
class Fetched:
    """A feed document, or None when the server said it has not changed since the validators we sent."""

    data: bytes | None
    etag: str | None = None
    modified: str | None = None


@dataclass(frozen=True)
class FeedItem:
    """One entry: its stable key, its release (None when it could not be read, with the reason in `error`)."""

    key: str
    title: str
    published: datetime | None
    release: Release | None
    error: str | None = None


@dataclass(frozen=True)
class PartnerFeed:
    title: str | None
    items: tuple[FeedItem, ...]
    problems: tuple[str, ...] = ()


def is_url(source: str) -> bool:
    return bool(re.match(r"^https?://", source, re.IGNORECASE))


def fetch(
    source: str, etag: str | None = None, modified: str | None = None, timeout: float = TIMEOUT_SECONDS
) -> Fetched:
    """The feed's bytes from a URL (sending If-None-Match / If-Modified-Since) or a file. Raises IngestError."""
    if not is_url(source):
        return Fetched(_read_file(Path(source)))
    request = urllib.request.Request(source, headers={"User-Agent": _USER_AGENT, "Accept": _ACCEPT})  # noqa: S310
    if etag:
        request.add_header("If-None-Match", etag)
    if modified:
        request.add_header("If-Modified-Since", modified)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            data = response.read(MAX_FEED_BYTES + 1)
            headers = response.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(None, etag, modified)
        raise IngestError(source, f"the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise IngestError(source, f"cannot fetch: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise IngestError(source, f"cannot fetch: {exc}") from None
    if len(data) > MAX_FEED_BYTES:
        raise IngestError(source, f"the feed is larger than {MAX_FEED_BYTES // 1024 // 1024} MB; refused")
    return Fetched(data, headers.get("ETag"), headers.get("Last-Modified"))


_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"


def _read_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FEED_BYTES:
            raise IngestError(str(path), f"the feed is larger than {MAX_FEED_BYTES // 1024 // 1024} MB; refused")
        return path.read_bytes()
    except FileNotFoundError:
        raise IngestError(str(path), "file not found") from None
    except IsADirectoryError:
        raise IngestError(str(path), "is a folder, not a feed") from None
    except OSError as exc:
        raise IngestError(str(path), f"cannot read: {exc.strerror or exc}") from None


def read_feed(data: bytes, source: str, zone: tzinfo) -> PartnerFeed:
    """Every entry of an RSS or Atom document as a FeedItem. Raises IngestError when it is not a feed at all;
    an entry that cannot be read is kept with its error so the others still go on."""
    try:
        parsed: Any = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=False)
    except (ValueError, TypeError, LookupError, RecursionError) as exc:
        raise IngestError(source, f"not a readable RSS or Atom feed: {exc}") from None
    problems: list[str] = []
    if parsed.get("bozo"):
        reason = parsed.get("bozo_exception")
        if not parsed.entries and not parsed.feed.get("title"):
            raise IngestError(source, f"not a readable RSS or Atom feed: {reason}")
        if not isinstance(reason, feedparser.CharacterEncodingOverride):
            problems.append(f"the feed is not well-formed ({reason}); read leniently")
    if not parsed.get("version") and not parsed.entries:
        raise IngestError(source, "not an RSS or Atom feed (no channel or feed element, no entries)")
    language = parsed.feed.get("language")
    items = tuple(_item(source, index, entry, language, zone) for index, entry in enumerate(parsed.entries, 1))
    return PartnerFeed(title=parsed.feed.get("title") or None, items=items, problems=tuple(problems))


def _item(source: str, index: int, entry: Any, language: str | None, zone: tzinfo) -> FeedItem:
    title = _clean_title(entry.get("title") or "")
    markup, is_html = _content(entry)
    published = _published(entry)
    key = _key(entry, title, markup)
    label = Path(f"{Path(source).name if not is_url(source) else source.rstrip('/').rsplit('/', 1)[-1]} entry {index}")
    meta: dict[str, Any] = {}
    if title:
        meta["headline"] = title
    if published:
        # A bare date ("2017-08-22", or midnight UTC) is that day, not the evening before in the Americas.
        midnight = published.timetz().replace(tzinfo=None) == datetime.min.time()
        meta["date"] = (published if midnight else published.astimezone(zone)).date().isoformat()
    if language:
        meta["language"] = language
    tags = [t.get("term") for t in entry.get("tags") or [] if t.get("term")]
    if tags:
        meta["categories"] = tags
    if not markup.strip() and not title:
        return FeedItem(key, title, published, None, "the entry has neither title nor content")
    if not is_html:
        markup = "".join(f"<p>{html.escape(p)}</p>" for p in re.split(r"\n\s*\n", markup) if p.strip())
    try:
        release = assemble(fragment_document(label, markup, meta), zone)
    except ReleaseParseError as exc:
        return FeedItem(key, title, published, None, exc.detail)
    except (ValueError, LookupError, TypeError, RecursionError) as exc:  # a bug must not sink the other entries
        return FeedItem(key, title, published, None, f"cannot parse: {exc}")
    return FeedItem(key, title, published, replace(release, source=entry.get("link") or source))


def _clean_title(title: str) -> str:
    # Titles are text, but some feeds put markup in them anyway ("<b>New</b> lab").
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.unescape(title))).strip()


def _content(entry: Any) -> tuple[str, bool]:
    """The fullest text the entry carries and whether it is HTML."""
    for content in entry.get("content") or []:
        if content.get("value", "").strip():
            return content["value"], "html" in (content.get("type") or "text/html")
    detail = entry.get("summary_detail") or {}
    summary = entry.get("summary") or ""
    # feedparser types RSS descriptions as HTML; an Atom summary declared type="text" is plain text.
    return summary, "html" in (detail.get("type") or "text/html")


def _published(entry: Any) -> datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _key(entry: Any, title: str, markup: str) -> str:
    """guid, else link, else a hash of what the entry says."""
    for candidate in (entry.get("id"), entry.get("link")):
        if candidate and str(candidate).strip():
            return str(candidate).strip()[:500]
    return "sha256:" + hashlib.sha256(f"{title}\n{markup}".encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["FeedItem", "Fetched", "PartnerFeed", "fetch", "is_url", "read_feed"]
