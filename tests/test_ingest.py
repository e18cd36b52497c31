"""`pipeline ingest`: partner feeds from a real HTTP server on loopback and from files, through the CLI."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import load_settings
from pipeline.errors import IngestError
from pipeline.parse.feeds import read_feed
from pipeline.store import Store
from tests.conftest import CORPUS, run_cli

TORONTO = ZoneInfo("America/Toronto")


def rss(items: list[dict[str, str]], title: str = "Northwind Partner News") -> bytes:
    """An RSS 2.0 document; each item may carry guid, title, link, pubDate, description, content."""
    parts = []
    for item in items:
        inner = "".join(
            f"<{tag}>{escape(item[key])}</{tag}>"
            for key, tag in (("guid", "guid"), ("title", "title"), ("link", "link"), ("pubDate", "pubDate"))
            if key in item
        )
        if "description" in item:
            inner += f"<description>{escape(item['description'])}</description>"
        if "content" in item:
            inner += f"<content:encoded><![CDATA[{item['content']}]]></content:encoded>"
        parts.append(f"<item>{inner}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>{escape(title)}</title><link>https://partner.example.com/</link><language>en</language>"
        f"{''.join(parts)}</channel></rss>"
    ).encode()


def release_item(n: int, when: datetime, title: str | None = None) -> dict[str, str]:
    return {
        "guid": f"https://partner.example.com/news/{n}",
        "title": title or f"Northwind Robotics Announces Product Number {n}",
        "link": f"https://partner.example.com/news/{n}",
        "pubDate": format_datetime(when),
        "content": (
            f"<p><strong>HALIFAX, NS, {when:%B} {when.day}, {when.year} /CNW/</strong> - Northwind Robotics today "
            f"announced product number {n}, a warehouse robot.</p>"
            f"<p>“This robot works beside people all shift long,” said Jane Roe, chief executive officer.</p>"
            "<h3>About Northwind Robotics</h3><p>Northwind Robotics builds warehouse robots.</p>"
            "<p>Media contact: Sam Poe, press@northwind.example.com</p>"
        ),
    }


@dataclass
class FeedServer:
    """A partner's web server: serves `body` with an ETag and Last-Modified, answers 304 to a matching
    conditional request, and records every request's headers."""

    body: bytes = b""
    status: int = 200
    etag: str = '"v1"'
    modified: str = "Wed, 25 Nov 2026 10:00:00 GMT"
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    state = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append({k.lower(): v for k, v in self.headers.items()})
            if state.status != 200:
                self.send_error(state.status)
                return
            if self.headers.get("If-None-Match") == state.etag or (
                self.headers.get("If-None-Match") is None and self.headers.get("If-Modified-Since") == state.modified
            ):
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("ETag", state.etag)
            self.send_header("Last-Modified", state.modified)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def ingest(project: Path, *args: str) -> tuple[int, dict[str, Any] | str]:
    result = run_cli(project, "ingest", *args, "--json")
    if result.exit_code != 0:
        return result.exit_code, result.output
    return 0, json.loads(result.output)


def _db(project: Path) -> Store:
    return Store.open(load_settings(project).database_url)


def test_second_run_adds_nothing_and_sends_validators(project: Path, feed_server: FeedServer) -> None:
    now = datetime.now(UTC)
    feed_server.body = rss([release_item(1, now - timedelta(hours=2)), release_item(2, now - timedelta(hours=1))])
    code, first = ingest(project, feed_server.url, "--queue-to", "tech")
    assert code == 0, first
    assert isinstance(first, dict)
    assert [e["state"] for e in first["entries"]] == ["new", "new"]
    assert all(e["distribution_id"] for e in first["entries"])
    assert "if-none-match" not in feed_server.requests[0]

    code, second = ingest(project, feed_server.url, "--queue-to", "tech")
    assert code == 0 and isinstance(second, dict)
    assert second["not_modified"] is True and second["entries"] == []
    assert feed_server.requests[1]["if-none-match"] == '"v1"'
    assert feed_server.requests[1]["if-modified-since"] == feed_server.modified

    # The server ignores validators (or the feed changed): entries already seen are still not added again.
    feed_server.etag = '"v2"'
    feed_server.body = rss(
        [
            release_item(1, now - timedelta(hours=2)),
            release_item(2, now - timedelta(hours=1)),
            release_item(3, now - timedelta(minutes=5)),
        ]
    )
    code, third = ingest(project, feed_server.url, "--queue-to", "tech")
    assert code == 0 and isinstance(third, dict)
    assert [e["state"] for e in third["entries"]] == ["seen", "seen", "new"]
    store = _db(project)
    try:
        assert store.totals()["releases"] == 3
        assert len(store.distributions()) == 3
    finally:
        store.close()


