"""The MIME message one recipient receives: text part first, then HTML; UTF-8; RFC 8058 unsubscribe headers."""

from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from html import escape

from pipeline.models import Recipient
from pipeline.render import UNSUBSCRIBE_MARK, EmailRendition


def _one_line(value: str) -> str:
    """Header values never carry CR, LF or NUL from content: they are folded to spaces."""
    return re.sub(r"[\r\n\x00\s]+", " ", value).strip()


def _address(display: str | None, addr: str) -> Address:
    username, _, domain = addr.rpartition("@")
    return Address(display_name=_one_line(display or ""), username=username, domain=domain)


def build_message(
    rendition: EmailRendition, recipient: Recipient, now: datetime, mailto: str | None = None
) -> EmailMessage:
    """One complete message; `mailto` is the recipient's mailto: unsubscribe URL, if the sender has one."""
    message = EmailMessage(policy=SMTP)
    message["From"] = _address(rendition.from_name, rendition.from_address)
    message["To"] = _address(recipient.name, recipient.address)
    if rendition.reply_to:
        message["Reply-To"] = _address(None, rendition.reply_to)
    message["Subject"] = _one_line(rendition.subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(
        idstring=f"d{recipient.delivery_id}", domain=rendition.from_address.rpartition("@")[2]
    )
    unsubscribe = [f"<{recipient.unsubscribe_url}>"] + ([f"<{mailto}>"] if mailto else [])
    message["List-Unsubscribe"] = ", ".join(unsubscribe)
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["X-Delivery-Id"] = str(recipient.delivery_id)
    message["X-Release"] = _one_line(rendition.release_slug)
    message.set_content(rendition.text.replace(UNSUBSCRIBE_MARK, recipient.unsubscribe_url), charset="utf-8")
    message.add_alternative(
        rendition.html.replace(UNSUBSCRIBE_MARK, escape(recipient.unsubscribe_url)),
        subtype="html",
        charset="utf-8",
    )
    return message
