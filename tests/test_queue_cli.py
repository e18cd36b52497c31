"""Managing the queue from the command line: show, reschedule, hold, release, filters; local times across
daylight-saving changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import time_machine

from tests.conftest import run_cli, write_project

EMBARGOED = """\
---
title: Acme Names a New Chief Scientist
date: 2026-03-10
embargo: 2026-03-10T09:00:00-04:00
audiences: []
---
SPRINGFIELD, Ontario — Acme Instruments named a new chief scientist.
"""

NOW = "2026-03-01T12:00:00+00:00"


@pytest.fixture
def queued(tmp_path: Path, database_url: str | None) -> Path:
    return write_project(tmp_path, {"news.md": EMBARGOED}, database=database_url)


def _queue(config: Path, at: str) -> int:
    result = run_cli(config, "queue", str(config.parent / "releases" / "news.md"), "--to", "all", "--at", at)
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip().splitlines()[-1])


def _show(config: Path, dist_id: int) -> dict[str, object]:
    result = run_cli(config, "show", str(dist_id), "--json")
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


@time_machine.travel(NOW, tick=False)
def test_show_gives_the_time_in_the_distributions_zone_and_in_utc(queued: Path) -> None:
    dist_id = _queue(queued, "2026-03-10 09:00")  # local, read in America/Toronto (config timezone)
    shown = _show(queued, dist_id)
    assert shown["due"] == "2026-03-10 09:00 EDT" and shown["due_utc"] == "2026-03-10T13:00:00+00:00"
    assert shown["embargo"] == "2026-03-10 09:00 EDT" and shown["status"] == "scheduled"
    assert shown["next"] == "reschedule, hold or cancel it"
    table = run_cli(queued, "show", str(dist_id)).output
    assert "Acme Names a New Chief Scientist" in table and "2026-03-10 09:00 EDT" in table


@time_machine.travel(NOW, tick=False)
def test_local_times_in_the_missing_and_the_repeated_hour(queued: Path) -> None:
    dist_id = _queue(queued, "2026-03-10 09:00")
    # 02:30 on 8 March 2026 does not exist in Toronto (clocks jump from 02:00 to 03:00): moved past the gap
    # — but that is before the embargo, so it is refused; the same on a release without one is shown below.
    refused = run_cli(queued, "reschedule", str(dist_id), "--at", "2026-03-08 02:30")
    assert refused.exit_code == 2 and "before the embargo" in refused.output
    moved = run_cli(queued, "reschedule", str(dist_id), "--at", "2026-11-01 01:30")  # happens twice
    assert moved.exit_code == 0 and "2026-11-01 01:30 EDT" in moved.output  # the first of the two
    assert _show(queued, dist_id)["due_utc"] == "2026-11-01T05:30:00+00:00"
    other = run_cli(queued, "reschedule", str(dist_id), "--at", "2026-11-01 01:30", "--tz", "Europe/Paris")
    assert "2026-11-01 01:30 CET" in other.output and _show(queued, dist_id)["due_utc"] == "2026-11-01T00:30:00+00:00"


@time_machine.travel(NOW, tick=False)
def test_spring_forward_gap_is_moved_past(tmp_path: Path) -> None:
    config = write_project(tmp_path, {"news.md": EMBARGOED.replace("embargo: 2026-03-10T09:00:00-04:00\n", "")})
    dist_id = _queue(config, "2026-03-08 02:30")
    shown = _show(config, dist_id)
    assert shown["due"] == "2026-03-08 03:30 EDT" and shown["due_utc"] == "2026-03-08T07:30:00+00:00"


@time_machine.travel(NOW, tick=False)
def test_hold_release_and_the_filters(queued: Path) -> None:
    first = _queue(queued, "2026-03-10 09:00")
    second = _queue(queued, "2026-03-12 09:00")
    held = run_cli(queued, "hold", str(first))
    assert held.exit_code == 0 and "held" in held.output
    listing = run_cli(queued, "distributions", "--status", "held").output
    assert f"\n│ {first} " in listing and f"\n│ {second} " not in listing
    window = run_cli(queued, "distributions", "--after", "2026-03-11 00:00", "--before", "2026-03-13").output
    assert f"│ {second} " in window and f"│ {first} " not in window
    assert run_cli(queued, "hold", str(first)).exit_code == 2  # already held
    released = run_cli(queued, "release", str(first))
    assert released.exit_code == 0 and "released: scheduled" in released.output
    assert _show(queued, first)["status"] == "scheduled"


@time_machine.travel(NOW, tick=False)
def test_hold_pauses_a_distribution_that_is_sending(queued: Path) -> None:
    from pipeline.config import load_settings
    from pipeline.models import DistributionStatus
    from pipeline.runtime import Runtime

    dist_id = _queue(queued, "2026-03-10 09:00")
    runtime = Runtime.open(load_settings(queued))
    runtime.store.set_status(dist_id, DistributionStatus.SENDING)
    runtime.close()
    paused = run_cli(queued, "hold", str(dist_id))
    assert paused.exit_code == 0 and "paused" in paused.output
    assert _show(queued, dist_id)["status"] == "paused"
    assert run_cli(queued, "reschedule", str(dist_id), "--at", "2026-03-11 09:00").exit_code == 2
