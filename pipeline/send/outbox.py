"""The embedded default transport: one .eml file per recipient in a folder, no account or server needed.

Files are named by release and address, so sending the same delivery again overwrites instead of
duplicating, and each file is written atomically (a crash never leaves half a message).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipeline.files import write_atomically
from pipeline.message import build_message
from pipeline.models import Outcome, Recipient, SendResult
from pipeline.render import EmailRendition
from pipeline.unsubscribe import UnsubscribeLinks


def eml_name(address: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", address)[:80]
    return f"{safe}-{hashlib.sha256(address.encode()).hexdigest()[:8]}.eml"


class OutboxTransport:
    name = "outbox"
    idempotent = True

    def __init__(
        self, folder: Path, links: UnsubscribeLinks, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.folder, self.links, self.clock = folder, links, clock

    def path_for(self, release_slug: str, address: str) -> Path:
        return self.folder / release_slug / eml_name(address)

    def send(self, rendition: EmailRendition, recipients: Sequence[Recipient]) -> list[SendResult]:
        results = []
        now = self.clock()
        for recipient in recipients:
            message = build_message(rendition, recipient, now, self.links.mailto_url(recipient.address))
            path = self.path_for(rendition.release_slug, recipient.address)
            write_atomically(path, message.as_bytes())
            results.append(SendResult(recipient.delivery_id, Outcome.ACCEPTED, provider_id=str(path.name)))
        return results

    def close(self) -> None:
        return None
