"""Recurring digests from config.yaml: at each time a digest's cron names, one email listing the releases
published since that digest's previous period, to its audiences; nothing is sent when nothing is new.

Each period is recorded once (sent or skipped, unique on name and period end) in the same transaction that
stores the digest's email and schedules it, so a restart, a second process or a sweep racing a timer never
makes a second one. A period found later than `schedule.max_lateness` is held by the dispatcher like any late
distribution. Periods missed while the worker was down fold into the next digest: it lists everything
published since the last one recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from pipeline.config import DigestSettings, Settings
from pipeline.errors import PipelineError
from pipeline.models import Release
from pipeline.render import Renderer
from pipeline.store import DigestIssue, Store

_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=8), timedelta(days=32), timedelta(days=367))
_TICK = timedelta(microseconds=1)
LATE_WRITES = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DigestRun:
    """What a sweep did about one digest's period."""

    name: str
    period_end: datetime
    releases: int
    distribution_id: int | None  # None: skipped, nothing new

    def describe(self) -> str:
        if self.distribution_id is None:
            return f"digest {self.name}: nothing published since the last one; skipped"
        return f"digest {self.name}: {self.releases} release(s), distribution {self.distribution_id}"


def trigger_of(digest: DigestSettings, settings: Settings) -> CronTrigger:
    return CronTrigger.from_crontab(digest.cron, timezone=digest.timezone or settings.timezone)


def next_fire(digest: DigestSettings, settings: Settings, after: datetime) -> datetime | None:
    """The first time the digest's cron names strictly after `after` (in UTC)."""
    fire: datetime | None = trigger_of(digest, settings).get_next_fire_time(None, after.astimezone(UTC) + _TICK)
    return fire.astimezone(UTC) if fire else None


def previous_fire(trigger: CronTrigger, at: datetime) -> datetime | None:
    """The latest time the cron names at or before `at`, in UTC (None if none within a year). CronTrigger only
    looks forward, so look forward from a window before `at`, widening it until a fire time falls inside.
    Arithmetic is done in UTC: a microsecond added to 01:30 EST in local wall time is 01:30 EDT again."""
    at = at.astimezone(UTC)
    for window in _WINDOWS:
        found = trigger.get_next_fire_time(None, at - window)
        if found is None or found > at:
            continue
        fire: datetime = found.astimezone(UTC)
        cursor = fire
        while True:
            following = trigger.get_next_fire_time(cursor, cursor + _TICK)
            if following is None or following > at:
                return fire
            cursor = following.astimezone(UTC)
            if _wall(cursor, trigger) != _wall(fire, trigger):  # not the same local time again (DST fall-back)
                fire = cursor
    return None


def _wall(moment: datetime, trigger: CronTrigger) -> datetime:
    """The local wall-clock time of a moment in the trigger's zone: the repeated autumn hour shows twice."""
    return moment.astimezone(trigger.timezone).replace(tzinfo=None)


def make_due_digests(
    store: Store, settings: Settings, renderer: Renderer, now: datetime
) -> tuple[list[DigestRun], list[str]]:
    """For each configured digest whose latest cron time has passed and is not yet recorded: list the releases
    published since the last recorded period and schedule the digest for that cron time (or record the skip).
    A digest that fails (its subject does not render, say) is reported and does not hold up the others."""
    runs, errors = [], []
    for digest in settings.digests:
        try:
            run = _make_due_digest(store, settings, renderer, digest, now)
        except PipelineError as exc:
            errors.append(f"digest {digest.name}: {exc}")
            continue
        if run is not None:
            runs.append(run)
    return runs, errors


def _make_due_digest(
    store: Store, settings: Settings, renderer: Renderer, digest: DigestSettings, now: datetime
) -> DigestRun | None:
    trigger = trigger_of(digest, settings)
    end = previous_fire(trigger, now)
    last = store.last_digest_end(digest.name)
    if end is None or (last is not None and end <= last):
        return None
    start = last or previous_fire(trigger, end - _TICK) or end - timedelta(days=7)
    # A release published just before `start` but written after the previous period was recorded (another
    # process was sending it at that moment) would fall between two digests: look back LATE_WRITES further
    # for releases no digest of this name has listed yet.
    listed = store.digest_listed(digest.name)
    since = start - LATE_WRITES if last is not None else start
    items = [r for r in store.published_between(since, end) if r.id not in listed]
    email = None
    if items:
        issue = DigestIssue(digest.name, start, end, tuple(items))
        subject = renderer.digest_subject(issue, digest)
        email = Release(
            headline=subject,
            date=end.astimezone(trigger.timezone).date(),
            body=tuple(item.release.title for item in items),
            source=f"digest:{digest.name}",
        )
    zone = digest.timezone or settings.timezone
    recorded, dist_id = store.record_digest(
        digest.name, (start, end), [i.id for i in items], email, digest.to, zone, now, previous_end=last
    )
    return DigestRun(digest.name, end, len(items), dist_id) if recorded else None
