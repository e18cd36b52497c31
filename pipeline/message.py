"""The MIME message one recipient receives: text part first, then HTML; UTF-8; RFC 8058 unsubscribe headers.

A distribution renders its email once; `MessageTemplate` turns that rendition into MIME once too. The shared
headers (From, Subject, …) are encoded by the standard library's email package when the template is made;
per recipient only the To, Message-ID and unsubscribe headers are formatted and the two bodies substituted
and quoted-printable encoded (binascii, in C). That keeps a message at tens of microseconds instead of the
milliseconds the email package needs to build and serialise a whole message, which matters at 100,000
recipients over SMTP.
"""

from __future__ import annotations

import binascii
import re
import secrets
from datetime import datetime
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime, formataddr
from html import escape

from pipeline.models import Recipient
from pipeline.render import NAME_MARK, UNSUBSCRIBE_MARK, EmailRendition

CRLF = b"\r\n"


def one_line(value: str) -> str:
    """Header values never carry CR, LF or NUL from content: they are folded to spaces."""
    return re.sub(r"[\r\n\x00\s]+", " ", value).strip()


def _address(display: str | None, addr: str) -> Address:
    username, _, domain = addr.rpartition("@")
    return Address(display_name=one_line(display or ""), username=username, domain=domain)


def _quoted_printable(text: str) -> bytes:
    """UTF-8, quoted-printable, CRLF line ends: safe for any relay, readable in an .eml file."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")  # a lone CR is refused by strict relays
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True)
    return encoded.replace(b"\n", CRLF)


def _to_header(recipient: Recipient) -> str:
    name = one_line(recipient.name or "")
    try:
        return formataddr((name, recipient.address), charset="utf-8")
    except UnicodeEncodeError:  # an internationalised address: sent as UTF-8 (SMTPUTF8), name still encoded
        if not name:
            return f"<{recipient.address}>"
        return formataddr((name, "x@x"), charset="utf-8").replace("<x@x>", f"<{recipient.address}>")


class MessageTemplate:
    """One rendition as MIME, made once; `render(recipient)` gives that recipient's complete message."""

    def __init__(self, rendition: EmailRendition) -> None:
        self.rendition = rendition
        self.domain = rendition.from_address.rpartition("@")[2]
        # "=_" can never occur in quoted-printable text ("=" is always "=3D" there), so the boundary is safe.
        self.boundary = f"=_pipeline_{secrets.token_hex(12)}"
        shared = EmailMessage(policy=SMTP)
        shared["From"] = _address(rendition.from_name, rendition.from_address)
        if rendition.reply_to:
            shared["Reply-To"] = _address(None, rendition.reply_to)
        shared["Subject"] = one_line(rendition.subject)
        shared["X-Release"] = one_line(rendition.release_slug)
        shared["MIME-Version"] = "1.0"
        shared["Content-Type"] = f'multipart/alternative; boundary="{self.boundary}"'
        self._shared_headers = shared.as_bytes().split(CRLF + CRLF, 1)[0] + CRLF
        self._text_part = b'Content-Type: text/plain; charset="utf-8"' + CRLF
        self._html_part = b'Content-Type: text/html; charset="utf-8"' + CRLF
        self._encoding = b"Content-Transfer-Encoding: quoted-printable" + CRLF + CRLF

    def headers(self, recipient: Recipient, date: str) -> list[tuple[str, str]]:
        """The per-recipient headers, in order (date is already formatted, once per batch)."""
        to = _to_header(recipient)
        mailto = recipient.unsubscribe_mailto
        unsubscribe = [f"<{recipient.unsubscribe_url}>"] + ([f"<{mailto}>"] if mailto else [])
        return [
            ("To", to),
            ("Date", date),
            ("Message-ID", f"<{secrets.token_hex(8)}.d{recipient.delivery_id}@{self.domain}>"),
            # One line even when long: a folded List-Unsubscribe can break the DKIM signature over it.
            ("List-Unsubscribe", ", ".join(unsubscribe)),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("X-Delivery-Id", str(recipient.delivery_id)),
        ]

    def render(self, recipient: Recipient, now: datetime) -> bytes:
        """The whole message as bytes with CRLF line ends, ready for SMTP or an .eml file."""
        return self.render_dated(recipient, format_datetime(now))

    def render_dated(self, recipient: Recipient, date: str) -> bytes:
        url, name = recipient.unsubscribe_url, recipient.name or ""
        text = self.rendition.text.replace(UNSUBSCRIBE_MARK, url).replace(NAME_MARK, name)
        html = self.rendition.html.replace(UNSUBSCRIBE_MARK, escape(url)).replace(NAME_MARK, escape(name))
        head = CRLF.join(f"{key}: {value}".encode() for key, value in self.headers(recipient, date))
        delimiter = b"--" + self.boundary.encode() + CRLF
        return b"".join(
            [
                self._shared_headers,
                head,
                CRLF,
                CRLF,
                delimiter,
                self._text_part,
                self._encoding,
                _quoted_printable(text),
                CRLF,
                delimiter,
                self._html_part,
                self._encoding,
                _quoted_printable(html),
                CRLF,
                b"--" + self.boundary.encode() + b"--" + CRLF,
            ]
        )


def build_message(rendition: EmailRendition, recipient: Recipient, now: datetime) -> EmailMessage:
    """One complete message as an EmailMessage (for previews and tests); sending uses MessageTemplate."""
    raw = MessageTemplate(rendition).render(recipient, now)
    parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed
