"""Wiring: settings → store, renderer, unsubscribe links, transport, dispatcher. Used by the CLI and web app."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.render import Renderer
from pipeline.send import Dispatcher
from pipeline.send.base import Transport
from pipeline.send.outbox import OutboxTransport
from pipeline.send.sendgrid import SendGridTransport
from pipeline.send.smtp import SmtpTransport
from pipeline.store import Pool, Store
from pipeline.unsubscribe import UnsubscribeLinks


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoreRateGate:
    """Send slots kept in the database, so a message rate holds for every worker sharing it."""

    store: Store
    name: str

    def reserve(self, count: int, interval: float) -> float:
        # The database says how long from now (in its own time); this machine's clock only adds the delay.
        return time.time() + self.store.reserve_slots(self.name, count, interval)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    renderer: Renderer
    links: UnsubscribeLinks
    clock: Callable[[], datetime] = system_clock

    @classmethod
    def open(cls, settings: Settings, clock: Callable[[], datetime] = system_clock) -> Runtime:
        pool = settings.database_pool
        store = Store.open(settings.database_url, Pool(pool.size, pool.max_overflow, pool.reconnect_for))
        links = UnsubscribeLinks(settings.site.base_url, settings.unsubscribe_secrets(), settings.unsubscribe.mailto)
        return cls(settings, store, Renderer(settings), links, clock)

    def transport(self) -> Transport:
        kind = self.settings.transport
        if kind == "sendgrid":
            return SendGridTransport(self.settings.sendgrid, self.settings.sendgrid_api_key())
        if kind == "smtp":
            smtp = self.settings.smtp
            cafile = self.settings.resolve(smtp.ca_file) if smtp.ca_file else None
            try:
                context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load {cafile}: {exc}", key="smtp.ca_file") from exc
            password = self.settings.smtp_password()
            return SmtpTransport(
                smtp, password, clock=self.clock, tls_context=context, gate=StoreRateGate(self.store, "smtp")
            )
        return OutboxTransport(self.settings.outbox_dir, self.clock)

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.settings, self.store, self.transport(), self.renderer, self.links, clock=self.clock)

    def close(self) -> None:
        self.store.close()
