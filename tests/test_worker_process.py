"""End to end with real processes: `pipeline run` (the worker) is killed before a distribution's time and
started again after it; each recipient gets the release exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import load_settings
from pipeline.models import DeliveryStatus
from pipeline.runtime import Runtime
from pipeline.schedule import SCHEDULER_LEASE
from tests.conftest import CONFIG, run_cli, wait_until, write_project

RELEASE = """\
---
title: Acme Opens Its Doors to Students
date: 2026-03-03
---
SPRINGFIELD, Ontario — Acme Instruments opened its labs to students today.
"""


def _worker(config: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"PIPELINE_SECRET": "worker-test-secret"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config), "run"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_worker_killed_before_the_time_and_restarted_after_sends_exactly_once(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        {},  # the release is queued by hand below, not picked up from releases/
        config=CONFIG.replace("  max_lateness: 2h\n", "  max_lateness: 2h\n  leader_lease: 3s\n  sweep_interval: 1s\n"),
    )
    settings = load_settings(config)
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    draft = tmp_path / "open.md"
    draft.write_text(RELEASE, encoding="utf-8")
    due = datetime.now(UTC) + timedelta(seconds=6)
    queued = run_cli(config, "queue", str(draft), "--to", "all", "--at", due.isoformat())
    assert queued.exit_code == 0, queued.output
    runtime = Runtime.open(settings)

    first = _worker(config)
    wait_until(lambda: runtime.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) is not None, 20, "the worker")
    assert datetime.now(UTC) < due - timedelta(seconds=1), "the worker took too long to start for this test"
    first.send_signal(signal.SIGKILL)  # before the due time, holding the lease and an APScheduler timer
    first.wait()
    assert list(settings.outbox_dir.rglob("*.eml")) == []

    wait_until(lambda: datetime.now(UTC) > due + timedelta(seconds=1), 15, "the due time to pass")
    second = _worker(config)
    try:
        wait_until(lambda: len(list(settings.outbox_dir.rglob("*.eml"))) >= 4, 30, "the restarted worker to send")
        time.sleep(1.5)  # let its next sweeps run: they must find nothing more to send
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    files = sorted(p.name.split("-")[0] for p in settings.outbox_dir.rglob("*.eml"))
    assert files == ["ana@example.com", "bo@example.test", "chloe@example.com", "dev@example.com"]
    (dist,) = runtime.store.distributions()
    ledger = runtime.store.deliveries_of(dist.id)
    assert sorted(str(d["address"]) for d in ledger) == files
    assert {d["status"] for d in ledger} == {DeliveryStatus.ACCEPTED} and all(d["attempts"] == 1 for d in ledger)
    assert runtime.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) is None  # given up on SIGTERM
    runtime.close()
