"""Embargoes that lift while nobody watches: the newsroom and feeds show a release from its embargo (even when
its email is due later), a worker down over the embargo catches up once, and one down too long holds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from pipeline.config import load_settings
from pipeline.models import DistributionStatus
from pipeline.runtime import Runtime
from tests.conftest import CONFIG, run_cli, scheduler_jobs, start_worker, wait_until, write_project

# Embargoed until 09:00 EDT on Tuesday 10 March 2026 (13:00 UTC).
RELEASE = """\
---
title: Acme Signs a Deal With the Space Agency
date: 2026-03-10
embargo: 2026-03-10T09:00:00-04:00
---
SPRINGFIELD, Ontario — Acme Instruments will build thermometers for a lunar lander.
"""
EMBARGO = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
SLUG = "2026-03-10-acme-signs-a-deal-with-the-space-agency"


@pytest.fixture
def project(tmp_path: Path, database_url: str | None) -> Path:
    config = write_project(
        tmp_path,
        {},
        config=CONFIG.replace("  max_lateness: 2h\n", "  max_lateness: 2h\n  sweep_interval: 1h\n"),
        database=database_url,
    )
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    (tmp_path / "deal.md").write_text(RELEASE, encoding="utf-8")
    return config


def _queue(project: Path, at: str) -> int:
    with time_machine.travel(EMBARGO - timedelta(days=1), tick=False):
        queued = run_cli(project, "queue", str(project.parent / "deal.md"), "--to", "all", "--at", at)
    assert queued.exit_code == 0, queued.output
    return int(queued.output.split()[-1])  # the new distribution's id, last on stdout for scripts


def _run_at(project: Path, when: datetime) -> str:
    with time_machine.travel(when, tick=False):
        ran = run_cli(project, "run", "--once")
    assert ran.exit_code == 0, ran.output
    return ran.output


def _page_and_feed(project: Path) -> tuple[bool, bool]:
    settings = load_settings(project)
    page = settings.output_dir / "releases" / SLUG / "index.html"
    feed = settings.output_dir / "feed.xml"
    return page.exists(), feed.exists() and "Space Agency" in feed.read_text(encoding="utf-8")


def _public(project: Path) -> bool:
    page, in_feed = _page_and_feed(project)
    assert page == in_feed, "the page and the feed must go public together"
    return page


def _sent(project: Path) -> int:
    return len(list(load_settings(project).outbox_dir.rglob("*.eml")))


def test_the_newsroom_shows_a_release_from_its_embargo_even_when_the_email_goes_later(project: Path) -> None:
    _queue(project, "2026-03-10 10:00")  # an hour after the embargo
    _run_at(project, EMBARGO - timedelta(hours=1))
    assert not _public(project) and _sent(project) == 0
    # The worker was down at 09:00; at 09:30 it publishes the release, and mails nobody yet.
    output = _run_at(project, EMBARGO + timedelta(minutes=30))
    assert "1 release(s) now public" in output
    assert _public(project) and _sent(project) == 0
    _run_at(project, EMBARGO + timedelta(hours=1, seconds=30))
    assert _sent(project) == 4
    _run_at(project, EMBARGO + timedelta(hours=1, minutes=5))
    assert _sent(project) == 4


def test_an_embargo_that_lifts_while_the_worker_is_down_is_caught_up_once(project: Path) -> None:
    dist_id = _queue(project, "2026-03-10 09:00")
    _run_at(project, EMBARGO - timedelta(minutes=10))
    assert not _public(project) and _sent(project) == 0
    _run_at(project, EMBARGO + timedelta(minutes=45))  # restarted 45 minutes after the embargo
    assert _public(project) and _sent(project) == 4
    _run_at(project, EMBARGO + timedelta(minutes=50))
    assert _sent(project) == 4
    runtime = Runtime.open(load_settings(project))
    assert runtime.store.distribution(dist_id).status is DistributionStatus.SENT
    (stored,) = runtime.store.published_releases(EMBARGO + timedelta(days=1))
    assert stored.published_at == EMBARGO + timedelta(minutes=45)  # public from when it was caught up, not before
    runtime.close()


def test_an_embargo_that_lifted_longer_ago_than_max_lateness_waits_for_a_person(project: Path) -> None:
    dist_id = _queue(project, "2026-03-10 09:00")
    output = _run_at(project, EMBARGO + timedelta(hours=3))
    assert "now public" not in output
    assert not _public(project) and _sent(project) == 0
    with time_machine.travel(EMBARGO + timedelta(hours=3, minutes=1), tick=False):
        listing = run_cli(project, "distributions", "--status", "held")
        assert (
            str(dist_id) in listing.output and "schedule.max_lateness" in run_cli(project, "show", str(dist_id)).output
        )
        assert run_cli(project, "release", str(dist_id)).exit_code == 0
        assert run_cli(project, "run", "--once").exit_code == 0
    assert _public(project) and _sent(project) == 4


def test_the_running_worker_publishes_on_the_embargo_by_its_own_timer(project: Path) -> None:
    """The periodic sweep is an hour apart here: only the embargo's APScheduler job can publish on time."""
    _queue(project, "2026-03-10 12:00")
    settings = load_settings(project)
    with time_machine.travel(EMBARGO - timedelta(minutes=5), tick=True) as traveller:
        runtime = Runtime.open(settings)
        worker, thread = start_worker(runtime)
        jobs = scheduler_jobs(runtime)
        assert any(job.startswith("embargo-") for job in jobs), jobs
        assert not _public(project)
        traveller.shift(timedelta(minutes=5, seconds=1))
        worker.wakeup()
        wait_until(lambda: all(_page_and_feed(project)), 20, "the page and feed to go up at the embargo")
        worker.stop()
        thread.join(10)
    assert _sent(project) == 0  # the email is due at noon
    runtime.close()
