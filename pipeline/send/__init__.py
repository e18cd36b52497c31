"""The delivery algorithm, shared by every transport.

dispatch(distribution):
  1. gates: only scheduled/sending distributions; never before the release's embargo; a scheduled one found
     later than `schedule.max_lateness` is held for a person instead of being sent silently late;
  2. audience snapshot (once): contacts in the audiences, minus suppressions, minus addresses that already
     have this release on this channel, written to the ledger as `pending`;
  3. loop: claim ≤ batch_size (atomic; suppressed addresses dropped inside the claim) → mark `submitting` →
     transport → mark accepted / failed / in_doubt;
     transient errors release the claim and back off (rate limits do not spend the retry budget);
     after `pause_after_failures` consecutive permanent failures the distribution is paused;
  4. finish: `sent` when every delivery was accepted, `partial` when some failed or are in doubt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import contacts as contact_rules
from pipeline.config import DigestSettings, Settings
from pipeline.errors import PermanentSendError, PipelineError, ScheduleError, TransientSendError
from pipeline.models import (
    DIGEST_CHANNEL,
    PREVIEW_CHANNEL,
    Distribution,
    DistributionStatus,
    Outcome,
    SendResult,
)
from pipeline.render import EmailRendition, Renderer
from pipeline.send.base import Transport
from pipeline.store import ClaimedDelivery, Store, address_hash
from pipeline.unsubscribe import UnsubscribeLinks

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 10  # claims of one delivery the provider keeps deferring before it counts as failed
LONGEST_WAIT = 300.0  # seconds; a provider asking for a longer pause is left to a later sweep


@dataclass(slots=True)
class DispatchReport:
    distribution_id: int
    status: DistributionStatus
    recipients: int = 0  # ledger rows added by the snapshot
    accepted: int = 0
    failed: int = 0
    in_doubt: int = 0
    waiting: str | None = None  # why nothing was sent, when nothing was
    published: bool = False
    cut_short: bool = False  # stopped at `for_at_most` with work left (another call goes on with it)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """What the lanes sending one distribution share (under `lock`)."""

    dist_id: int
    render: Callable[[int], EmailRendition]  # a language version's email, rendered on first use
    report: DispatchReport
    total: int
    batch_size: int
    progress: Callable[[int, int], None] | None
    categories: tuple[str, ...] = ()  # the release's, for opt-outs made while it is being sent
    until: float | None = None  # time.monotonic() after which lanes claim no more
    done: int = 0
    consecutive_failures: int = 0
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    renditions: dict[int, EmailRendition] = field(default_factory=dict)

    def rendition_for(self, release_id: int) -> EmailRendition:
        """Each version is rendered once for the whole distribution, whichever lane needs it first."""
        with self.lock:
            if release_id not in self.renditions:
                self.renditions[release_id] = self.render(release_id)
            return self.renditions[release_id]

    def stop(self, why: str) -> None:
        with self.lock:
            self.stop_locked(why)

    def stop_locked(self, why: str) -> None:
        if not self.stopped:
            self.stopped = True
            self.report.waiting = self.report.waiting or why


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(worker: str) -> bool:
    """False only when `worker` certainly is not running: a process of this host that no longer exists (or is
    a zombie). Workers of other hosts count as alive; their leases decide."""
    host, _, pid_text = worker.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        transport: Transport,
        renderer: Renderer,
        links: UnsubscribeLinks,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings, self.store, self.transport, self.renderer, self.links = (
            settings,
            store,
            transport,
            renderer,
            links,
        )
        self.clock, self.sleep = clock, sleep
        self.worker = worker_id()

    def dispatch(
        self,
        distribution_id: int,
        progress: Callable[[int, int], None] | None = None,
        for_at_most: timedelta | None = None,
    ) -> DispatchReport:
        """Send what is due of one distribution. Safe to call any number of times, from any number of
        processes: the ledger and atomic claims make a second call continue, never repeat. With `for_at_most`,
        no batch is claimed after that long (a worker that must also watch for other duties comes back)."""
        dist = self.store.distribution(distribution_id)
        report = DispatchReport(distribution_id, dist.status)
        if dist.status not in (DistributionStatus.SCHEDULED, DistributionStatus.SENDING):
            report.waiting = f"distribution is {dist.status.value}"
            return report
        now = self.clock()
        stored = self.store.release(dist.release_id)
        embargo = stored.release.embargo
        preview = dist.channel == PREVIEW_CHANNEL
        if preview and (embargo is None or now >= embargo):
            note = "held: the embargo has lifted, so this would no longer be a preview; send the release instead"
            live = [DistributionStatus.SCHEDULED, DistributionStatus.SENDING]
            self.store.set_status(dist.id, DistributionStatus.HELD, note, only_from=live)
            report.status, report.waiting = DistributionStatus.HELD, note
            return report
        if embargo is not None and now < embargo and not preview:
            report.waiting = f"embargoed until {embargo.isoformat()}"
            return report
        if now < dist.due_at:
            report.waiting = f"due at {dist.due_at.isoformat()}"
            return report
        versions = self.store.versions(dist.release_id)  # each contact gets the version in their language
        categories = self._categories(dist.release_id, versions)
        if dist.status is DistributionStatus.SCHEDULED:
            lateness = now - max(dist.due_at, embargo or dist.due_at)  # late relative to when it could first go
            if lateness > self.settings.schedule.max_lateness:
                note = (
                    f"held: found {_human(lateness)} after its due time, more than schedule.max_lateness "
                    f"({_human(self.settings.schedule.max_lateness)}); release or cancel it"
                )
                self.store.set_status(dist.id, DistributionStatus.HELD, note, only_from=[DistributionStatus.SCHEDULED])
                report.status, report.waiting = DistributionStatus.HELD, note
                return report
            report.recipients = self._snapshot(dist, versions, categories)
            self.store.set_status(dist.id, DistributionStatus.SENDING, only_from=[DistributionStatus.SCHEDULED])
        digest = dist.channel == DIGEST_CHANNEL
        for version in {dist.release_id, *versions.values()} if not (preview or digest) else ():  # never public
            report.published |= self.store.mark_published(version, max(now, embargo or now))

        def render(release_id: int) -> EmailRendition:
            if digest:
                return self._digest_email(release_id)
            chosen = stored if release_id == dist.release_id else self.store.release(release_id)
            return self.renderer.email(chosen.release, chosen.slug, embargoed_preview=preview)

        dead = [w for w in self.store.claim_holders() if w != self.worker and not worker_alive(w)]
        self.store.expire_leases(now, resend_in_flight=self.transport.idempotent, dead_workers=dead)
        run = _Run(
            dist_id=dist.id,
            render=render,
            categories=categories,
            report=report,
            total=self.store.open_count(dist.id),
            batch_size=min(self.settings.send.batch_size, self.transport.max_batch(self.settings.send.lease)),
            progress=progress,
            until=time.monotonic() + for_at_most.total_seconds() if for_at_most else None,
        )
        try:
            lanes = max(1, self.transport.concurrency)
            if lanes == 1:
                self._lane(run)
            else:  # several requests in flight: one waits on the provider while another is being prepared
                with ThreadPoolExecutor(lanes, thread_name_prefix=f"dist{dist.id}") as pool:
                    for future in [pool.submit(self._lane, run) for _ in range(lanes)]:
                        future.result()
        finally:
            self.transport.close()
        report.status = self.store.finish(dist.id)
        return report

    def _lane(self, run: _Run) -> None:
        """Claim, send and record batches until none is left or the run stops. Several lanes may share a run;
        each counts its own retries, so one outage seen by every lane at once is one retry, not several."""
        retries = 0
        while not run.stopped:
            if run.until is not None and time.monotonic() > run.until:
                run.report.cut_short = True
                return
            lease_until = self.clock() + self.settings.send.lease
            batch = self.store.claim(run.dist_id, self.worker, run.batch_size, lease_until, run.categories)
            if not batch:  # nothing left, or the distribution no longer sending
                if self.store.status_of(run.dist_id) is not DistributionStatus.SENDING:
                    run.stop("stopped: the distribution was cancelled, held or paused")
                return
            by_version: dict[int, list[ClaimedDelivery]] = {}
            for claimed in batch:  # a batch may mix language versions: one request per version
                by_version.setdefault(claimed.release_id, []).append(claimed)
            parts = list(by_version.items())
            for index, (release_id, part) in enumerate(parts):
                keep_going = False
                if not run.stopped:  # paused by a failure in the part before: the rest waits
                    keep_going, retries = self._submit(run, release_id, part, retries)
                if not keep_going:  # this and the other versions' claims still held go back (a no-op for rows
                    # already recorded or released by _submit)
                    rest = [c.id for _, later in parts[index:] for c in later]
                    if rest:
                        self.store.release_claims(rest, self.worker)
                    break

    def _submit(self, run: _Run, release_id: int, batch: list[ClaimedDelivery], retries: int) -> tuple[bool, int]:
        """Hand one claimed batch of one version to the transport and record what happened. Returns (go on
        with this claim, the lane's retry count)."""
        try:
            rendition = run.rendition_for(release_id)  # before anything is marked as going out
        except PipelineError as exc:
            run.report.errors.append(f"release {release_id}: {exc}")
            run.stop(f"cannot render a version of the release: {exc}")
            return False, retries
        ids = self.store.mark_submitting([c.id for c in batch], self.worker)
        still_claimed = set(ids)
        if not still_claimed:
            return True, retries
        recipients = [
            self.links.recipient(c.id, c.address, c.name, rendition.release_slug)
            for c in batch
            if c.id in still_claimed
        ]
        try:
            with self._lease_kept(ids):
                results = self.transport.send(rendition, recipients)
        except TransientSendError as exc:
            self.store.release_claims(ids, self.worker, refund=exc.rate_limited)
            retries += 0 if exc.rate_limited else 1
            return self._pause_before_retry(run, exc, retries), retries
        except PermanentSendError as exc:
            results = [SendResult(r.delivery_id, Outcome.FAILED, error=str(exc)) for r in recipients]
        except Exception as exc:
            # A fault of our own or of a library: the request may have gone out, so never resend blindly.
            why = f"unexpected error while sending ({type(exc).__name__}: {exc})"
            self.store.record_results([SendResult(r.delivery_id, Outcome.IN_DOUBT, error=why) for r in recipients])
            run.report.errors.append(why)
            run.stop(why)
            raise
        attempts = {c.id: c.attempts for c in batch}
        results = [self._give_up_after_attempts(r, attempts.get(r.delivery_id, 1)) for r in results]
        later = [r.delivery_id for r in results if r.outcome is Outcome.RETRY]
        results = [r for r in results if r.outcome is not Outcome.RETRY]
        self.store.record_results(results, self.clock())
        if later:
            self.store.release_claims(later, self.worker)
        self._tally(run, results)
        if any(r.outcome is Outcome.ACCEPTED for r in results):
            retries = 0
        if later:  # some were not handed over (the relay went away mid-batch): back off, then go on
            retries += 1
            trouble = TransientSendError(f"{len(later)} recipients to retry")
            return self._pause_before_retry(run, trouble, retries), retries
        return True, retries

    @contextlib.contextmanager
    def _lease_kept(self, ids: list[int]) -> Iterator[None]:
        """Renew the batch's lease every third of `send.lease` while the transport works on it (a paced SMTP
        batch sharing its rate with other workers, a slow provider), so no other worker takes it over and no
        one puts it in doubt while it is still being sent."""
        lease = self.settings.send.lease
        done = threading.Event()

        def renew() -> None:
            while not done.wait(lease.total_seconds() / 3):
                try:
                    self.store.extend_claims(ids, self.worker, self.clock() + lease)
                except PipelineError as exc:
                    log.warning("cannot renew the lease of a batch being sent: %s", exc)

        keeper = threading.Thread(target=renew, name="batch-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def _give_up_after_attempts(self, result: SendResult, attempts: int) -> SendResult:
        """A recipient the provider keeps deferring (SMTP 4xx every time) fails after MAX_ATTEMPTS claims,
        so a distribution always ends."""
        if result.outcome is Outcome.RETRY and attempts >= MAX_ATTEMPTS:
            why = f"gave up after {attempts} attempts: {result.error or 'deferred each time'}"
            return SendResult(result.delivery_id, Outcome.FAILED, error=why)
        return result

    def _tally(self, run: _Run, results: list[SendResult]) -> None:
        with run.lock:
            report = run.report
            for result in results:
                if result.outcome is Outcome.ACCEPTED:
                    report.accepted += 1
                    run.consecutive_failures = 0
                elif result.outcome is Outcome.FAILED:
                    report.failed += 1
                    run.consecutive_failures += 1
                else:
                    report.in_doubt += 1
            run.done += len(results)
            if run.progress:
                run.progress(run.done, run.total)
            failures = run.consecutive_failures
            if failures >= self.settings.send.pause_after_failures and not run.stopped:
                self.store.set_status(
                    run.dist_id,
                    DistributionStatus.PAUSED,
                    f"paused after {failures} consecutive permanent failures",
                    only_from=[DistributionStatus.SENDING],
                )
                run.stopped = True

    def _pause_before_retry(self, run: _Run, exc: TransientSendError, retries: int) -> bool:
        """Back off before this lane's next claim. False (and the run stops; the next sweep goes on from
        there) once the lane's retry budget is spent, or when the provider asks for a very long pause."""
        if retries > self.settings.send.max_retries:
            with run.lock:
                if not run.stopped:
                    run.report.errors.append(f"gave up after {retries - 1} retries: {exc}")
                run.stop_locked("retry budget spent; the next sweep tries again")
            return False
        wait = self._backoff(max(1, retries), exc.retry_after)
        if wait > LONGEST_WAIT:  # do not hold this worker (and every other due distribution) that long
            with run.lock:
                run.report.errors.append(f"{exc}; asked to wait {wait:.0f} s")
                run.stop_locked(f"rate limited for {wait / 60:.0f} min; a later sweep goes on")
            return False
        self.sleep(wait)
        return True

    def _digest_email(self, release_id: int) -> EmailRendition:
        issue = self.store.digest_issue(release_id)
        if issue is None:
            raise ScheduleError(f"release {release_id} is sent on the digest channel but is not a digest")
        # A digest removed from config.yaml after it was scheduled still goes, with the default templates.
        settings = self.settings.digest(issue.name) or DigestSettings(name=issue.name, cron="0 0 * * *")
        return self.renderer.digest_email(issue, settings)

    def _categories(self, release_id: int, versions: dict[str, int]) -> tuple[str, ...]:
        """Every version's categories: an opt-out from a translation's category counts as much."""
        found: dict[str, None] = {}
        for version in {release_id, *versions.values()}:
            found |= dict.fromkeys(self.store.release(version).release.categories)
        return tuple(found)

    def _snapshot(self, dist: Distribution, versions: dict[str, int], categories: tuple[str, ...]) -> int:
        filters = [contact_rules.audience(self.settings, name) for name in dist.audiences]
        opted_out = self.store.opted_out(categories)
        preview = dist.channel == PREVIEW_CHANNEL
        if not preview and not opted_out and any(contact_rules.is_everyone(f) for f in filters):
            return self.store.snapshot_everyone(dist.id, dist.release_id, dist.channel, versions=versions)
        chosen = contact_rules.select(self.store.contacts(), self.settings, dist.audiences)
        people = (
            (c.email, c.name, c.language)
            for c in chosen
            # An embargoed preview goes only to people marked for them, whatever the audience says.
            if address_hash(c.email) not in opted_out and (c.embargo_trusted or not preview)
        )
        return self.store.snapshot(dist.id, dist.release_id, dist.channel, people, versions=versions)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after) + random.uniform(0, 0.5)  # noqa: S311 - jitter, not crypto
        base = self.settings.send.backoff.total_seconds()
        return float(min(LONGEST_WAIT, base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)))  # noqa: S311


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"
