"""Provider events in our own vocabulary: SendGrid's event webhook, verified and mapped at the edge.

SendGrid posts a JSON array of events, signed with ECDSA over the timestamp header and the raw body, and
retries for up to a day, so duplicates happen: each event gets a stable key (`sg_event_id`, else a hash of
what identifies it) and is stored once. Our delivery id travels in `custom_args`, which SendGrid copies to
the top level of every event; an event naming one proves SendGrid accepted that message, which settles a
delivery left in doubt.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from pipeline.errors import ConfigError, PipelineError
from pipeline.models import DeliveryStatus

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
FUTURE_SKEW = timedelta(minutes=5)


class EventKind(enum.StrEnum):
    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"  # hard: the address does not exist
    BLOCKED = "blocked"  # soft bounce: refused this time (full mailbox, reputation, content)
    DROPPED = "dropped"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"
    OTHER = "other"


_SENDGRID = {
    "processed": EventKind.PROCESSED,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "dropped": EventKind.DROPPED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
}
# What an event makes of a delivery, and the order statuses move in: a status only ever moves up, so a late
# "delivered" never undoes "clicked", and nothing undoes a bounce or a complaint.
EVENT_STATUS = {
    EventKind.DEFERRED: DeliveryStatus.DEFERRED,
    EventKind.DELIVERED: DeliveryStatus.DELIVERED,
    EventKind.OPENED: DeliveryStatus.OPENED,
    EventKind.CLICKED: DeliveryStatus.CLICKED,
    EventKind.BLOCKED: DeliveryStatus.BOUNCED,
    EventKind.BOUNCED: DeliveryStatus.BOUNCED,
    EventKind.DROPPED: DeliveryStatus.DROPPED,
    EventKind.UNSUBSCRIBED: DeliveryStatus.UNSUBSCRIBED,
    EventKind.COMPLAINED: DeliveryStatus.COMPLAINED,
}
STATUS_RANK = {
    DeliveryStatus.ACCEPTED: 0,
    DeliveryStatus.DEFERRED: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.OPENED: 3,
    DeliveryStatus.CLICKED: 4,
    DeliveryStatus.DROPPED: 5,
    DeliveryStatus.BOUNCED: 5,
    DeliveryStatus.UNSUBSCRIBED: 6,
    DeliveryStatus.COMPLAINED: 7,
}


@dataclass(slots=True)
class EventsReport:
    received: int = 0
    new: int = 0
    duplicates: int = 0
    resolved: int = 0  # deliveries in doubt that an event proved accepted
    suppressed: int = 0


# Reasons SendGrid gives for dropping a message that mean the address must not be mailed again (exactly
# these: "Invalid SMTPAPI header" is our own fault, not the address's).
_SUPPRESSING_DROPS = {"bounced address", "invalid", "spam reporting address", "unsubscribed address"}


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    key: str  # stable across the provider's retries: stored once
    kind: EventKind
    address: str
    occurred_at: datetime
    delivery_id: int | None
    detail: str | None
    raw: dict[str, Any]

    @property
    def suppresses(self) -> str | None:
        """The suppression reason this event calls for at once, if any (soft bounces are counted instead)."""
        if self.kind in (EventKind.BOUNCED, EventKind.COMPLAINED, EventKind.UNSUBSCRIBED):
            return self.kind.value
        if self.kind is EventKind.DROPPED and (self.detail or "").strip().lower() in _SUPPRESSING_DROPS:
            return f"dropped: {self.detail}"
        return None


class WebhookRefused(PipelineError):
    """A webhook post that is not provably from the provider, or not well formed; `status` is the answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class SendGridWebhook:
    """Verifies and reads SendGrid event webhook posts."""

    def __init__(self, public_key: str | None, max_age: timedelta) -> None:
        self.max_age = max_age
        self._verifier: EventWebhook | None = None
        if public_key:
            problem = None
            try:
                self._verifier = EventWebhook(public_key.strip())
                if not isinstance(self._verifier.public_key, ec.EllipticCurvePublicKey):
                    problem = "it is not an elliptic-curve (ECDSA) key"
            except (ValueError, UnsupportedAlgorithm, binascii.Error) as exc:
                problem = str(exc)
            if problem:
                raise ConfigError(
                    f"not a public key SendGrid could have issued (base64 of its DER form): {problem}",
                    key="sendgrid.webhook_public_key",
                )

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: datetime) -> None:
        """Raise WebhookRefused unless the post is signed by SendGrid's key and recent."""
        if self._verifier is None:
            raise WebhookRefused(503, "sendgrid.webhook_public_key is not configured; events cannot be verified")
        if not signature or not timestamp:
            raise WebhookRefused(401, "missing signature or timestamp header")
        try:
            sent = datetime.fromtimestamp(int(timestamp), UTC)
            payload = body.decode("utf-8")
            valid = self._verifier.verify_signature(payload, signature, timestamp)
        except (ValueError, OverflowError, binascii.Error):
            raise WebhookRefused(401, "malformed signature or timestamp") from None
        if not valid:
            raise WebhookRefused(401, "signature does not match")
        if sent < now - self.max_age or sent > now + FUTURE_SKEW:
            raise WebhookRefused(401, f"timestamp {sent.isoformat()} is outside the accepted window (replay?)")

    def events(self, body: bytes) -> list[TrackingEvent]:
        """The post's events; raises WebhookRefused(400) when it is not a JSON array of objects."""
        try:
            items = json.loads(body)
        except ValueError:
            raise WebhookRefused(400, "body is not JSON") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise WebhookRefused(400, "body is not a JSON array of event objects")
        return [event for item in items if (event := read_sendgrid_event(item)) is not None]


def read_sendgrid_event(item: dict[str, Any]) -> TrackingEvent | None:
    """One SendGrid event in our vocabulary, or None when it names no address."""
    address = str(item.get("email") or "").strip().lower()
    if not address:
        return None
    name = str(item.get("event") or "")
    kind = _SENDGRID.get(name, EventKind.OTHER)
    if name == "bounce":
        kind = EventKind.BLOCKED if str(item.get("type") or "bounce") == "blocked" else EventKind.BOUNCED
    try:
        occurred = datetime.fromtimestamp(int(item.get("timestamp") or 0), UTC)
    except (TypeError, ValueError, OverflowError):
        occurred = datetime.fromtimestamp(0, UTC)
    raw_id = str(item.get("delivery_id") or "")
    delivery_id = int(raw_id) if raw_id.isascii() and raw_id.isdigit() else None
    detail = item.get("reason") or item.get("response") or item.get("url")
    key = str(item.get("sg_event_id") or "")
    if not key:
        identity = f"{item.get('sg_message_id') or item.get('smtp-id')}|{name}|{item.get('timestamp')}|{address}"
        key = "h:" + hashlib.sha256(identity.encode()).hexdigest()
    return TrackingEvent(key[:200], kind, address, occurred, delivery_id, str(detail)[:1000] if detail else None, item)
