"""A local SMTP relay on aiosmtpd that records what it accepts, for tests and benchmarks.

    python -m tools.fake_smtp --port 8025
    # then: transport: smtp, smtp.host: 127.0.0.1, smtp.port: 8025, smtp.security: none

It can refuse chosen recipients (550), ask for a login, speak STARTTLS or implicit TLS with a throwaway
certificate, and drop connections on purpose: after a message was accepted but before answering, or while
a message is being announced (before it could be accepted).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import random
import socket
import ssl
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class SmtpFaults:
    """Probabilities (0–1) per message, drawn from `seed`."""

    drop_after_accept: float = 0.0  # the message is kept, the connection closed before "250"
    drop_before_accept: float = 0.0  # the connection is closed at RCPT TO; nothing kept
    seed: int | None = None


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_to: str
    data: bytes

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def self_signed(host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate and key for `host`, written to a temp folder; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="fake-smtp-"))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _Handler:
    def __init__(self, relay: FakeSmtp) -> None:
        self.relay = relay

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self.relay._lock:
            self.relay._sessions.add(id(session))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        relay = self.relay
        if relay._draw() < relay.faults.drop_before_accept:
            relay._count("dropped before accept")
            _abort(server)
            return "421 4.3.0 going away"
        refusal = relay.reject.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        relay = self.relay
        content = envelope.original_content or b""
        with relay._lock:
            relay.tally.update(rcpt.lower() for rcpt in envelope.rcpt_tos)
            if relay.keep_messages:
                relay.received.extend(Received(str(envelope.mail_from), r, content) for r in envelope.rcpt_tos)
        if relay._draw() < relay.faults.drop_after_accept:
            relay._count("dropped after accept")
            _abort(server)
        return f"250 2.0.0 queued as {relay._next_id()}"


def _abort(server: SMTP) -> None:
    """Cut the connection at once, without a goodbye (what a crashed relay or a broken network does)."""
    transport = server.transport
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()


class FakeSmtp:
    """An aiosmtpd relay on a background thread: `start()`, `port`, `received`, `stop()`."""

    def __init__(
        self,
        *,
        reject: dict[str, str] | None = None,
        faults: SmtpFaults | None = None,
        login: tuple[str, str] | None = None,
        tls: str = "none",  # "none", "starttls" or "ssl"
        host: str = "127.0.0.1",
        port: int | None = None,
        keep_messages: bool = True,
        smtputf8: bool = True,  # False: a relay that cannot take internationalised addresses
    ) -> None:
        self.keep_messages = keep_messages
        self.tally: Counter[str] = Counter()  # accepted messages per recipient
        self.reject = {k.lower(): v for k, v in (reject or {}).items()}
        self.faults = faults or SmtpFaults()
        self.login = login
        self.host, self.port = host, port or free_port(host)
        self.received: list[Received] = []
        self.events: Counter[str] = Counter()
        self._sessions: set[int] = set()
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._ids = 0
        self.cert: Path | None = None
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if tls != "none":
            self.cert, key = self_signed(host)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, key)
            kwargs["tls_context" if tls == "starttls" else "ssl_context"] = context
            if tls == "starttls":
                kwargs["require_starttls"] = True
        if login:
            # aiosmtpd only counts STARTTLS as TLS for AUTH; with implicit TLS the whole connection already is.
            kwargs |= {"authenticator": self._authenticate, "auth_require_tls": tls == "starttls"}
        self._controller = Controller(_Handler(self), hostname=host, port=self.port, **kwargs)
        self.tls = tls

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this relay's throwaway certificate."""
        context = ssl.create_default_context()
        if self.cert is not None:
            context.load_verify_locations(self.cert)
        return context

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.login is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.login
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    def _count(self, event: str) -> None:
        with self._lock:
            self.events[event] += 1

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"Q{self._ids:08d}"

    @property
    def connections(self) -> int:
        """Connections that carried at least one message."""
        with self._lock:
            return len(self._sessions)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.tally)

    def start(self) -> FakeSmtp:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FakeSmtp:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SMTP relay that counts what it accepts.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args()
    relay = FakeSmtp(host=args.host, port=args.port, keep_messages=False).start()
    print(f"smtp://{relay.host}:{relay.port}", flush=True)
    print("type 'count' for the number of messages accepted so far; end of input stops", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                print(sum(relay.counts().values()), flush=True)
    finally:
        relay.stop()


if __name__ == "__main__":
    main()
