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

import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import contacts as contact_rules
from pipeline.config import Settings
from pipeline.errors import PermanentSendError, TransientSendError
from pipeline.models import DeliveryStatus, Distribution, DistributionStatus, Outcome, Recipient, SendResult
from pipeline.render import Renderer
from pipeline.send.base import Transport
from pipeline.store import Store
from pipeline.unsubscribe import UnsubscribeLinks

CHANNEL = "email"


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
    errors: list[str] = field(default_factory=list)


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

    def dispatch(self, distribution_id: int, progress: Callable[[int, int], None] | None = None) -> DispatchReport:
        """Send what is due of one distribution. Safe to call any number of times, from any number of
        processes: the ledger and atomic claims make a second call continue, never repeat."""
        dist = self.store.distribution(distribution_id)
        report = DispatchReport(distribution_id, dist.status)
        if dist.status not in (DistributionStatus.SCHEDULED, DistributionStatus.SENDING):
            report.waiting = f"distribution is {dist.status.value}"
            return report
        now = self.clock()
        stored = self.store.release(dist.release_id)
        embargo = stored.release.embargo
        if embargo is not None and now < embargo:
            report.waiting = f"embargoed until {embargo.isoformat()}"
            return report
        if now < dist.due_at:
            report.waiting = f"due at {dist.due_at.isoformat()}"
            return report
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
            report.recipients = self._snapshot(dist)
            self.store.set_status(dist.id, DistributionStatus.SENDING, only_from=[DistributionStatus.SCHEDULED])
        report.published = self.store.mark_published(dist.release_id, max(now, embargo or now))
        rendition = self.renderer.email(stored.release, stored.slug)  # once for the whole distribution
        dead = [w for w in self.store.claim_holders() if w != self.worker and not worker_alive(w)]
        self.store.expire_leases(now, resend_in_flight=self.transport.idempotent, dead_workers=dead)
        total = self.store.open_count(dist.id)
        batch_size = min(self.settings.send.batch_size, self.transport.max_batch(self.settings.send.lease))
        done = 0
        consecutive_failures = 0
        retries = 0
        try:
            while True:
                if self.store.status_of(dist.id) is not DistributionStatus.SENDING:
                    report.waiting = "stopped: the distribution was cancelled, held or paused"
                    break
                lease_until = self.clock() + self.settings.send.lease
                batch = self.store.claim(dist.id, self.worker, batch_size, lease_until)
                if not batch:
                    break
                ids = self.store.mark_submitting([c.id for c in batch])
                still_claimed = set(ids)
                recipients = [
                    Recipient(c.id, c.address, c.name, self.links.url(c.address))
                    for c in batch
                    if c.id in still_claimed
                ]
                if not recipients:
                    continue
                try:
                    results = self.transport.send(rendition, recipients)
                except TransientSendError as exc:
                    self.store.release_claims(ids)
                    retries += 0 if exc.rate_limited else 1
                    if not self._wait(retries, exc, report):
                        break
                    continue
                except PermanentSendError as exc:
                    results = [SendResult(r.delivery_id, Outcome.FAILED, error=str(exc)) for r in recipients]
                later = [r.delivery_id for r in results if r.outcome is Outcome.RETRY]
                results = [r for r in results if r.outcome is not Outcome.RETRY]
                self.store.record_results(results, self.clock())
                if later:
                    self.store.release_claims(later)
                for result in results:
                    if result.outcome is Outcome.ACCEPTED:
                        report.accepted += 1
                        consecutive_failures = 0
                    elif result.outcome is Outcome.FAILED:
                        report.failed += 1
                        consecutive_failures += 1
                    else:
                        report.in_doubt += 1
                done += len(results)
                if progress:
                    progress(done, total)
                if consecutive_failures >= self.settings.send.pause_after_failures:
                    self.store.set_status(
                        dist.id,
                        DistributionStatus.PAUSED,
                        f"paused after {consecutive_failures} consecutive permanent failures",
                        only_from=[DistributionStatus.SENDING],
                    )
                    break
                if later:  # some were not handed over (the relay went away mid-batch): back off, then go on
                    progressed = any(r.outcome is Outcome.ACCEPTED for r in results)
                    retries = 1 if progressed else retries + 1
                    if not self._wait(retries, TransientSendError(f"{len(later)} recipients to retry"), report):
                        break
                else:
                    retries = 0
        finally:
            self.transport.close()
        report.status = self._finish(dist)
        return report

    def _snapshot(self, dist: Distribution) -> int:
        chosen = contact_rules.select(self.store.contacts(), self.settings, dist.audiences)
        return self.store.snapshot(dist.id, dist.release_id, CHANNEL, ((c.email, c.name) for c in chosen))

    def _finish(self, dist: Distribution) -> DistributionStatus:
        current = self.store.distribution(dist.id)
        if current.status is not DistributionStatus.SENDING or self.store.open_count(dist.id):
            return current.status
        troubled = current.counts.get(DeliveryStatus.FAILED, 0) + current.counts.get(DeliveryStatus.IN_DOUBT, 0)
        final = DistributionStatus.PARTIAL if troubled else DistributionStatus.SENT
        self.store.set_status(dist.id, final, only_from=[DistributionStatus.SENDING])
        return final

    def _wait(self, retries: int, exc: TransientSendError, report: DispatchReport) -> bool:
        """Sleep before the next attempt; False once the retry budget is spent (the next sweep goes on)."""
        if retries > self.settings.send.max_retries:
            report.errors.append(f"gave up after {retries - 1} retries: {exc}")
            report.waiting = "retry budget spent; the next sweep tries again"
            return False
        self.sleep(self._backoff(retries, exc.retry_after))
        return True

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after) + random.uniform(0, 0.5)  # noqa: S311 - jitter, not crypto
        base = self.settings.send.backoff.total_seconds()
        return float(min(300.0, base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)))  # noqa: S311


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"
