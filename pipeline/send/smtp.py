"""Any SMTP relay: one connection reused across messages, STARTTLS or implicit TLS, login, a message rate.

Each message goes MAIL FROM → RCPT TO → DATA on the open connection. What a failure means depends on when
it happens, so the DATA step is driven by hand:
- before the end of the message data was sent (refused connection, drop during MAIL/RCPT/DATA): the relay
  cannot have accepted it; reconnect once and try again, else hand it back to be retried later;
- after the final "." went out but before the relay answered: in doubt, never resent automatically;
- a 5xx answer: permanent for that recipient (failed, with the relay's words); a 4xx answer: try later.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from pipeline.config import SmtpSettings
from pipeline.errors import PermanentSendError, TransientSendError
from pipeline.message import MessageTemplate
from pipeline.models import Outcome, Recipient, SendResult
from pipeline.render import EmailRendition
from pipeline.send.base import RateGate

_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Reply(Exception):
    """A relay answered a step with an error code."""

    def __init__(self, step: str, code: int, text: bytes) -> None:
        self.step, self.code = step, code
        super().__init__(f"{step}: {code} {text.decode('utf-8', 'replace')}")


class _Refused(Exception):
    """This one message cannot be sent through this relay (e.g. an internationalised address without SMTPUTF8)."""


class _Dropped(Exception):
    """The connection failed before the relay could have accepted the message."""


class _Unanswered(Exception):
    """The message went out whole but no answer came back."""


class SmtpTransport:
    name = "smtp"
    idempotent = False

    def __init__(
        self,
        settings: SmtpSettings,
        password: str | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        tls_context: ssl.SSLContext | None = None,
        gate: RateGate | None = None,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.password = settings, password
        self.clock, self.sleep, self.monotonic = clock, sleep, monotonic
        # With a gate (the database's, from Runtime), smtp.rate_per_second holds for all workers together.
        self.gate, self.wallclock = gate, wallclock
        self.tls_context = tls_context or ssl.create_default_context()
        # Each sending lane (thread) keeps its own connection; `smtp.connections` lanes send side by side.
        self.concurrency = settings.connections
        self._local = threading.local()
        self._open_connections: set[smtplib.SMTP] = set()
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self.trouble: str | None = None  # why the relay could not be used, last time it could not
        self.connections = 0  # opened so far, for tests and benchmarks

    # --- connection -----------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.tls_context)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise PermanentSendError(
                        f"the relay {s.host}:{s.port} does not offer STARTTLS; set smtp.security to 'ssl' or 'none'"
                    )
                conn.starttls(context=self.tls_context)
                conn.ehlo()
            if s.username:
                conn.login(s.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(conn)
            raise PermanentSendError(f"the relay {s.host}:{s.port} refused the login: {_said(exc)}") from exc
        except ssl.SSLCertVerificationError as exc:  # a configuration problem, not a passing one
            _close_quietly(conn)
            raise PermanentSendError(
                f"the relay {s.host}:{s.port} presented a certificate that cannot be trusted ({exc.verify_message}); "
                "set smtp.ca_file if it uses a private CA"
            ) from exc
        except OSError as exc:  # every SMTPException is an OSError
            _close_quietly(conn)
            raise TransientSendError(f"cannot reach the relay {s.host}:{s.port}: {exc}") from exc
        except PermanentSendError:
            _close_quietly(conn)
            raise
        with self._lock:
            self.connections += 1
            self._open_connections.add(conn)
        return conn

    def _open(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "connection", None)
        if conn is None:
            conn = self._local.connection = self._connect()
        return conn

    def _drop(self) -> None:
        conn, self._local.connection = getattr(self._local, "connection", None), None
        if conn is not None:
            with self._lock:
                self._open_connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def max_batch(self, lease: timedelta) -> int:
        """With a message rate, a batch must fit in half a lease (else another worker would take it over);
        the lanes share the rate, so each lane's batch takes `connections` times longer."""
        rate = self.settings.rate_per_second
        if rate <= 0:
            return 1000
        return max(1, min(1000, int(rate * lease.total_seconds() / 2 / self.settings.connections)))

    def close(self) -> None:
        """Say goodbye on every connection the lanes opened."""
        with self._lock:
            connections, self._open_connections = self._open_connections, set()
        for conn in connections:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
        self._local = threading.local()

    # --- sending -------------------------------------------------------------------------------------

    def _pace(self) -> None:
        """Hold to `smtp.rate_per_second` over all lanes together (and, with a gate, over all workers): each
        message takes the next free slot."""
        rate = self.settings.rate_per_second
        if rate <= 0:
            return
        if self.gate is not None:
            self._pace_shared(rate, self.gate)
            return
        with self._lock:
            now = self.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / rate
        if slot > now:
            self.sleep(slot - now)

    def _pace_shared(self, rate: float, gate: RateGate) -> None:
        """Slots from the gate, a block at a time per lane (at most a second's worth, so an unused tail at
        the end of a batch costs little), one database round trip per block rather than per message."""
        now = self.wallclock()
        block: list[float] | None = getattr(self._local, "block", None)
        if block and block[0] + (block[2] - block[1]) / rate < now - 1.0 / rate:
            block = None  # its slots have passed unused (the lane paused between batches): take fresh ones
        if not block or block[1] <= 0:
            size = float(max(1, min(int(rate), 20)))
            block = self._local.block = [gate.reserve(int(size), 1.0 / rate), size, size]
        start, left, size = block
        slot = start + (size - left) / rate
        block[1] = left - 1
        wait = slot - now
        if wait > 0:
            self.sleep(wait)

    def _transmit(self, conn: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> str:
        """One message on an open connection; returns the relay's queue id text. Raises _Reply, _Dropped,
        _Unanswered."""
        options = ["SMTPUTF8"] if not (sender.isascii() and recipient.isascii()) else []
        if options and not conn.has_extn("smtputf8"):
            raise _Refused("the relay does not accept internationalised addresses (no SMTPUTF8)")
        try:
            code, text = conn.mail(sender, options)
            if code != 250:
                raise _Reply("MAIL FROM", code, text)
            code, text = conn.rcpt(recipient)
            if code not in (250, 251):
                raise _Reply("RCPT TO", code, text)
            code, text = conn.docmd("DATA")
            if code != 354:
                raise _Reply("DATA", code, text)
            body = _LEADING_DOT.sub(b"..", message)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            conn.send(body + b".\r\n")
        except (smtplib.SMTPNotSupportedError, UnicodeEncodeError) as exc:  # before anything was accepted
            raise _Refused(str(exc)) from exc
        except OSError as exc:  # includes SMTPServerDisconnected (every SMTPException is an OSError)
            raise _Dropped(str(exc) or type(exc).__name__) from exc
        try:
            code, text = conn.getreply()
        except OSError as exc:
            raise _Unanswered(str(exc) or type(exc).__name__) from exc
        if code != 250:
            raise _Reply("end of DATA", code, text)
        return text.decode("utf-8", "replace")

    def send(self, rendition: EmailRendition, recipients: Sequence[Recipient]) -> list[SendResult]:
        template = MessageTemplate(rendition)
        date = format_datetime(self.clock())
        results: list[SendResult] = []
        for index, recipient in enumerate(recipients):
            message = template.render_dated(recipient, date)
            outcome = self._deliver(rendition.from_address, recipient, message)
            if outcome is None:  # the relay is unreachable: this and the rest go back for later
                if not results:
                    raise TransientSendError(self.trouble or "the relay is unreachable")
                results += [SendResult(r.delivery_id, Outcome.RETRY) for r in recipients[index:]]
                break
            results.append(outcome)
        return results

    def _deliver(self, sender: str, recipient: Recipient, message: bytes) -> SendResult | None:
        """Send one message, reconnecting once if the connection had dropped; None if the relay is gone."""
        for attempt in (1, 2):
            self._pace()
            try:
                conn = self._open()
            except TransientSendError as exc:
                self.trouble = str(exc)
                return None
            except PermanentSendError as exc:  # login refused, no STARTTLS: this one fails, with the reason
                return SendResult(recipient.delivery_id, Outcome.FAILED, error=str(exc))
            try:
                queued = self._transmit(conn, sender, recipient.address, message)
            except _Dropped as exc:
                self.trouble = f"the connection to {self.settings.host}:{self.settings.port} dropped: {exc}"
                self._drop()
                if attempt == 2:
                    return None
                continue
            except _Unanswered as exc:
                self._drop()
                reason = f"the relay did not answer after the message was sent ({exc})"
                return SendResult(recipient.delivery_id, Outcome.IN_DOUBT, error=reason)
            except _Refused as exc:
                self._reset(conn)
                return SendResult(recipient.delivery_id, Outcome.FAILED, error=str(exc))
            except _Reply as exc:
                self._reset(conn)
                if exc.code == 421:  # the relay is closing this connection; try again on a new one
                    self._drop()
                    if attempt == 1:
                        continue
                if exc.step == "MAIL FROM" and exc.code < 500:  # the relay is throttling us, not refusing them
                    self.trouble = str(exc)
                    return None
                outcome = Outcome.FAILED if 500 <= exc.code < 600 else Outcome.RETRY
                return SendResult(recipient.delivery_id, outcome, error=str(exc))
            return SendResult(recipient.delivery_id, Outcome.ACCEPTED, provider_id=queued[:200] or None)
        return None

    def _reset(self, conn: smtplib.SMTP) -> None:
        """Abandon the current transaction so the connection can carry the next message."""
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()


def _close_quietly(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _said(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {text}"
