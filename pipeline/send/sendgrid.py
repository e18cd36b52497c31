"""SendGrid v3 mail send through the official `sendgrid` client.

One request carries a batch (at most 1,000 personalizations, one recipient each, so nobody sees anybody
else). The content is the rendition rendered once for the distribution; each personalization carries that
recipient's values as substitutions, our delivery id in `custom_args`, and its own List-Unsubscribe headers.

How a request ends decides what the dispatcher may do next (see send/base.py):
- 2xx: every recipient accepted; `X-Message-Id` is kept as the provider id.
- 429: rate limited; TransientSendError with the wait until `X-RateLimit-Reset`.
- 5xx, or a failure to connect or to send the request: TransientSendError (nothing was accepted).
- other 4xx (400, 401, 403, 413 …): PermanentSendError with SendGrid's own messages.
- the request went out but no answer came back (timeout, connection dropped): every recipient in doubt.
  SendGrid has no idempotency key, so resending could mail them twice.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
from collections.abc import Callable, Sequence
from datetime import timedelta
from html import escape
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from pipeline.config import SendgridSettings
from pipeline.errors import PermanentSendError, TransientSendError
from pipeline.models import Outcome, Recipient, SendResult
from pipeline.render import NAME_MARK, UNSUBSCRIBE_MARK, EmailRendition

# Substitution keys. Unsubscribe links need no HTML escaping (site.base_url is a plain address and tokens
# are URL-safe), so one key serves both parts; a name gets an HTML-escaped copy of its own.
_URL = "-unsubscribe_url-"
_NAME_TEXT, _NAME_HTML = "-recipient_name-", "-recipient_name_html-"
MAX_PERSONALIZATIONS = 1000
MAX_CATEGORY = 255


class SendGridTransport:
    name = "sendgrid"
    idempotent = False

    def __init__(
        self,
        settings: SendgridSettings,
        api_key: str,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.wall_clock = settings, wall_clock
        self.concurrency = settings.concurrency  # each request is independent; the client holds no connection
        self.client = SendGridAPIClient(api_key, host=settings.host.rstrip("/"))
        self._prepared: tuple[EmailRendition, dict[str, Any]] | None = None
        self._greets = False
        self._lock = threading.Lock()
        self.requests = 0  # requests made, for benchmarks and reports

    def message_body(self, rendition: EmailRendition) -> dict[str, Any]:
        """The parts of the request every batch of this rendition shares (built once per rendition)."""
        if self._prepared is not None and self._prepared[0] is rendition:
            return self._prepared[1]
        text = rendition.text.replace(UNSUBSCRIBE_MARK, _URL).replace(NAME_MARK, _NAME_TEXT)
        html = rendition.html.replace(UNSUBSCRIBE_MARK, _URL).replace(NAME_MARK, _NAME_HTML)
        self._greets = NAME_MARK in rendition.text or NAME_MARK in rendition.html
        sender: dict[str, str] = {"email": rendition.from_address}
        if rendition.from_name:
            sender["name"] = rendition.from_name
        body: dict[str, Any] = {
            "from": sender,
            "subject": rendition.subject,
            # text/plain must come before text/html.
            "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
            # Categories name the release (at most 10, each at most 255 characters); never per recipient.
            "categories": list(dict.fromkeys(c[:MAX_CATEGORY] for c in ("press-release", rendition.release_slug)))[:10],
            # Our own List-Unsubscribe headers go with each personalization; SendGrid's would duplicate them.
            "tracking_settings": {"subscription_tracking": {"enable": False}},
        }
        if rendition.reply_to:
            body["reply_to"] = {"email": rendition.reply_to}
        if self.settings.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        self._prepared = (rendition, body)
        return body

    def personalization(self, rendition: EmailRendition, recipient: Recipient) -> dict[str, Any]:
        to = {"email": recipient.address}
        name = recipient.name or ""
        if name:
            # SendGrid mishandles a comma or semicolon in a display name (it splits the address list).
            to["name"] = " ".join(name.replace(",", " ").replace(";", " ").split())
        unsubscribe = [f"<{recipient.unsubscribe_url}>"]
        if recipient.unsubscribe_mailto:
            unsubscribe.append(f"<{recipient.unsubscribe_mailto}>")
        substitutions = {_URL: recipient.unsubscribe_url}
        if self._greets:  # only when the templates use the name: keeps each request small
            substitutions |= {_NAME_TEXT: name, _NAME_HTML: escape(name)}
        return {
            "to": [to],
            "substitutions": substitutions,
            "custom_args": {"delivery_id": str(recipient.delivery_id), "release": rendition.release_slug[:100]},
            "headers": {
                "List-Unsubscribe": ", ".join(unsubscribe),
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Delivery-Id": str(recipient.delivery_id),
            },
        }

    def send(self, rendition: EmailRendition, recipients: Sequence[Recipient]) -> list[SendResult]:
        if len(recipients) > MAX_PERSONALIZATIONS:
            raise PermanentSendError(f"a SendGrid request takes at most {MAX_PERSONALIZATIONS} recipients")
        body = dict(self.message_body(rendition))
        body["personalizations"] = [self.personalization(rendition, r) for r in recipients]
        with self._lock:
            self.requests += 1
        try:
            response = self.client.client.mail.send.post(request_body=body, timeout=self.settings.timeout)
        except HTTPError as exc:
            raise self._refusal(exc) from exc
        except urllib.error.URLError as exc:
            # urllib wraps failures while connecting or writing the request: SendGrid cannot have it whole.
            raise TransientSendError(f"SendGrid unreachable at {self.settings.host}: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            # The request went out; the answer never came (timeout, reset, truncated response).
            reason = f"no answer from SendGrid after sending ({type(exc).__name__}: {exc})"
            return [SendResult(r.delivery_id, Outcome.IN_DOUBT, error=reason) for r in recipients]
        message_id = response.headers.get("X-Message-Id") if response.headers else None
        return [SendResult(r.delivery_id, Outcome.ACCEPTED, provider_id=message_id) for r in recipients]

    def _refusal(self, exc: HTTPError) -> TransientSendError | PermanentSendError:
        status = int(exc.status_code)
        detail = _error_text(exc.body) or str(exc.reason)
        if status == 429:
            reset = _header(exc, "X-RateLimit-Reset")
            wait = None
            if reset is not None:
                try:
                    wait = max(0.0, float(reset) - self.wall_clock())
                except ValueError:
                    wait = None
            return TransientSendError(f"SendGrid rate limit: {detail}", retry_after=wait, rate_limited=True)
        if status >= 500:
            return TransientSendError(f"SendGrid {status}: {detail}")
        return PermanentSendError(f"SendGrid refused the request ({status}): {detail}")

    def max_batch(self, lease: timedelta) -> int:
        return MAX_PERSONALIZATIONS

    def close(self) -> None:
        return None  # the client opens one connection per request; nothing stays open


def _header(exc: HTTPError, name: str) -> str | None:
    headers = getattr(exc, "headers", None)
    value = headers.get(name) if headers is not None else None
    return str(value) if value is not None else None


def _error_text(body: bytes | str | None) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one line; a 413 may come as an HTML page."""
    if not body:
        return ""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        errors = json.loads(raw).get("errors", [])
        parts = [f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message")) for e in errors]
        return "; ".join(parts)[:1000]
    except (ValueError, AttributeError):
        return " ".join(raw.split())[:200]
