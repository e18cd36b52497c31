"""Generated feeds read back (feedparser for RSS and Atom, json for JSON Feed) and compared field by field with
the releases they came from; embargoes, corrections, per-category and per-language sets; newsroom pages."""

from __future__ import annotations

import calendar
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import html as lxml_html

from pipeline.config import load_settings
from pipeline.errors import FeedError
from pipeline.models import Attachment, Release
from pipeline.render import Renderer, summary
from pipeline.runtime import Runtime
from pipeline.site import build_site
from tests.conftest import CONFIG, write_project

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
BASE = "https://news.acme.example.com"


def _release(n: int, **changes: Any) -> Release:
    values: dict[str, Any] = {
        "headline": f"Acme Instruments Announces Product {n}",
        "subheadline": f"Product {n} measures things",
        "date": datetime(2026, 3, n).date(),
        "dateline": "SPRINGFIELD, Ontario",
        "language": "en",
        "body": (f"Acme Instruments today announced product {n}.", "It ships in April & costs <$100>."),
        "categories": ("products",),
        "organization": "Acme Instruments",
    }
    return Release(**(values | changes))


def _publish(runtime: Runtime, release: Release, when: datetime) -> str:
    release_id, _ = runtime.store.save_release(release)
    runtime.store.mark_published(release_id, when)
    return runtime.store.release(release_id).slug


@pytest.fixture
def site(runtime: Runtime) -> Runtime:
    """Three English releases (one with an image and a PDF) and one French one, published a day apart."""
    photo = Attachment("https://cdn.acme.example.com/p2.jpg", "image/jpeg", "Product 2 on a bench", 48213)
    sheet = Attachment("https://cdn.acme.example.com/p2.pdf", "application/pdf", "Data sheet", 120000)
    _publish(runtime, _release(1), NOW - timedelta(days=3))
    _publish(runtime, _release(2, media=(photo, sheet), categories=("products", "funding")), NOW - timedelta(days=2))
    _publish(runtime, _release(3, categories=()), NOW - timedelta(days=1))
    french = _release(4, headline="Acme lance le produit 4", language="fr", categories=("produits",), subheadline=None)
    _publish(runtime, french, NOW - timedelta(hours=1))
    return runtime


