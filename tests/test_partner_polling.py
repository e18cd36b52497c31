"""Partner feeds listed in config.yaml are polled by `pipeline run` on their interval, and new entries queued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import time_machine

from pipeline.config import load_settings
from tests.conftest import CONFIG, run_cli, write_project
from tests.test_ingest import FeedServer, feed_server, release_item, rss

__all__ = ["feed_server"]  # the fixture, shared with the ingest tests

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _project(tmp_path: Path, url: str) -> Path:
    polling = f"partner_feeds:\n  - url: {url}\n    every: 15m\n    queue_to: [tech]\n"
    return write_project(tmp_path, {}, config=CONFIG + polling)


def test_run_polls_each_partner_feed_on_its_interval(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.body = rss([release_item(1, NOW - timedelta(hours=2))])
    project = _project(tmp_path, feed_server.url)
    settings = load_settings(project)
    with time_machine.travel(NOW, tick=False):
        first = run_cli(project, "run", "--once")
    assert first.exit_code == 0 and "1 checked, 1 new entries, 1 queued" in first.output
    sent = sorted(p.name.split("-")[0] for p in settings.outbox_dir.rglob("*.eml"))
    assert sent == ["ana@example.com", "bo@example.test"]  # the `tech` audience
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        run_cli(project, "run", "--once")
    assert len(feed_server.requests) == 1  # not due again yet
    feed_server.body = rss([release_item(1, NOW - timedelta(hours=2)), release_item(2, NOW + timedelta(minutes=10))])
    feed_server.etag = '"v2"'
    with time_machine.travel(NOW + timedelta(minutes=16), tick=False):
        later = run_cli(project, "run", "--once")
    assert len(feed_server.requests) == 2 and feed_server.requests[1]["if-none-match"] == '"v1"'
    assert "1 new entries, 1 queued" in later.output
    assert len(list(settings.outbox_dir.rglob("*.eml"))) == 4  # the second entry to the same two people
    feed_server.status = 500
    with time_machine.travel(NOW + timedelta(minutes=40), tick=False):
        failing = run_cli(project, "run", "--once")
    assert failing.exit_code == 0 and "partner feed" in failing.output and "500" in failing.output