def test_changed_entry_updates_its_release_without_queueing_again(project: Path, feed_server: FeedServer) -> None:
    now = datetime.now(UTC)
    item = release_item(7, now - timedelta(hours=1))
    feed_server.body = rss([item])
    ingest(project, feed_server.url, "--queue-to", "all")
    feed_server.etag = '"v2"'
    item["content"] = item["content"].replace("a warehouse robot", "a faster warehouse robot")
    feed_server.body = rss([item])
    code, report = ingest(project, feed_server.url, "--queue-to", "all")
    assert code == 0 and isinstance(report, dict)
    assert report["entries"][0]["state"] == "updated"
    assert report["entries"][0]["distribution_id"] is None
    store = _db(project)
    try:
        assert len(store.distributions()) == 1
        stored = store.release(report["entries"][0]["release_id"])
        assert "faster warehouse robot" in " ".join(stored.release.body)
    finally:
        store.close()


def test_entries_become_releases_with_their_fields(project: Path, feed_server: FeedServer) -> None:
    when = datetime(2026, 10, 4, 13, 0, tzinfo=UTC)
    feed_server.body = rss([release_item(1, when)])
    code, report = ingest(project, feed_server.url)
    assert code == 0 and isinstance(report, dict)
    entry = report["entries"][0]
    assert entry["state"] == "new" and entry["distribution_id"] is None  # stored only, without --queue-to
    store = _db(project)
    try:
        release = store.release(entry["release_id"]).release
    finally:
        store.close()
    assert release.headline == "Northwind Robotics Announces Product Number 1"
    assert (release.dateline, release.wire, release.date.isoformat() if release.date else None) == (
        "HALIFAX, NS",
        "CNW",
        "2026-10-04",
    )
    assert release.quotes[0].speaker == "Jane Roe"
    assert release.about[0].name == "Northwind Robotics"
    assert release.contacts[0].email == "press@northwind.example.com"
    assert release.source == "https://partner.example.com/news/1"


def test_old_entries_are_stored_but_not_queued(project: Path, feed_server: FeedServer) -> None:
    now = datetime.now(UTC)
    feed_server.body = rss([release_item(1, now - timedelta(days=30)), release_item(2, now - timedelta(hours=3))])
    code, report = ingest(project, feed_server.url, "--queue-to", "all")
    assert code == 0 and isinstance(report, dict)
    assert [(e["state"], bool(e["distribution_id"])) for e in report["entries"]] == [("old", False), ("new", True)]


def test_a_bad_entry_is_reported_and_the_others_go_on(project: Path, tmp_path: Path) -> None:
    path = tmp_path / "partner.xml"
    path.write_bytes(rss([{"guid": "empty-1"}, release_item(2, datetime.now(UTC))]))
    code, report = ingest(project, str(path))
    assert code == 0 and isinstance(report, dict)
    assert [e["state"] for e in report["entries"]] == ["failed", "new"]
    assert "neither title nor content" in report["entries"][0]["note"]
    readable = run_cli(project, "ingest", str(path))
    assert readable.exit_code == 0
    assert "1 failed" in readable.output and "1 seen" in readable.output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("500", "HTTP 500"),
        ("refused", "cannot fetch"),
        ("not-a-feed", "not a readable RSS or Atom feed"),
        ("html-page", "not an RSS or Atom feed"),
        ("missing-file", "file not found"),
    ],
)
def test_sources_that_cannot_be_ingested(
    project: Path, feed_server: FeedServer, tmp_path: Path, setup: str, message: str
) -> None:
    source = feed_server.url
    if setup == "500":
        feed_server.status = 500
    elif setup == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            source = f"http://127.0.0.1:{probe.getsockname()[1]}/feed.xml"  # closed once the block ends
    elif setup == "not-a-feed":
        feed_server.body = b"\x00\x01 this is not xml at all <<<"
    elif setup == "html-page":
        feed_server.body = b"<html><body><p>Our newsroom moved.</p></body></html>"
    else:
        source = str(tmp_path / "nowhere.xml")
    result = run_cli(project, "ingest", source)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_audience_is_refused_before_fetching(project: Path, feed_server: FeedServer) -> None:
    feed_server.body = rss([release_item(1, datetime.now(UTC))])
    result = run_cli(project, "ingest", feed_server.url, "--queue-to", "nobody")
    assert result.exit_code == 2
    assert "nobody" in result.output
    assert feed_server.requests == []


