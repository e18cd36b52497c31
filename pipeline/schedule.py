"""Running the queue: a sweep that dispatches whatever is due, and APScheduler timers for what is not yet.

The database is the source of truth. APScheduler (3.x, SQLAlchemy job store in the same database) only holds
timers, each job carrying nothing but a distribution id; one-off jobs are removed by APScheduler when they
start, and missed ones may be dropped, so the sweep at start-up and every `schedule.sweep_interval` catches
anything due that has no job. Dispatch is idempotent, so a job and the sweep racing each other is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.digest import DigestRun, make_due_digests, next_fire
from pipeline.errors import PipelineError
from pipeline.ingest import IngestReport, ingest_feed, source_key
from pipeline.intake import IntakeReport, intake_folder
from pipeline.models import EMAIL_CHANNEL, DistributionStatus
from pipeline.runtime import Runtime
from pipeline.send import DispatchReport, worker_alive, worker_id
from pipeline.site import SiteReport, build_site

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
SCHEDULER_LEASE = "scheduler"  # held by the one process that schedules
SWEEP_JOB = "sweep"

_active: Worker | None = None  # the worker whose scheduler fires jobs in this process


def fire_distribution(distribution_id: int) -> None:
    """APScheduler job target (a module-level function, so the pickled job holds only this path and an id)."""
    if _active is not None:
        _active.dispatch_and_publish([distribution_id])


def fire_sweep() -> None:
    if _active is not None:
        _active.sweep()


@dataclass
class SweepReport:
    feeds: list[IngestReport] = field(default_factory=list)  # partner feeds polled this sweep
    intake: IntakeReport | None = None
    digests: list[DigestRun] = field(default_factory=list)  # periods recorded this sweep (sent or skipped)
    embargoes_lifted: list[int] = field(default_factory=list)  # releases made public by their embargo lifting
    dispatched: list[DispatchReport] = field(default_factory=list)
    site: SiteReport | None = None
    errors: list[str] = field(default_factory=list)


class Worker:
    def __init__(
        self, runtime: Runtime, progress: Callable[[int], Callable[[int, int], None] | None] | None = None
    ) -> None:
        self.rt = runtime
        self.progress = progress
        self._lock = threading.RLock()  # one sweep or timer at a time in this process
        self._scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self.leading = False  # whether this worker holds the scheduler lease now
        self.holder = worker_id()  # how the scheduler lease names this worker

    def due(self, now: datetime) -> list[int]:
        due = self.rt.store.distributions([DistributionStatus.SCHEDULED, DistributionStatus.SENDING], now)
        return [d.id for d in due]

    def dispatch_and_publish(self, ids: list[int], rebuild: bool = False) -> SweepReport:
        """Dispatch the given distributions, then rebuild the public site if anything became public, if asked
        (a release was corrected or edited), or if the site does not exist yet."""
        report = SweepReport()
        with self._lock:
            for dist_id in ids:
                try:
                    dispatcher = self.rt.dispatcher()
                    callback = self.progress(dist_id) if self.progress else None
                    report.dispatched.append(dispatcher.dispatch(dist_id, callback))
                except PipelineError as exc:
                    report.errors.append(f"distribution {dist_id}: {exc}")
            published = any(r.published for r in report.dispatched)
            if published or rebuild or not (self.rt.settings.output_dir / "index.html").exists():
                try:
                    report.site = build_site(self.rt.store, self.rt.renderer, self.rt.clock())
                except PipelineError as exc:
                    report.errors.append(str(exc))
        return report

    def poll_partner_feeds(self, now: datetime) -> tuple[list[IngestReport], list[str]]:
        """Ingest each configured partner feed whose `every` has passed since it was last checked (the time
        is kept in the database, so a restart does not poll early or late) and queue its new entries."""
        reports, errors = [], []
        for partner in self.rt.settings.partner_feeds:
            checked = self.rt.store.feed_checked_at(source_key(partner.url))
            if checked is not None and now - checked < partner.every:
                continue
            max_age = timedelta(days=partner.max_age_days) if partner.max_age_days else None
            try:
                reports.append(
                    ingest_feed(self.rt.store, self.rt.settings, partner.url, now, partner.queue_to, max_age)
                )
            except PipelineError as exc:
                errors.append(f"partner feed {exc}")
        return reports, errors

    def publish_lifted_embargoes(self, now: datetime) -> list[int]:
        """Make public the queued releases whose embargo has lifted, even when their email is due later: the
        newsroom and feeds show a release from its embargo. Not when the embargo lifted longer ago than
        `schedule.max_lateness` (the worker was down): then the release waits for its held distribution, and
        the person who releases it, like the email does."""
        lifted = []
        for release_id, embargo in self.rt.store.awaiting_embargo([EMAIL_CHANNEL]).items():
            if embargo <= now and now - embargo <= self.rt.settings.schedule.max_lateness:
                for version in {release_id, *self.rt.store.versions(release_id).values()}:
                    if self.rt.store.mark_published(version, now):
                        lifted.append(version)
        return lifted

    def sweep(self) -> SweepReport:
        """Poll partner feeds that are due, take in the releases folder, publish releases whose embargo lifted,
        schedule digests that are due, dispatch everything due, rebuild the site if anything changed, and arm
        timers for the rest."""
        with self._lock:
            now = self.rt.clock()
            feeds, errors = self.poll_partner_feeds(now)
            intake_report = intake_folder(self.rt.store, self.rt.settings, now)
            changed = intake_report.corrected + intake_report.updated > 0
            lifted = self.publish_lifted_embargoes(now)
            digests, digest_errors = make_due_digests(self.rt.store, self.rt.settings, self.rt.renderer, now)
            errors += digest_errors
            report = self.dispatch_and_publish(self.due(now), rebuild=changed or bool(lifted))
            report.intake, report.feeds, report.digests, report.embargoes_lifted = intake_report, feeds, digests, lifted
            report.errors = errors + report.errors
            if self._scheduler is not None:
                self._arm_timers()
            return report

    def _arm_timers(self) -> None:
        """A timer per distribution not yet due, and a sweep at each coming embargo and digest time, so those
        happen on the second rather than at the next periodic sweep."""
        assert self._scheduler is not None
        now = self.rt.clock()
        sweeps: dict[str, datetime | None] = {
            f"embargo-{rid}": when for rid, when in self.rt.store.awaiting_embargo([EMAIL_CHANNEL]).items()
        }
        for digest in self.rt.settings.digests:
            sweeps[f"digest-{digest.name}"] = next_fire(digest, self.rt.settings, now)
        for job_id, when in sweeps.items():
            job = self._scheduler.get_job(job_id)
            if when is None or when <= now:
                if job is not None:
                    job.remove()
            elif job is None or job.next_run_time != when:
                self._scheduler.add_job(
                    "pipeline.schedule:fire_sweep", "date", run_date=when, id=job_id, replace_existing=True
                )
        for dist in self.rt.store.distributions([DistributionStatus.SCHEDULED]):
            if dist.due_at <= now:
                continue  # due ones were just dispatched by the sweep; a timer would only race it
            job_id = f"distribution-{dist.id}"
            if self._scheduler.get_job(job_id) is None:
                self._scheduler.add_job(
                    "pipeline.schedule:fire_distribution",
                    "date",
                    run_date=dist.due_at,
                    args=[dist.id],
                    id=job_id,
                    replace_existing=True,
                    misfire_grace_time=None,
                    coalesce=True,
                )

    def wakeup(self) -> None:
        """Make the scheduler re-check its timers now (after the clock moved, or a job was added elsewhere)."""
        if self._scheduler is not None:
            self._scheduler.wakeup()

    def stop(self) -> None:
        """Ask run_forever to return (from a signal handler or another thread)."""
        self._stop.set()

    def run_forever(
        self,
        on_start: Callable[[SweepReport], None] | None = None,
        on_standby: Callable[[str], None] | None = None,
    ) -> None:
        """Schedule while this process holds the scheduler lease; otherwise stand by and take over when the
        holder stops renewing it (it died, or was stopped). Returns when stopped."""
        lease = self.rt.settings.schedule.leader_lease
        me = self.holder
        pause = min(lease.total_seconds() / 3, self.rt.settings.schedule.sweep_interval.total_seconds())
        beating = threading.Thread(target=self._heartbeat, name="worker-heartbeat", daemon=True)
        beating.start()
        try:
            while not self._stop.is_set():
                now = self.rt.clock()
                holder = self.rt.store.lease_holder(SCHEDULER_LEASE, now)
                dead = holder if holder and holder != me and not worker_alive(holder) else None
                if self.rt.store.take_lease(SCHEDULER_LEASE, me, now, lease, dead_holder=dead):
                    self.leading = True
                    self._lead(me, lease, on_start)
                    self.leading = False
                    on_start = None
                    continue
                if on_standby:
                    on_standby(self.rt.store.lease_holder(SCHEDULER_LEASE, self.rt.clock()) or "another process")
                    on_standby = None  # said once
                if not any(r.cut_short for r in self.send_share(timedelta(seconds=pause))):
                    self._stop.wait(pause)  # nothing left to help with: look again in a while
        finally:
            self._stop.set()
            self.rt.store.give_up_lease(SCHEDULER_LEASE, me)
            self.rt.store.remove_worker(me)

    def send_share(self, for_at_most: timedelta | None = None) -> list[DispatchReport]:
        """What a worker that does not schedule does: help send the distributions the scheduler has started.
        Claims are atomic, so any number of workers share one distribution's batches without overlap. With
        `for_at_most`, it comes back after about that long (plus a batch), so a standby checks the scheduler
        lease often enough to take over within `schedule.leader_lease` even during a long send."""
        reports = []
        with self._lock:
            for dist in self.rt.store.distributions([DistributionStatus.SENDING]):
                if self._stop.is_set():
                    break
                try:
                    reports.append(self.rt.dispatcher().dispatch(dist.id, for_at_most=for_at_most))
                except PipelineError as exc:
                    log.warning("distribution %s: %s", dist.id, exc)
        return reports

    def _heartbeat(self) -> None:
        """Say this worker is alive every `schedule.heartbeat` (a thread: a long batch never silences it)."""
        every = self.rt.settings.schedule.heartbeat
        while not self._stop.is_set():
            try:
                self.rt.store.heartbeat(self.holder, forget_after=10 * every)
            except PipelineError as exc:
                log.warning("heartbeat not recorded: %s", exc)
            self._stop.wait(every.total_seconds())

    def _lead(self, me: str, lease: timedelta, on_start: Callable[[SweepReport], None] | None) -> None:
        """Sweep now, then keep firing timers and sweeping, renewing the lease, until stopped or the lease is
        lost (then another process schedules, and this one goes back to standing by)."""
        global _active
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.rt.store.engine, tablename=JOB_TABLE)},
            timezone="UTC",
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._scheduler = scheduler
        _active = self
        interval = max(1, int(self.rt.settings.schedule.sweep_interval.total_seconds()))
        scheduler.add_job(
            "pipeline.schedule:fire_sweep", "interval", seconds=interval, id=SWEEP_JOB, replace_existing=True
        )
        lost = threading.Event()
        renewed = [time.monotonic()]  # when the lease was last known to be ours

        def renew() -> None:  # a thread of its own, so a long sweep never lets the lease lapse
            while not self._stop.wait(lease.total_seconds() / 3) and not lost.is_set():
                asked = time.monotonic()
                try:
                    if not self.rt.store.take_lease(SCHEDULER_LEASE, me, self.rt.clock(), lease):
                        log.warning("the scheduler lease was taken over; standing by")
                        lost.set()
                        return
                except PipelineError as exc:  # the database is away: keep trying while the lease lasts
                    log.warning("cannot renew the scheduler lease: %s", exc)
                    continue
                renewed[0] = asked

        def lapsed() -> bool:
            """Not renewed for most of a lease (the database is unreachable, or renewal hangs): another
            process may take it over any moment, so stop scheduling rather than risk two schedulers."""
            if time.monotonic() - renewed[0] > 0.9 * lease.total_seconds():
                log.warning("the scheduler lease could not be renewed in time; standing by")
                lost.set()
            return lost.is_set()

        heartbeat = threading.Thread(target=renew, name="scheduler-lease", daemon=True)
        heartbeat.start()
        try:
            scheduler.start(paused=True)
            first = self.sweep()
            if on_start:
                on_start(first)
            scheduler.resume()
            while not self._stop.is_set() and not lost.wait(0.2) and not lapsed():
                pass
        finally:
            if _active is self:
                _active = None
            self._scheduler = None
            if scheduler.running:
                scheduler.shutdown(wait=True)
