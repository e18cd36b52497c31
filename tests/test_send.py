"""Dispatch through the outbox transport on a temp SQLite file: once per recipient, gates, crashes."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine

from pipeline.config import Settings
from pipeline.contacts import read_contacts
from pipeline.intake import queue_release
from pipeline.models import DeliveryStatus, DistributionStatus
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from pipeline.store import utcnow

TORONTO = ZoneInfo("America/Toronto")


def _setup(runtime: Runtime, project: Path, audiences: tuple[str, ...] = ("all",), when: datetime | None = None) -> int:
    runtime.store.save_contacts(read_contacts(project.parent / "contacts.csv").contacts)
    release = parse_release(project.parent / "releases" / "acme.txt", TORONTO)
    dist_id, _ = queue_release(runtime.store, runtime.settings, release, audiences, when or utcnow(), "America/Toronto")
    assert dist_id is not None
    return dist_id


def _eml_files(runtime: Runtime) -> list[Path]:
    return sorted(runtime.settings.outbox_dir.rglob("*.eml"))


def test_each_recipient_gets_one_message(runtime: Runtime, project: Path) -> None:
    dist_id = _setup(runtime, project)
    report = runtime.dispatcher().dispatch(dist_id)
    assert (report.status, report.recipients, report.accepted) == (DistributionStatus.SENT, 4, 4)
    files = _eml_files(runtime)
    assert len(files) == 4
    recipients = {email.message_from_bytes(f.read_bytes())["To"].split("<")[-1].rstrip(">") for f in files}
    assert recipients == {"ana@example.com", "bo@example.test", "chloe@example.com", "dev@example.com"}
    # A second dispatch, and a second distribution of the same release, send nothing new.
    assert runtime.dispatcher().dispatch(dist_id).accepted == 0
    again = _setup(runtime, project, ("tech",))
    second = runtime.dispatcher().dispatch(again)
    assert (second.recipients, second.accepted) == (0, 0)
    assert len(_eml_files(runtime)) == 4
    assert runtime.store.distribution(dist_id).counts == {"accepted": 4}


def test_audience_and_suppression_are_honoured(runtime: Runtime, project: Path) -> None:
    runtime.store.suppress("bo@example.test", "unsubscribed")
    dist_id = _setup(runtime, project, ("tech",))
    report = runtime.dispatcher().dispatch(dist_id)
    assert report.accepted == 1
    assert [d["address"] for d in runtime.store.deliveries_of(dist_id)] == ["ana@example.com"]


def test_unsubscribe_after_snapshot_beats_the_next_batch(settings: Settings, project: Path) -> None:
    small_batches = settings.model_copy(update={"send": settings.send.model_copy(update={"batch_size": 2})})
    runtime = Runtime.open(small_batches)
    dist_id = _setup(runtime, project)
    batches: list[int] = []

    def after_batch(done: int, total: int) -> None:
        if not batches:  # someone unsubscribes while the first batch is out
            runtime.store.suppress("dev@example.com", "unsubscribed")
        batches.append(done)

    report = runtime.dispatcher().dispatch(dist_id, after_batch)
    statuses = {d["address"]: d["status"] for d in runtime.store.deliveries_of(dist_id)}
    assert batches[0] == 2
    assert statuses["dev@example.com"] == DeliveryStatus.SUPPRESSED
    assert report.accepted == 3
    runtime.close()


def test_embargo_gate_and_lateness(runtime: Runtime, project: Path) -> None:
    future = datetime.now(UTC) + timedelta(days=2)
    dist_id = _setup(runtime, project, when=future)
    report = runtime.dispatcher().dispatch(dist_id)
    assert report.accepted == 0 and report.waiting and "due at" in report.waiting
    with time_machine.travel(future + timedelta(hours=3), tick=False):
        late = runtime.dispatcher().dispatch(dist_id)
    assert late.status is DistributionStatus.HELD
    assert "max_lateness" in (runtime.store.distribution(dist_id).note or "")
    assert not _eml_files(runtime)


def test_cancel_stops_unsent_recipients(runtime: Runtime, project: Path) -> None:
    dist_id = _setup(runtime, project)
    assert runtime.store.cancel(dist_id) == 0  # nothing snapshotted yet
    assert runtime.dispatcher().dispatch(dist_id).accepted == 0
    assert runtime.store.distribution(dist_id).status is DistributionStatus.CANCELLED
    assert not _eml_files(runtime)


def test_crash_mid_batch_resumes_without_resending(runtime: Runtime, project: Path) -> None:
    dist_id = _setup(runtime, project)
    # Simulate a worker that claimed two deliveries and died before sending them.
    queued = runtime.store.distribution(dist_id)
    from pipeline.contacts import select

    chosen = select(runtime.store.contacts(), runtime.settings, ["all"])
    runtime.store.snapshot(dist_id, queued.release_id, "email", ((c.email, c.name, c.language) for c in chosen))
    runtime.store.set_status(dist_id, DistributionStatus.SENDING)
    dead = runtime.store.claim(dist_id, "dead-worker", 2, utcnow() + timedelta(minutes=5))
    assert len(dead) == 2
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=6), tick=False):
        report = runtime.dispatcher().dispatch(dist_id)
    assert report.accepted == 4
    assert report.status is DistributionStatus.SENT
    assert len(_eml_files(runtime)) == 4
