"""Partner feeds in: fetch, turn new entries into stored releases, optionally queue them, remember what was seen.

A second run adds nothing: the server's ETag/Last-Modified make an unchanged feed a 304, and entries already
seen (by guid, link or content hash) are skipped. An entry whose content changed since it was seen updates its
release (a new version) without being queued again. The validators are saved only after every entry of the
fetch is recorded, so a run cut short is fetched in full next time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline import contacts as contact_rules
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.intake import queue_automatically
from pipeline.parse.feeds import FeedItem, fetch, is_url, read_feed
from pipeline.store import Store


@dataclass(frozen=True)
class IngestedEntry:
    """What happened to one entry: state is new, updated, seen, old (stored, too old to queue) or failed."""

    key: str
    title: str
    published: datetime | None
    state: str
    release_id: int | None = None
    distribution_id: int | None = None
    note: str | None = None


@dataclass
class IngestReport:
    source: str
    title: str | None = None
    not_modified: bool = False
    entries: list[IngestedEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for entry in self.entries if entry.state == state)

    @property
    def queued(self) -> list[int]:
        return [e.distribution_id for e in self.entries if e.distribution_id is not None]


def source_key(source: str) -> str:
    """How a feed is remembered: its URL as given, or a file's absolute path."""
    if is_url(source):
        return source.strip()
    return str(Path(source).expanduser().resolve())


def ingest_feed(
    store: Store,
    settings: Settings,
    source: str,
    now: datetime,
    audiences: Sequence[str] = (),
    max_age: timedelta | None = timedelta(days=7),
    step: Callable[[FeedItem], None] | None = None,
) -> IngestReport:
    """Ingest one feed. Raises IngestError when it cannot be fetched or read; an entry that cannot be read is
    reported in its IngestedEntry and the others go on. With `audiences`, each new entry published within
    `max_age` (None: any age) is queued to them at its default time (embargo, date or now)."""
    for name in audiences:  # an unknown audience is refused before anything is fetched
        contact_rules.audience(settings, name)
    key = source_key(source)
    etag, modified = store.feed_validators(key) if is_url(source) else (None, None)
    fetched = fetch(source, etag, modified)
    report = IngestReport(source=source)
    if fetched.data is None:
        report.not_modified = True
        store.touch_feed(key, now)
        return report
    feed = read_feed(fetched.data, source, settings.zone)
    report.title, report.problems = feed.title, list(feed.problems)
    seen = store.seen_feed_entries(key)
    for item in feed.items:
        report.entries.append(_ingest_item(store, settings, key, item, seen, now, audiences, max_age))
        if step:
            step(item)
    store.record_feed_fetch(key, feed.title, fetched.etag, fetched.modified, now)
    return report


def _ingest_item(
    store: Store,
    settings: Settings,
    feed_key: str,
    item: FeedItem,
    seen: dict[str, str],
    now: datetime,
    audiences: Sequence[str],
    max_age: timedelta | None,
) -> IngestedEntry:
    def entry(state: str, note: str | None = None, stored: int | None = None, dist: int | None = None) -> IngestedEntry:
        return IngestedEntry(item.key, item.title, item.published, state, stored, dist, note)

    if item.release is None:
        return entry("failed", item.error)
    release = item.release
    digest = release.content_hash
    if seen.get(item.key) == digest:
        return entry("seen")
    try:
        release_id, _ = store.save_release(release, now)
        distribution_id: int | None = None
        note = "; ".join(release.problems) or None
        state = "updated" if item.key in seen else "new"
        if audiences and state == "new":
            if max_age is not None and item.published is not None and item.published < now - max_age:
                state = "old"
                note = f"older than {max_age.days} days: not queued"
            else:
                origin = f"feed:{hashlib.sha256(f'{feed_key}|{item.key}'.encode()).hexdigest()[:24]}"
                distribution_id, _ = queue_automatically(store, settings, release, audiences, origin, now)
    except PipelineError as exc:
        return entry("failed", str(exc))
    store.record_feed_entry(feed_key, item.key, digest, release_id, now)
    return entry(state, note, release_id, distribution_id)
