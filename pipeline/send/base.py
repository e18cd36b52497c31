"""The contract every transport keeps.

A transport only translates: it takes one rendered email and a batch of recipients and reports, per
recipient, whether the provider accepted it. The dispatcher (send/__init__.py) owns claiming, retries,
marking and pausing. A transport:
- raises TransientSendError when the whole batch may succeed later and *nothing was sent* (429, 5xx before
  acceptance, a connection refused); it sets `retry_after` when the provider says when;
- raises PermanentSendError when the whole batch was refused and retrying cannot help (400/401/403/413);
- returns Outcome.IN_DOUBT for recipients whose fate it cannot know (the connection died after the request
  went out): the dispatcher never resends those automatically;
- returns Outcome.RETRY for recipients it did not hand over after all (the relay went away mid-batch, or
  answered 4xx for that one): they go back to pending;
- sets `concurrency`, how many batches may be in flight at once (a transport with more than one must be
  safe to call from that many threads);
- sets `idempotent` when sending the same delivery twice cannot produce two messages (the outbox overwrites);
- says through `max_batch(lease)` how many recipients it can take in one call and still finish well within a
  claim's lease (a slow, rate-limited relay takes fewer), so no other worker takes over a batch in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from pipeline.models import Recipient, SendResult
from pipeline.render import EmailRendition


class RateGate(Protocol):
    """Send slots shared by every worker, so a configured message rate holds for all of them together."""

    def reserve(self, count: int, interval: float) -> float:
        """`count` consecutive slots `interval` seconds apart; when the first starts (seconds since the epoch)."""
        ...


class Transport(Protocol):
    name: str
    idempotent: bool
    concurrency: int

    def send(self, rendition: EmailRendition, recipients: Sequence[Recipient]) -> list[SendResult]:
        """Hand one batch to the provider; see the module docstring for what to raise or return."""
        ...

    def max_batch(self, lease: timedelta) -> int:
        """The most recipients one `send` call should carry."""
        ...

    def close(self) -> None:
        """Release connections; the transport may be used again afterwards."""
        ...
