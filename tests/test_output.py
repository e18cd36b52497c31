"""Rendered outputs: the MIME message, the feed (read back with feedparser) and the newsroom pages."""

from __future__ import annotations

import calendar
import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from pipeline.feed import FeedBuilder, FeedEntry, FeedSet
from pipeline.message import build_message
from pipeline.models import Recipient
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from pipeline.site import build_site

TORONTO = ZoneInfo("America/Toronto")
NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


def _release(project: Path):  # type: ignore[no-untyped-def]
    return parse_release(project.parent / "releases" / "acme.txt", TORONTO)


def test_message_parts_and_headers(runtime: Runtime, project: Path) -> None:
    release = _release(project)
    rendition = runtime.renderer.email(release, release.slug)
    recipient = runtime.links.recipient(42, "ana@example.com", "Ana Lima")
    raw = build_message(rendition, recipient, NOW).as_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert message["Subject"] == "Acme Instruments Ships Its First Quantum Thermometer"
    assert message["X-Delivery-Id"] == "42"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith(f"<{recipient.unsubscribe_url}>, <mailto:unsubscribe@")
    assert message["Reply-To"] == "press@acme.example.com"
    assert message["Message-ID"].endswith("@acme.example.com>")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert recipient.unsubscribe_url in text and recipient.unsubscribe_url in html
    assert "1 Test Road, Springfield" in text and "1 Test Road, Springfield" in html
    assert all(len(line) <= 72 for line in text.splitlines() if " " in line.strip())
    assert "SPRINGFIELD, Ontario" in html and 'style="' in html  # CSS inlined
    assert len(rendition.html.encode()) < 90 * 1024


def test_header_injection_is_folded(runtime: Runtime, project: Path) -> None:
    release = replace(_release(project), headline="Big news\r\nBcc: everyone@example.com\nX-Evil: 1")
    rendition = runtime.renderer.email(release, release.slug)
    raw = build_message(
        rendition, Recipient(1, "ana@example.com", "Ana\r\nBcc: x@example.com", "https://u.example.com/u/t"), NOW
    ).as_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Big news Bcc: everyone@example.com X-Evil: 1"


def test_feed_reads_back_with_every_field(runtime: Runtime, project: Path) -> None:
    release = _release(project)
    french = replace(release, headline="Acme ouvre un laboratoire", language="fr", categories=("labo",))
    entries = [FeedEntry(release, release.slug, NOW), FeedEntry(french, french.slug, NOW)]
    feed = FeedSet("all", "Acme", "", tuple(entries))
    parsed = feedparser.parse(FeedBuilder(runtime.renderer, NOW).render("rss", feed).encode())
    assert not parsed.bozo
    assert parsed.feed.links[0].href == "https://news.acme.example.com/" or parsed.feed.link
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == ["https://news.acme.example.com/feed.xml"]
    first, second = parsed.entries
    assert first.title == release.headline
    assert first.id == f"tag:news.acme.example.com,2026:releases/{release.slug}"
    assert first.link == f"https://news.acme.example.com/releases/{release.slug}/"
    assert calendar.timegm(first.published_parsed) == NOW.timestamp()
    assert first.summary == release.subheadline
    assert "Dana Whitfield" in first.content[0].value
    assert first.author == "Acme Instruments"
    assert [t.term for t in second.tags] == ["labo"]


def test_site_shows_only_published_releases(runtime: Runtime, project: Path) -> None:
    release = _release(project)
    release_id, _ = runtime.store.save_release(release)
    report = build_site(runtime.store, runtime.renderer, NOW)
    assert (report.pages, report.feed_items) == (0, 0)
    assert "No releases published yet" in report.index.read_text()
    runtime.store.mark_published(release_id, NOW)
    report = build_site(runtime.store, runtime.renderer, NOW)
    assert (report.pages, report.feed_items) == (1, 1)
    page = runtime.settings.output_dir / "releases" / release.slug / "index.html"
    assert release.headline and release.headline in page.read_text()
    assert f'href="https://news.acme.example.com/releases/{release.slug}/"' in report.index.read_text()
    assert len(feedparser.parse(report.feed.read_bytes()).entries) == 1


def test_project_template_overrides_and_a_broken_feed_is_never_written(runtime: Runtime, project: Path) -> None:
    from pipeline.errors import FeedError
    from pipeline.render import Renderer

    release = _release(project)
    release_id, _ = runtime.store.save_release(release)
    runtime.store.mark_published(release_id, NOW)
    good = build_site(runtime.store, runtime.renderer, NOW).feed.read_bytes()
    templates = project.parent / "templates"
    templates.mkdir()
    (templates / "feed_item.xml").write_text("<item><title>{{ item.title }}</title>", encoding="utf-8")
    (templates / "_theme.css").write_text("h1 { color: #ff0000; }", encoding="utf-8")
    overridden = Renderer(runtime.settings)
    assert 'style="color: #ff0000' in overridden.email(release, release.slug).html
    with pytest.raises(FeedError, match="does not parse cleanly"):
        build_site(runtime.store, overridden, NOW)
    assert (runtime.settings.output_dir / "feed.xml").read_bytes() == good
