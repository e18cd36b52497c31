"""The embedded default transport: one .eml file per recipient in a folder, no account or server needed.

Files are named by release and address, so sending the same delivery again overwrites instead of
duplicating, and each file is written atomically (a crash never leaves half a message).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from pipeline.files import write_atomically
from pipeline.message import MessageTemplate
from pipeline.models import Outcome, Recipient, SendResult
from pipeline.render import EmailRendition


def eml_name(address: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", address)[:80]
    return f"{safe}-{hashlib.sha256(address.encode()).hexdigest()[:8]}.eml"


class OutboxTransport:
    name = "outbox"
    idempotent = True
    concurrency = 1  # bound by the disk (one fsync per file), not by waiting

    def __init__(self, folder: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.folder, self.clock = folder, clock

    def path_for(self, release_slug: str, address: str) -> Path:
        return self.folder / release_slug / eml_name(address)

    def send(self, rendition: EmailRendition, recipients: Sequence[Recipient]) -> list[SendResult]:
        results = []
        template = MessageTemplate(rendition)
        date = format_datetime(self.clock())
        for recipient in recipients:
            message = template.render_dated(recipient, date)
            path = self.path_for(rendition.release_slug, recipient.address)
            write_atomically(path, message)
            results.append(SendResult(recipient.delivery_id, Outcome.ACCEPTED, provider_id=str(path.name)))
        return results

    def max_batch(self, lease: timedelta) -> int:
        return 1000

    def close(self) -> None:
        return None
