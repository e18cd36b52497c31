"""Plain, frozen values passed from stage to stage (parse → render → queue → send → feed)."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any


def slugify(text: str, default: str = "other") -> str:
    """A URL path segment: "Café & Co. Opens" → "cafe-co-opens"; `default` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-") or default


@dataclass(frozen=True, slots=True)
class Quote:
    speaker: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Boilerplate:
    """An "About X" section."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image or file that goes with a release: feed enclosure / media:content, image in pages and email."""

    url: str
    type: str = "application/octet-stream"
    title: str | None = None  # alt text for images
    length: int = 0

    @property
    def is_image(self) -> bool:
        return self.type.startswith("image/")


@dataclass(frozen=True, slots=True)
class MediaContact:
    name: str | None
    email: str | None
    phone: str | None
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """A parsed release document. Fields mirror the `parse --json` contract; the rest is front matter."""

    headline: str | None
    subheadline: str | None = None
    date: date | None = None
    dateline: str | None = None
    wire: str | None = None
    language: str | None = None
    embargo: datetime | None = None
    body: tuple[str, ...] = ()
    quotes: tuple[Quote, ...] = ()
    about: tuple[Boilerplate, ...] = ()
    contacts: tuple[MediaContact, ...] = ()
    forward_looking_statements: str | None = None
    end_marker: str | None = None
    # Metadata that does not appear in the printed release.
    source: str | None = None
    audiences: tuple[str, ...] = ()
    send_at: datetime | None = None
    categories: tuple[str, ...] = ()
    organization: str | None = None
    media: tuple[Attachment, ...] = ()
    corrects: str | None = None  # the slug of the release this document corrects
    correction: str | None = None  # what the correction changed, shown with the corrected release
    translation_of: str | None = None  # the slug of the release this is a version of, in another language
    problems: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The headline, or a subject derived from the first body sentence when the document has none."""
        if self.headline:
            return self.headline
        first = self.body[0] if self.body else (self.about[0].name if self.about else "Press release")
        sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
        return sentence if len(sentence) <= 110 else sentence[:107].rsplit(" ", 1)[0] + "…"

    @property
    def slug(self) -> str:
        """Stable identity: the date and the title, so re-parsing a file maps to the same release."""
        words = slugify(self.title, default="")[:60].rstrip("-") or "release"
        return f"{self.date.isoformat()}-{words}" if self.date else words

    @property
    def content_hash(self) -> str:
        """A hash of everything printed or scheduled; a changed document is a new version."""
        payload = json.dumps(self.to_json() | {"meta": self._meta()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def _meta(self) -> dict[str, Any]:
        return {
            "audiences": list(self.audiences),
            "categories": list(self.categories),
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "organization": self.organization,
            "media": [asdict(m) for m in self.media],
            "corrects": self.corrects,
            "correction": self.correction,
            "translation_of": self.translation_of,
        }

    def to_json(self) -> dict[str, Any]:
        """The `parse --json` object: exactly the contract's keys, plus `problems`."""
        return {
            "headline": self.headline,
            "subheadline": self.subheadline,
            "date": self.date.isoformat() if self.date else None,
            "dateline": self.dateline,
            "wire": self.wire,
            "language": self.language,
            "embargo": self.embargo.isoformat() if self.embargo else None,
            "body": list(self.body),
            "quotes": [asdict(q) for q in self.quotes],
            "about": [asdict(a) for a in self.about],
            "contacts": [{"name": c.name, "email": c.email, "phone": c.phone} for c in self.contacts],
            "forward_looking_statements": self.forward_looking_statements,
            "end_marker": self.end_marker,
            "problems": list(self.problems),
        }

    def to_record(self) -> dict[str, Any]:
        """Everything needed to rebuild the release from the database."""
        return (
            self.to_json() | {"source": self.source, "contacts_full": [asdict(c) for c in self.contacts]} | self._meta()
        )

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Release:
        contacts = data.get("contacts_full") or data.get("contacts") or []
        return cls(
            headline=data.get("headline"),
            subheadline=data.get("subheadline"),
            date=date.fromisoformat(data["date"]) if data.get("date") else None,
            dateline=data.get("dateline"),
            wire=data.get("wire"),
            language=data.get("language"),
            embargo=datetime.fromisoformat(data["embargo"]) if data.get("embargo") else None,
            body=tuple(data.get("body") or ()),
            quotes=tuple(Quote(**q) for q in data.get("quotes") or ()),
            about=tuple(Boilerplate(**a) for a in data.get("about") or ()),
            contacts=tuple(MediaContact(**c) for c in contacts),
            forward_looking_statements=data.get("forward_looking_statements"),
            end_marker=data.get("end_marker"),
            source=data.get("source"),
            audiences=tuple(data.get("audiences") or ()),
            send_at=datetime.fromisoformat(data["send_at"]) if data.get("send_at") else None,
            categories=tuple(data.get("categories") or ()),
            organization=data.get("organization"),
            media=tuple(Attachment(**m) for m in data.get("media") or ()),
            corrects=data.get("corrects"),
            correction=data.get("correction"),
            translation_of=data.get("translation_of"),
            problems=tuple(data.get("problems") or ()),
        )


class ConsentBasis(enum.StrEnum):
    EXPRESS = "express"
    IMPLIED_PUBLISHED = "implied-published"
    BUSINESS_RELATIONSHIP = "business-relationship"


@dataclass(frozen=True, slots=True)
class Contact:
    email: str
    name: str | None = None
    outlet: str | None = None
    beats: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    language: str | None = None
    consent_basis: ConsentBasis | None = None
    consent_source: str | None = None
    consent_date: date | None = None
    role: str | None = None
    tags: tuple[str, ...] = ()
    embargo_trusted: bool = False  # may receive embargoed previews before the embargo lifts


class DistributionStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    PARTIAL = "partial"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    HELD = "held"

    @property
    def finished(self) -> bool:
        return self in (DistributionStatus.SENT, DistributionStatus.PARTIAL, DistributionStatus.CANCELLED)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"  # taken by a worker, not yet handed to the transport
    SUBMITTING = "submitting"  # handed to the transport; a crash here leaves the outcome unknown
    ACCEPTED = "accepted"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    SUPPRESSED = "suppressed"  # unsubscribed or bounced after the audience snapshot, never sent
    CANCELLED = "cancelled"
    # Provider events move an accepted delivery on:
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"


# Ledger channels: each keeps its own "once per recipient" (deliveries are unique on release, channel, address).
EMAIL_CHANNEL = "email"
PREVIEW_CHANNEL = "email-preview"  # embargoed previews, so the release itself still goes to the same people
DIGEST_CHANNEL = "digest"  # recurring digests; each digest is its own (never published) release row

# Deliveries not yet settled: a distribution with any of these is still sending.
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.SUBMITTING)


@dataclass(frozen=True, slots=True)
class Distribution:
    id: int
    release_id: int
    release_slug: str
    audiences: tuple[str, ...]
    channel: str
    due_at: datetime  # aware, UTC
    timezone: str  # the IANA zone the schedule is shown in
    status: DistributionStatus
    created_at: datetime
    note: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Recipient:
    """One claimed delivery as a transport sees it: who, and the values substituted into the message."""

    delivery_id: int
    address: str
    name: str | None
    unsubscribe_url: str
    unsubscribe_mailto: str | None = None


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    RETRY = "retry"  # not handed over (the relay went away, or answered 4xx): back to pending, tried later


@dataclass(frozen=True, slots=True)
class SendResult:
    delivery_id: int
    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
