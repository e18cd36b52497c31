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
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from pipeline.config import DigestSettings, Settings
from pipeline.models import Release
from pipeline.render import Renderer
from pipeline.store import DigestIssue, Store

_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=8), timedelta(days=32), timedelta(days=367))
_TICK = timedelta(microseconds=1)


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
    """The first time the digest's cron names strictly after `after`."""
    fire: datetime | None = trigger_of(digest, settings).get_next_fire_time(None, after + _TICK)
    return fire


def previous_fire(trigger: CronTrigger, at: datetime) -> datetime | None:
    """The latest time the cron names at or before `at` (None if none within a year). CronTrigger only looks
    forward, so look forward from a window before `at`, widening it until one fire time falls inside."""
    for window in _WINDOWS:
        fire = trigger.get_next_fire_time(None, at - window)
        if fire is None or fire > at:
            continue
        while True:
            following = trigger.get_next_fire_time(fire, fire + _TICK)
            if following is None or following > at:
                return fire  # type: ignore[no-any-return]
            fire = following
    return None


def make_due_digests(store: Store, settings: Settings, renderer: Renderer, now: datetime) -> list[DigestRun]:
    """For each configured digest whose latest cron time has passed and is not yet recorded: list the releases
    published since the last recorded period and schedule the digest for that cron time (or record the skip)."""
    runs = []
    for digest in settings.digests:
        trigger = trigger_of(digest, settings)
        end = previous_fire(trigger, now)
        last = store.last_digest_end(digest.name)
        if end is None or (last is not None and end <= last):
            continue
        start = last or previous_fire(trigger, end - _TICK) or end - timedelta(days=7)
        items = store.published_between(start, end)
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
            digest.name, (start, end), [i.id for i in items], email, digest.to, zone, now
        )
        if recorded:
            runs.append(DigestRun(digest.name, end, len(items), dist_id))
    return runs