def test_atom_and_plain_text_entries(tmp_path: Path) -> None:
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr"><title>Nouvelles</title><id>urn:x</id>
<updated>2026-10-04T12:00:00Z</updated>
<entry><id>urn:entry:1</id><title>Northwind ouvre un laboratoire</title><updated>2026-10-04T12:00:00Z</updated>
<content type="html">&lt;p&gt;MONTR\xc3\x89AL, le 4 oct. 2026 /CNW Telbec/ - Northwind ouvre un laboratoire.&lt;/p&gt;</content></entry>
<entry><id>urn:entry:2</id><title>Plain words</title><updated>2026-10-05T12:00:00Z</updated>
<summary type="text">First paragraph of plain text.

Second paragraph &lt;b&gt;not markup&lt;/b&gt;.</summary></entry>
</feed>"""
    feed = read_feed(atom, "atom.xml", TORONTO)
    first, second = (item.release for item in feed.items)
    assert first is not None and second is not None
    assert (first.dateline, first.wire, first.language) == ("MONTRÉAL", "CNW Telbec", "fr")
    assert first.date is not None and first.date.isoformat() == "2026-10-04"
    assert second.body == ("First paragraph of plain text.", "Second paragraph <b>not markup</b>.")


needs_feeds = pytest.mark.skipif(
    not (CORPUS / "feeds" / "labels.json").exists(), reason="../shared/corpus/feeds is not beside the project"
)


def _labelled_feeds() -> list[tuple[str, dict[str, Any]]]:
    path = CORPUS / "feeds" / "labels.json"
    return sorted(json.loads(path.read_text()).items()) if path.exists() else []


@needs_feeds
@pytest.mark.parametrize(("name", "label"), _labelled_feeds() or [("none", {})])
def test_real_partner_feeds(project: Path, name: str, label: dict[str, Any]) -> None:
    code, report = ingest(project, str(CORPUS / "feeds" / name))
    assert code == 0, report
    assert isinstance(report, dict)
    entries = report["entries"]
    assert len(entries) == label["item_count"]
    assert entries[0]["title"] == label["first_item_title"]
    assert all(e["state"] == "new" for e in entries), [e for e in entries if e["state"] != "new"]
    store = _db(project)
    try:
        first = store.release(entries[0]["release_id"]).release
    finally:
        store.close()
    assert first.source == label["first_item_link"]
    assert first.headline == label["first_item_title"]
    _, again = ingest(project, str(CORPUS / "feeds" / name))
    assert isinstance(again, dict)
    assert {e["state"] for e in again["entries"]} == {"seen"}


@settings(max_examples=120, deadline=None)
@given(data=st.binary(max_size=3000))
def test_any_bytes_give_a_feed_or_our_error(data: bytes) -> None:
    try:
        feed = read_feed(data, "fuzz.xml", TORONTO)
    except IngestError as exc:
        assert "fuzz.xml" in str(exc)
    else:
        assert all(item.release is not None or item.error for item in feed.items)


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=300)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.fixed_dictionaries({"title": _TEXT, "description": _TEXT, "content": _TEXT}), max_size=5))
def test_any_entry_text_gives_releases_or_reported_errors(items: list[dict[str, str]]) -> None:
    safe = [{**item, "content": item["content"].replace("]]>", "")} for item in items]
    feed = read_feed(rss(safe), "shaped.xml", TORONTO)
    for item in feed.items:
        assert item.release is not None or item.error
        if item.release is not None:
            assert all(isinstance(p, str) and p.strip() for p in item.release.body)
