"""Queue management shared by the command line and the web desk: hold, release, reschedule, cancel and the
recipient count shown before queueing. Each returns what happened or raises ScheduleError saying why not."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.config import Settings
from pipeline.contacts import select
from pipeline.errors import ScheduleError
from pipeline.models import DistributionStatus
from pipeline.store import Store, address_hash
from pipeline.store import approve as approve_waiting
from pipeline.store import reschedule as move_distribution

AWAITING_APPROVAL = "awaiting approval"  # the note of a distribution queued while approval is required


def local(when: datetime, zone: str) -> str:
    return f"{when.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"


def recipient_count(store: Store, settings: Settings, audiences: Sequence[str], preview: bool = False) -> int:
    """How many people a distribution to these audiences would reach now: each contact once, suppressed
    addresses left out, and for an embargoed preview only the embargo-trusted."""
    suppressed = store.suppressed_hashes()
    chosen = select(store.contacts(), settings, audiences)
    return sum(1 for c in chosen if address_hash(c.email) not in suppressed and (c.embargo_trusted or not preview))


def hold(store: Store, distribution_id: int) -> str:
    """A scheduled distribution is held (not sent at its time); a sending one is paused before its next batch."""
    if store.set_status(
        distribution_id, DistributionStatus.HELD, "held by a person", only_from=[DistributionStatus.SCHEDULED]
    ):
        return "held"
    if store.set_status(
        distribution_id, DistributionStatus.PAUSED, "paused by a person", only_from=[DistributionStatus.SENDING]
    ):
        return "paused"
    current = store.distribution(distribution_id).status
    raise ScheduleError(
        f"distribution {distribution_id} is {current.value}; only a scheduled or sending one can be held"
    )


def release(store: Store, distribution_id: int, now: datetime, retry_failed: bool = False) -> DistributionStatus:
    """A paused distribution resumes; a held one becomes due now; with `retry_failed` failures go again. One
    awaiting approval is not released: only an approval lets it go."""
    if awaiting_approval(store, distribution_id):
        raise ScheduleError(
            f"distribution {distribution_id} is awaiting approval; an approver other than the person who queued "
            "it approves it on the desk"
        )
    status = store.release_hold(distribution_id, now, retry_failed=retry_failed)
    if status is None:
        current = store.distribution(distribution_id).status
        also = " (or, with --retry-failed, a partial one with failed deliveries)"
        raise ScheduleError(
            f"distribution {distribution_id} is {current.value}; only a held or paused one can be released{also}"
        )
    return status


def approve(store: Store, distribution_id: int, now: datetime) -> datetime:
    """A distribution awaiting approval goes at its time (or now, if that has passed). Returns when."""
    when = approve_waiting(store, distribution_id, AWAITING_APPROVAL, now)
    if when is None:
        current = store.distribution(distribution_id).status
        raise ScheduleError(f"distribution {distribution_id} is {current.value}, not awaiting approval")
    return when


def awaiting_approval(store: Store, distribution_id: int) -> bool:
    dist = store.distribution(distribution_id)
    return dist.status is DistributionStatus.HELD and (dist.note or "").startswith(AWAITING_APPROVAL)


def reschedule(store: Store, distribution_id: int, when: datetime, zone_name: str) -> None:
    """Move a distribution that has not started; never before the release's embargo."""
    dist = store.distribution(distribution_id)
    embargo = store.release(dist.release_id).release.embargo
    if embargo and when < embargo:
        raise ScheduleError(
            f"{local(when, zone_name)} is before the embargo ({local(embargo, zone_name)}); "
            "nothing may go out before the embargo lifts"
        )
    # One awaiting approval moves but keeps waiting: only an approver lets it go.
    status = DistributionStatus.HELD if awaiting_approval(store, distribution_id) else DistributionStatus.SCHEDULED
    if not move_distribution(store, distribution_id, when, zone_name, status):
        raise ScheduleError(f"distribution {distribution_id} is {dist.status.value}; only one not yet started can move")


def cancel(store: Store, distribution_id: int) -> int:
    """Cancel a distribution that has not finished. Returns how many recipients will not be sent."""
    stopped = store.cancel(distribution_id)
    if stopped < 0:
        raise ScheduleError(f"distribution {distribution_id} has already finished and cannot be cancelled")
    return stopped
