"""The worker with a real APScheduler and its SQLAlchemy job store, time moved by time-machine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import time_machine

from pipeline.config import Settings
from pipeline.contacts import read_contacts
from pipeline.intake import queue_release
from pipeline.models import DistributionStatus
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from pipeline.schedule import JOB_TABLE, SweepReport, Worker

START = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait for another thread (bounded by iterations: monotonic time is not ours to trust under travel)."""
    for _ in range(400):
        if condition():
            return
        time.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


def _start(runtime: Runtime) -> tuple[Worker, threading.Thread, list[SweepReport]]:
    worker = Worker(runtime)
    first: list[SweepReport] = []
    thread = threading.Thread(target=worker.run_forever, kwargs={"on_start": first.append}, daemon=True)
    thread.start()
    _wait_for(lambda: bool(first), "the start-up sweep")
    return worker, thread, first


def _queue(runtime: Runtime, project: Path, when: datetime) -> int:
    runtime.store.save_contacts(read_contacts(project.parent / "contacts.csv").contacts)
    # Queued by hand (as `pipeline queue` does), so the folder intake does not queue it a second way.
    source = project.parent / "releases" / "acme.txt"
    release = parse_release(source)
    source.rename(project.parent / "acme.txt")
    dist_id, _ = queue_release(runtime.store, runtime.settings, release, ["all"], when, "America/Toronto")
    assert dist_id is not None
    return dist_id


def _jobs(runtime: Runtime) -> list[str]:
    with runtime.store.engine.begin() as db:
        return list(db.execute(sa.text(f"SELECT id FROM {JOB_TABLE}")).scalars())


def test_timer_fires_at_due_time(settings: Settings, project: Path) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        runtime = Runtime.open(settings)
        dist_id = _queue(runtime, project, START + timedelta(hours=1))
        worker, thread, _ = _start(runtime)
        _wait_for(lambda: f"distribution-{dist_id}" in _jobs(runtime), "the persistent job")
        assert runtime.store.distribution(dist_id).status is DistributionStatus.SCHEDULED
        traveller.shift(timedelta(hours=1, seconds=1))
        worker.wakeup()
        _wait_for(lambda: runtime.store.distribution(dist_id).status is DistributionStatus.SENT, "the send")
        worker.stop()
        thread.join(10)
    assert runtime.store.distribution(dist_id).counts == {"accepted": 4}
    assert len(list(settings.outbox_dir.rglob("*.eml"))) == 4
    assert (settings.output_dir / "feed.xml").exists()
    runtime.close()


def test_worker_down_at_due_time_sends_once_on_restart(settings: Settings, project: Path) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        runtime = Runtime.open(settings)
        dist_id = _queue(runtime, project, START + timedelta(minutes=30))
        worker, thread, _ = _start(runtime)
        _wait_for(lambda: f"distribution-{dist_id}" in _jobs(runtime), "the persistent job")
        worker.stop()
        thread.join(10)
        traveller.shift(timedelta(minutes=50))  # down past the due time, within max_lateness
        worker, thread, first = _start(runtime)
        _wait_for(lambda: runtime.store.distribution(dist_id).status is DistributionStatus.SENT, "the send")
        worker.stop()
        thread.join(10)
    assert sum(r.accepted for r in first[0].dispatched) == 4
    assert runtime.store.distribution(dist_id).counts == {"accepted": 4}
    assert len(list(settings.outbox_dir.rglob("*.eml"))) == 4
    runtime.close()


def test_worker_down_past_max_lateness_holds(settings: Settings, project: Path) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        runtime = Runtime.open(settings)
        dist_id = _queue(runtime, project, START + timedelta(minutes=30))
        traveller.shift(timedelta(hours=3))
        worker, thread, _ = _start(runtime)
        worker.stop()
        thread.join(10)
    assert runtime.store.distribution(dist_id).status is DistributionStatus.HELD
    assert not list(settings.outbox_dir.rglob("*.eml"))
    runtime.close()