def _expected(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """guid → what the item must say, computed from the stored releases (not from the feed code)."""
    out = {}
    for stored in runtime.store.published_releases(NOW):
        release = stored.release
        out[f"tag:news.acme.example.com,{stored.slug[:4]}:releases/{stored.slug}"] = {
            "title": release.title,
            "link": f"{BASE}/releases/{stored.slug}/",
            "summary": summary(release),
            "published": stored.published_at,
            "creator": release.organization,
            "categories": list(release.categories),
            "media": [m.url for m in release.media],
            "body": release.body,
        }
    return out


def _check_entry(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["title"] == want["title"]
    assert got["link"] == want["link"]
    assert got["summary"] == want["summary"]
    assert got["published"] == want["published"]
    assert got["creator"] == want["creator"]
    assert got["categories"] == want["categories"]
    assert got["media"] == want["media"]
    for paragraph in want["body"]:  # the full release, escaped correctly
        assert paragraph.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in got["content"]


def _read_xml_feed(path: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    entries = {}
    for e in parsed.entries:
        media = [m["url"] for m in e.get("media_content", [])] or [x["href"] for x in e.get("enclosures", [])]
        entries[e.id] = {
            "title": e.title,
            "link": e.link,
            "summary": e.summary,
            "published": datetime.fromtimestamp(calendar.timegm(e.published_parsed), UTC),
            "creator": e.author,
            "categories": [t.term for t in e.get("tags", [])],
            "media": media,
            "content": e.content[0].value,
            "updated": e.get("updated_parsed"),
        }
    return parsed, entries


def _read_json_feed(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    entries = {
        item["id"]: {
            "title": item["title"],
            "link": item["url"],
            "summary": item["summary"],
            "published": datetime.fromisoformat(item["date_published"]),
            "creator": item["authors"][0]["name"],
            "categories": item["tags"],
            "media": [a["url"] for a in item.get("attachments", [])],
            "content": item["content_html"],
            "updated": item.get("date_modified"),
        }
        for item in document["items"]
    }
    return document, entries


def test_every_feed_format_carries_every_field(site: Runtime) -> None:
    build_site(site.store, site.renderer, NOW)
    out = site.settings.output_dir
    expected = _expected(site)
    rss, rss_entries = _read_xml_feed(out / "feed.xml")
    atom, atom_entries = _read_xml_feed(out / "atom.xml")
    document, json_entries = _read_json_feed(out / "feed.json")
    assert rss.version == "rss20" and atom.version == "atom10"
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    for entries in (rss_entries, atom_entries, json_entries):
        assert set(entries) == set(expected)
        for guid, want in expected.items():
            _check_entry(entries[guid], want)
    # Newest first, RFC 822 dates in RSS, the channel's self links.
    assert list(rss_entries) == list(expected)
    assert re.search(
        r"<pubDate>\w{3}, \d\d \w{3} 2026 \d\d:\d\d:\d\d [+-]0000</pubDate>", (out / "feed.xml").read_text()
    )
    assert [link.href for link in rss.feed.links if link.rel == "self"] == [f"{BASE}/feed.xml"]
    assert [link.href for link in atom.feed.links if link.rel == "self"] == [f"{BASE}/atom.xml"]
    assert document["feed_url"] == f"{BASE}/feed.json"
    # One enclosure in RSS (the format allows one), every file as media:content.
    rss_text = (out / "feed.xml").read_text()
    assert rss_text.count("<enclosure ") == 1
    assert 'url="https://cdn.acme.example.com/p2.jpg" length="48213" type="image/jpeg"' in rss_text


def test_category_and_language_feeds_hold_only_their_releases(site: Runtime) -> None:
    build_site(site.store, site.renderer, NOW)
    out = site.settings.output_dir
    titles = {
        folder: sorted(e.title for e in feedparser.parse((out / folder / "feed.xml").read_bytes()).entries)
        for folder in (
            "categories/products",
            "categories/funding",
            "categories/produits",
            "languages/fr",
            "languages/en",
        )
    }
    assert titles["categories/funding"] == ["Acme Instruments Announces Product 2"]
    assert titles["categories/products"] == [
        "Acme Instruments Announces Product 1",
        "Acme Instruments Announces Product 2",
    ]
    assert titles["languages/fr"] == ["Acme lance le produit 4"]
    assert len(titles["languages/en"]) == 3
    assert feedparser.parse((out / "languages/fr/atom.xml").read_bytes()).feed.get("language") == "fr"
    assert json.loads((out / "languages/fr/feed.json").read_text())["language"] == "fr"
    index = (out / "languages/fr/index.html").read_text()
    assert "Acme lance le produit 4" in index and "Product 1" not in index


def test_feeds_and_pages_can_be_limited_in_config(tmp_path: Path) -> None:
    config = (
        CONFIG
        + "feeds:\n  formats: [atom]\n  categories: none\n  languages: [fr]\n  websub_hub: https://hub.example.com/\n"
    )
    settings = load_settings(write_project(tmp_path, config=config))
    runtime = Runtime.open(settings)
    try:
        _publish(runtime, _release(1), NOW)
        _publish(runtime, _release(2, language="fr", headline="Acme lance le produit 2"), NOW)
        build_site(runtime.store, runtime.renderer, NOW)
    finally:
        runtime.close()
    out = settings.output_dir
    assert (out / "atom.xml").exists() and not (out / "feed.xml").exists() and not (out / "feed.json").exists()
    assert not (out / "categories").exists() and not (out / "languages" / "en").exists()
    hub = [link.href for link in feedparser.parse((out / "atom.xml").read_bytes()).feed.links if link.rel == "hub"]
    assert hub == ["https://hub.example.com/"]
    assert (out / "languages" / "fr" / "atom.xml").exists()


def test_embargoed_release_is_absent_until_it_lifts(runtime: Runtime) -> None:
    embargo = NOW + timedelta(hours=2)
    release = _release(5, embargo=embargo)
    release_id, _ = runtime.store.save_release(release)
    runtime.store.mark_published(release_id, embargo)  # published at the embargo, as the dispatcher does
    slug = runtime.store.release(release_id).slug
    build_site(runtime.store, runtime.renderer, NOW)
    out = runtime.settings.output_dir
    assert feedparser.parse((out / "feed.xml").read_bytes()).entries == []
    assert not (out / "releases" / slug).exists()
    assert release.headline and release.headline not in (out / "index.html").read_text()
    build_site(runtime.store, runtime.renderer, embargo + timedelta(minutes=1))
    assert [e.title for e in feedparser.parse((out / "feed.xml").read_bytes()).entries] == [release.headline]
    assert (out / "releases" / slug / "index.html").exists()


def test_a_correction_updates_the_item_in_place(site: Runtime) -> None:
    build_site(site.store, site.renderer, NOW)
    out = site.settings.output_dir
    before = {e.id: e for e in feedparser.parse((out / "atom.xml").read_bytes()).entries}
    original = site.store.published_releases(NOW)[-1]  # product 1
    correction = _release(
        1,
        body=("Acme Instruments today announced product 1, which ships in May.",),
        corrects=original.slug,
        correction="The ship date was April; it is May.",
    )
    release_id, state = site.store.save_release(correction, NOW + timedelta(hours=1))
    assert (release_id, state) == (original.id, "corrected")
    later = NOW + timedelta(hours=2)
    build_site(site.store, site.renderer, later)
    for name in ("feed.xml", "atom.xml"):
        entries = feedparser.parse((out / name).read_bytes()).entries
        assert len(entries) == len(before)  # no second item
        item = next(e for e in entries if e.link.endswith(f"/{original.slug}/"))
        assert item.id in before
        assert "ships in May" in item.content[0].value
        assert "The ship date was April" in item.content[0].value
        assert item.summary.startswith("Correction: The ship date was April")
        assert calendar.timegm(item.updated_parsed) == int((NOW + timedelta(hours=1)).timestamp())
        assert calendar.timegm(item.published_parsed) == int(original.published_at.timestamp())  # type: ignore[union-attr]
    document = json.loads((out / "feed.json").read_text())
    corrected = next(i for i in document["items"] if i["url"].endswith(f"/{original.slug}/"))
    assert datetime.fromisoformat(corrected["date_modified"]) == NOW + timedelta(hours=1)
    page = (out / "releases" / original.slug / "index.html").read_text()
    assert "The ship date was April" in page and "article:modified_time" in page
    # The original document read again changes nothing: only another correction does.
    assert site.store.save_release(_release(1))[1] == "unchanged"


def test_a_correction_of_an_unknown_release_is_an_error(runtime: Runtime) -> None:
    from pipeline.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no release has that slug"):
        runtime.store.save_release(_release(1, corrects="2026-01-01-nothing", correction="x"))


def test_a_feed_that_fails_its_check_leaves_every_previous_feed(site: Runtime, project: Path) -> None:
    build_site(site.store, site.renderer, NOW)
    out = site.settings.output_dir
    before = {p: p.read_bytes() for p in out.rglob("*") if p.suffix in (".xml", ".json")}
    templates = project.parent / "templates"
    templates.mkdir()
    # An item template that drops the author: well-formed XML, but the check finds the field missing.
    item = (Path(__file__).parent.parent / "pipeline" / "templates" / "atom_entry.xml").read_text()
    (templates / "atom_entry.xml").write_text(item.replace("<author><name>{{ item.creator }}</name></author>", ""))
    with pytest.raises(FeedError, match="creator missing or wrong"):
        build_site(site.store, Renderer(site.settings), NOW + timedelta(hours=1))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.suffix in (".xml", ".json")} == before


def test_newsroom_pages(site: Runtime, tmp_path: Path) -> None:
    build_site(site.store, site.renderer, NOW)
    out = site.settings.output_dir
    stored = site.store.published_releases(NOW)
    with_media = next(s for s in stored if s.release.media)
    page = lxml_html.fromstring((out / "releases" / with_media.slug / "index.html").read_bytes())
    url = f"{BASE}/releases/{with_media.slug}/"
    assert page.xpath("//link[@rel='canonical']/@href") == [url]
    assert page.xpath("//meta[@property='og:url']/@content") == [url]
    assert page.xpath("//meta[@property='og:title']/@content") == [with_media.release.headline]
    assert page.xpath("//meta[@property='og:image']/@content") == ["https://cdn.acme.example.com/p2.jpg"]
    assert page.xpath("//img/@alt") == ["Product 2 on a bench"]
    alternates = page.xpath("//link[@rel='alternate']/@type")
    assert alternates == ["application/rss+xml", "application/atom+xml", "application/feed+json"]
    ld = json.loads(page.xpath("//script[@type='application/ld+json']/text()")[0])
    assert ld["@type"] == "NewsArticle" and ld["headline"] == with_media.release.headline
    assert ld["url"] == url and ld["image"] == ["https://cdn.acme.example.com/p2.jpg"]
    assert datetime.fromisoformat(ld["datePublished"]) == with_media.published_at
    # The French page speaks French.
    french = next(s for s in stored if s.release.language == "fr")
    assert '<html lang="fr">' in (out / "releases" / french.slug / "index.html").read_text()


def test_index_is_paginated_newest_first(tmp_path: Path) -> None:
    settings = load_settings(
        write_project(
            tmp_path, config=CONFIG.replace("  output_dir: public\n", "  output_dir: public\n  page_size: 2\n")
        )
    )
    runtime = Runtime.open(settings)
    try:
        for n in range(1, 6):
            _publish(runtime, _release(n), NOW - timedelta(days=10 - n))
        build_site(runtime.store, runtime.renderer, NOW)
    finally:
        runtime.close()
    out = settings.output_dir

    def titles(path: Path) -> list[str]:
        return [
            t.strip() for t in lxml_html.fromstring(path.read_bytes()).xpath("//ul[@class='releases']//strong/text()")
        ]

    assert titles(out / "index.html") == [
        "Acme Instruments Announces Product 5",
        "Acme Instruments Announces Product 4",
    ]
    assert titles(out / "page" / "2" / "index.html")[0] == "Acme Instruments Announces Product 3"
    assert titles(out / "page" / "3" / "index.html") == ["Acme Instruments Announces Product 1"]
    last = lxml_html.fromstring((out / "page" / "3" / "index.html").read_bytes())
    assert last.xpath("//a[@rel='prev']/@href") == [f"{BASE}/page/2/"]
    assert not last.xpath("//a[@rel='next']")


def test_correction_file_through_run_once(project: Path) -> None:
    from tests.conftest import run_cli

    assert run_cli(project, "run", "--once").exit_code == 0
    out = project.parent / "public"
    outbox = project.parent / "var" / "outbox"
    sent = len(list(outbox.rglob("*.eml")))
    (entry,) = feedparser.parse((out / "feed.xml").read_bytes()).entries
    slug = entry.link.rstrip("/").rsplit("/", 1)[1]
    (project.parent / "releases" / "fix.md").write_text(
        f"---\ntitle: Acme Instruments Ships Its First Quantum Thermometer\ncorrects: {slug}\n"
        "correction: The sensor reads to a millionth of a degree, not a billionth.\n---\n\n"
        "SPRINGFIELD, Ontario--(EXAMPLE WIRE)--Acme Instruments today shipped its first quantum thermometer.\n",
        encoding="utf-8",
    )
    result = run_cli(project, "run", "--once")
    assert result.exit_code == 0, result.output
    (corrected,) = feedparser.parse((out / "feed.xml").read_bytes()).entries
    assert corrected.id == entry.id
    assert "not a billionth" in corrected.content[0].value
    assert "<atom:updated>" in (out / "feed.xml").read_text()
    assert len(list(outbox.rglob("*.eml"))) == sent  # nobody is mailed the correction
