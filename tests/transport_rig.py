"""Test rig shared by the transport tests: a project whose transport is outbox, SMTP (a real aiosmtpd relay on
loopback) or SendGrid (a local SendGrid-compatible server on loopback), and a uniform view of what each
recipient received, whichever way it went."""

from __future__ import annotations

import email
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.contacts import read_contacts
from pipeline.intake import queue_release
from pipeline.models import Contact
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from pipeline.store import utcnow
from tools.fake_sendgrid import FakeSendGrid, Faults
from tools.fake_smtp import FakeSmtp, SmtpFaults

API_KEY = "SG.local-test-key"
TRANSPORTS = ("outbox", "smtp", "sendgrid")


@dataclass(frozen=True)
class Received:
    """One message as its recipient sees it."""

    to: str
    name: str | None
    subject: str
    from_address: str
    headers: dict[str, str]
    text: str
    html: str


def _from_mime(message: EmailMessage) -> Received:
    to = message["To"].addresses[0]
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    headers = {k: str(v) for k, v in message.items()}
    return Received(
        to=to.addr_spec.lower(),
        name=to.display_name or None,
        subject=str(message["Subject"]),
        from_address=message["From"].addresses[0].addr_spec,
        headers=headers,
        text=text_part.get_content(),
        html=html_part.get_content(),
    )


@dataclass
class Channel:
    """A runtime wired to one transport, and what its far end received."""

    kind: str
    runtime: Runtime
    sendgrid: FakeSendGrid | None = None
    smtp: FakeSmtp | None = None

    def recipients(self) -> list[str]:
        """Who received a message, one entry per message (cheap: no full MIME parse)."""
        if self.sendgrid is not None:
            return [a.email for a in self.sendgrid.accepted]
        if self.smtp is not None:
            return [r.rcpt_to.lower() for r in self.smtp.received]
        parser = BytesHeaderParser(policy=default)
        files = self.runtime.settings.outbox_dir.rglob("*.eml")
        return [parser.parsebytes(f.read_bytes())["To"].addresses[0].addr_spec.lower() for f in files]

    def received(self) -> list[Received]:
        if self.sendgrid is not None:
            return [
                Received(a.email, a.name, a.subject, a.from_email, a.headers, a.text, a.html)
                for a in self.sendgrid.accepted
            ]
        if self.smtp is not None:
            return [_from_mime(r.message()) for r in self.smtp.received]
        files = sorted(self.runtime.settings.outbox_dir.rglob("*.eml"))
        return [_from_mime(_parse(f.read_bytes())) for f in files]


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def with_send(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"send": settings.send.model_copy(update=changes)})


@contextmanager
def channel(
    kind: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    *,
    reject: dict[str, str] | None = None,
    faults: Faults | None = None,
    smtp_faults: SmtpFaults | None = None,
    timeout: float = 5.0,
) -> Iterator[Channel]:
    """Open a runtime whose transport is `kind`, with its far end running on loopback."""
    if kind == "sendgrid":
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        with FakeSendGrid(API_KEY, reject=reject, faults=faults) as server:
            sg = settings.sendgrid.model_copy(update={"host": server.url, "timeout": timeout})
            rt = Runtime.open(settings.model_copy(update={"transport": "sendgrid", "sendgrid": sg}))
            try:
                yield Channel(kind, rt, sendgrid=server)
            finally:
                rt.close()
    elif kind == "smtp":
        rejections = {a: "550 5.1.1 <" + a + ">: mailbox unavailable" for a in reject or {}}
        with FakeSmtp(reject=rejections, faults=smtp_faults) as relay:
            smtp = settings.smtp.model_copy(
                update={"host": relay.host, "port": relay.port, "security": "none", "timeout": timeout}
            )
            rt = Runtime.open(settings.model_copy(update={"transport": "smtp", "smtp": smtp}))
            try:
                yield Channel(kind, rt, smtp=relay)
            finally:
                rt.close()
    else:
        rt = Runtime.open(settings)
        try:
            yield Channel(kind, rt)
        finally:
            rt.close()


def queue_to_all(runtime: Runtime, project: Path, extra: int = 0, release_file: str = "acme.txt") -> int:
    """Import the project's contacts (plus `extra` generated ones) and queue a release to everyone, now."""
    runtime.store.save_contacts(read_contacts(project.parent / "contacts.csv").contacts)
    if extra:
        runtime.store.save_contacts(many_contacts(extra))
    release = parse_release(project.parent / "releases" / release_file, runtime.settings.zone)
    dist_id, _ = queue_release(runtime.store, runtime.settings, release, ("all",), utcnow(), "America/Toronto")
    assert dist_id is not None
    return dist_id


def many_contacts(count: int, domain: str = "example.com") -> list[Contact]:
    return [Contact(email=f"reader{i:06d}@{domain}", name=f"Reader {i}") for i in range(count)]
