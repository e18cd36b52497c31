"""Releases in: parse, store, and queue distributions, from the command line or the releases/ folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from pathlib import Path

from pipeline import contacts as contact_rules
from pipeline.config import Settings
from pipeline.errors import PipelineError, ScheduleError
from pipeline.models import PREVIEW_CHANNEL, DistributionStatus, Release
from pipeline.parse import parse_release, release_files
from pipeline.parse.dates import localize, zone_named
from pipeline.store import Store, auto_distribution, reschedule


def parse_when(text: str, zone: tzinfo, now: datetime) -> datetime:
    """`now`, an ISO 8601 time with offset, or a local time read in `zone`. Raises ScheduleError."""
    text = text.strip()
    if text.lower() == "now":
        return now
    try:
        when = datetime.fromisoformat(text)  # Python 3.11 reads "2026-03-08 09:00" and a "Z" suffix too
    except ValueError:
        raise ScheduleError(
            f"cannot read time {text!r}: use 'now', '2026-03-08T09:00:00-05:00' or '2026-03-08 09:00' (read in {zone})"
        ) from None
    if not 1970 <= when.year <= 2999:
        raise ScheduleError(f"{text!r} is not a send time this pipeline can keep (years 1970 to 2999)")
    return when if when.tzinfo else localize(when, zone)


def default_due(release: Release, zone: tzinfo, now: datetime) -> datetime:
    """The release's own send time, else the later of its embargo and its date (local midnight), else now."""
    if release.send_at:
        return release.send_at
    candidates = [now]
    if release.embargo:
        candidates.append(release.embargo)
    if release.date:
        candidates.append(localize(datetime.combine(release.date, time(0, 0)), zone))
    return max(candidates)


def queue_release(
    store: Store,
    settings: Settings,
    release: Release,
    audiences: Sequence[str],
    when: datetime,
    zone_name: str,
    origin: str | None = None,
    preview: bool = False,
    held_note: str | None = None,
) -> tuple[int | None, bool]:
    """Store the release and schedule one distribution. Returns (distribution id or None, rescheduled).

    Refuses unknown audiences and any time before the embargo. With an `origin` (automatic queueing) a
    second call adds nothing, but moves a not-yet-started distribution whose time changed. A `preview` is
    the opposite: an embargoed preview, due before the embargo, to the audience's embargo-trusted contacts
    only, stating the embargo in its subject and body."""
    if release.translation_of:
        raise ScheduleError(
            f"{release.source or 'this document'} is a translation of {release.translation_of!r}: queue the "
            "original, whose distributions send each contact the version in their language"
        )
    if not audiences:
        raise ScheduleError("no audience given (use --to AUDIENCE, or `audiences:` in the front matter)")
    for name in audiences:
        contact_rules.audience(settings, name)
    if preview:
        if release.embargo is None or when >= release.embargo:
            raise ScheduleError(
                "an embargoed preview must go out before the release's embargo"
                + ("" if release.embargo else ", and this release has no embargo")
            )
        release_id, _ = store.save_release(release)
        dist_id = store.create_distribution(
            release_id, audiences, when, zone_name, channel=PREVIEW_CHANNEL, held_note=held_note
        )
        return dist_id, False
    if release.embargo and when < release.embargo:
        raise ScheduleError(
            f"send time {when.isoformat()} is before the embargo ({release.embargo.isoformat()}); "
            "nothing may go out before the embargo lifts"
        )
    release_id, _ = store.save_release(release)
    if origin is not None:
        existing = auto_distribution(store, origin)
        if existing is not None:
            if existing.status is DistributionStatus.SCHEDULED and existing.due_at != when:
                return existing.id, reschedule(store, existing.id, when, zone_name)
            return None, False
    return store.create_distribution(release_id, audiences, when, zone_name, origin=origin, held_note=held_note), False


def queue_automatically(
    store: Store, settings: Settings, release: Release, audiences: Sequence[str], origin: str, now: datetime
) -> tuple[int | None, bool]:
    """queue_release at the release's default time, once per origin and audiences (see queue_release)."""
    return queue_release(
        store,
        settings,
        release,
        audiences,
        default_due(release, settings.zone, now),
        settings.timezone,
        origin=f"{origin}:{','.join(sorted(audiences))}",
    )


@dataclass
class IntakeReport:
    files: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    corrected: int = 0
    queued: list[int] = field(default_factory=list)
    rescheduled: int = 0
    problems: int = 0
    failed: list[str] = field(default_factory=list)


def intake_folder(
    store: Store, settings: Settings, now: datetime, step: Callable[[Path], None] | None = None
) -> IntakeReport:
    """Parse every release in the releases folder, store it, and queue it per its front matter.

    A bad file is reported and skipped; the others go on."""
    report = IntakeReport()
    folder = settings.releases_dir
    if not folder.is_dir():
        report.failed.append(f"{folder}: releases folder not found")
        return report
    zone = settings.zone
    translations: list[tuple[Path, Release]] = []
    for path in release_files(folder):
        report.files += 1
        try:
            release = parse_release(path, zone)
            report.problems += len(release.problems)
            _, state = store.save_release(release)
            setattr(report, state, getattr(report, state) + 1)
            # A correction changes the release in place (newsroom, feeds); its recipients are not mailed again.
            # A translation goes out with its original's distributions, to the contacts who read its language.
            if release.translation_of:
                translations.append((path, release))
            secondary = release.corrects or release.translation_of
            audiences = () if secondary else release.audiences or settings.releases.default_audiences
            if audiences:
                dist_id, moved = queue_automatically(store, settings, release, audiences, f"auto:{release.slug}", now)
                if moved:
                    report.rescheduled += 1
                elif dist_id is not None:
                    report.queued.append(dist_id)
        except PipelineError as exc:
            report.failed.append(str(exc))
        if step:
            step(path)
    for path, release in translations:  # checked once the whole folder is in: the original may come later
        if release.language is None:
            report.failed.append(f"{path}: a translation needs a `language:`; it cannot be matched to readers")
        elif store.release_id_by_slug(str(release.translation_of)) is None:
            report.failed.append(
                f"{path}: translation_of {release.translation_of!r}: no release has that slug; "
                "this translation will not be sent"
            )
    return report


def zone_or_default(name: str | None, settings: Settings) -> tuple[tzinfo, str]:
    """The --tz zone if given (IANA or a wire abbreviation), else the configured one."""
    if not name:
        return settings.zone, settings.timezone
    zone = zone_named(name)
    if zone is None:
        raise ScheduleError(f"unknown time zone {name!r} (use an IANA name such as 'America/Toronto')")
    return zone, str(zone)
