"""End to end with real processes: `pipeline run` (the worker) is killed before a distribution's time and
started again after it; each recipient gets the release exactly once."""

from __future__ import annotations

import os
import signal
import socket
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


def _worker(config: Path, log: Path | None = None) -> subprocess.Popen[bytes]:
    env = os.environ | {"PIPELINE_SECRET": "worker-test-secret"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config), "run"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb") if log else subprocess.DEVNULL,
    )


def _project(tmp_path: Path, seconds_ahead: float) -> tuple[Path, datetime]:
    """Contacts imported and a release queued `seconds_ahead` from now; the lease is short so tests are quick."""
    config = write_project(
        tmp_path,
        {},  # the release is queued by hand below, not picked up from releases/
        config=CONFIG.replace("  max_lateness: 2h\n", "  max_lateness: 2h\n  leader_lease: 3s\n  sweep_interval: 1s\n"),
    )
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    draft = tmp_path / "open.md"
    draft.write_text(RELEASE, encoding="utf-8")
    due = datetime.now(UTC) + timedelta(seconds=seconds_ahead)
    queued = run_cli(config, "queue", str(draft), "--to", "all", "--at", due.isoformat())
    assert queued.exit_code == 0, queued.output
    return config, due


def _sent_exactly_once(runtime: Runtime, outbox: Path) -> None:
    files = sorted(p.name.split("-")[0] for p in outbox.rglob("*.eml"))
    assert files == ["ana@example.com", "bo@example.test", "chloe@example.com", "dev@example.com"]
    (dist,) = runtime.store.distributions()
    ledger = runtime.store.deliveries_of(dist.id)
    assert sorted(str(d["address"]) for d in ledger) == files
    assert {d["status"] for d in ledger} == {DeliveryStatus.ACCEPTED} and all(d["attempts"] == 1 for d in ledger)


def test_a_worker_killed_before_the_time_and_restarted_after_sends_exactly_once(tmp_path: Path) -> None:
    config, due = _project(tmp_path, 6)
    settings = load_settings(config)
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
    _sent_exactly_once(runtime, settings.outbox_dir)
    assert runtime.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) is None  # given up on SIGTERM
    runtime.close()


def test_two_workers_started_together_one_schedules_and_the_other_takes_over_when_it_is_killed(
    tmp_path: Path,
) -> None:
    config, due = _project(tmp_path, 8)
    settings = load_settings(config)
    runtime = Runtime.open(settings)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [_worker(config, logs[0]), _worker(config, logs[1])]
    try:
        by_holder = {f"{socket.gethostname()}:{w.pid}": (w, log) for w, log in zip(workers, logs, strict=True)}
        wait_until(lambda: runtime.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) in by_holder, 20, "a leader")
        leader, _ = by_holder[str(runtime.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)))]
        (standby, standby_log) = next(v for v in by_holder.values() if v[0] is not leader)
        wait_until(lambda: "standing by" in standby_log.read_text(encoding="utf-8"), 20, "the standby to say so")
        assert datetime.now(UTC) < due - timedelta(seconds=1), "the workers took too long to start for this test"
        leader.send_signal(signal.SIGKILL)  # the scheduler dies before the due time
        leader.wait()
        standby_holder = f"{socket.gethostname()}:{standby.pid}"
        wait_until(
            lambda: runtime.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) == standby_holder, 10, "takeover"
        )
        wait_until(lambda: len(list(settings.outbox_dir.rglob("*.eml"))) >= 4, 30, "the new leader to send")
        time.sleep(1.5)  # its next sweeps must find nothing more to send
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(20)
    _sent_exactly_once(runtime, settings.outbox_dir)
    runtime.close()
