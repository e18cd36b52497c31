"""The database: SQLAlchemy tables, migrations, and the only code in the project that runs SQL.

SQLite (WAL, every transaction BEGIN IMMEDIATE so concurrent writers queue instead of failing) is the
embedded default; PostgreSQL works through the same statements (claims use FOR UPDATE SKIP LOCKED there).
The delivery ledger is unique on (release, channel, address): that constraint is what makes "never twice"
hold across overlapping audiences, repeated distributions, crashes and restarts.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tenacity
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from pipeline.errors import NotFoundError, ScheduleError, StoreError
from pipeline.models import (
    DIGEST_CHANNEL,
    OPEN_STATUSES,
    ConsentBasis,
    Contact,
    DeliveryStatus,
    Distribution,
    DistributionStatus,
    Outcome,
    Release,
    SendResult,
)
from pipeline.tracking import EVENT_STATUS, STATUS_RANK, EventKind, EventsReport, TrackingEvent


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC so SQLite and PostgreSQL agree."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = sa.MetaData()

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(120), nullable=False, unique=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("source", sa.Text),
    sa.Column("headline", sa.Text, nullable=False),
    sa.Column("language", sa.String(8)),
    sa.Column("release_date", sa.Date),
    sa.Column("embargo", UTCDateTime),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("published_at", UTCDateTime),
    sa.Column("translation_of", sa.String(120), index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

distributions = sa.Table(
    "distributions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False, index=True),
    sa.Column("audiences", sa.JSON, nullable=False),
    sa.Column("channel", sa.String(20), nullable=False, server_default="email"),
    sa.Column("due_at", UTCDateTime, nullable=False, index=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("origin", sa.String(200), unique=True),  # set for automatic queueing, so re-runs add nothing
    sa.Column("note", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("distribution_id", sa.Integer, sa.ForeignKey("distributions.id"), nullable=False),
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("provider_id", sa.String(200)),
    sa.Column("error", sa.Text),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("release_id", "channel", "address", name="uq_delivery_once"),
    sa.Index("ix_deliveries_distribution", "distribution_id"),
    # Claiming looks only for pending rows of one distribution, in id order (migration 0003).
    sa.Index(
        "ix_deliveries_pending",
        "distribution_id",
        "id",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.Text),
    sa.Column("outlet", sa.Text),
    sa.Column("beats", sa.JSON, nullable=False),
    sa.Column("regions", sa.JSON, nullable=False),
    sa.Column("language", sa.String(8)),
    sa.Column("consent_basis", sa.String(40)),
    sa.Column("consent_source", sa.Text),
    sa.Column("consent_date", sa.Date),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("role", sa.Text),
    sa.Column("tags", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("embargo_trusted", sa.Boolean, nullable=False, server_default=sa.false()),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("address_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("address", sa.String(320)),  # erased (None) when a person asks to be forgotten
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(20), nullable=False),
    sa.Column("event_key", sa.String(200), nullable=False),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id")),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("address_hash", sa.String(64), nullable=False),  # not the address: events outlive erasure
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("raw", sa.JSON, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("provider", "event_key", name="uq_event_once"),
    sa.Index("ix_events_delivery", "delivery_id"),
    sa.Index("ix_events_address_kind", "address_hash", "kind"),
)

category_optouts = sa.Table(
    "category_optouts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("address_hash", sa.String(64), nullable=False),
    sa.Column("category", sa.String(200), nullable=False),  # casefolded
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("address_hash", "category", name="uq_category_optout"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

digests = sa.Table(
    "digests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Column("period_end", UTCDateTime, nullable=False),
    sa.Column("release_ids", sa.JSON, nullable=False),  # the releases it lists, oldest first
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id")),  # its own email; None: skipped
    sa.Column("distribution_id", sa.Integer, sa.ForeignKey("distributions.id")),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("name", "period_end", name="uq_digest_once"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("user", sa.String(100), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id")),
    sa.Column("distribution_id", sa.Integer, sa.ForeignKey("distributions.id")),
    sa.Column("detail", sa.Text),
    sa.Index("ix_audit_distribution", "distribution_id"),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),  # host:pid, as claims and leases name it
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)

rate_slots = sa.Table(
    "rate_slots",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),  # a provider, e.g. smtp
    sa.Column("next_free", sa.Float, nullable=False),  # seconds since the epoch: the next send slot nobody holds
)

feed_sources = sa.Table(
    "feed_sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("url", sa.String(1000), nullable=False, unique=True),
    sa.Column("title", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("fetched_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

feed_entries = sa.Table(
    "feed_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("feed_sources.id"), nullable=False),
    sa.Column("entry_key", sa.String(500), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id")),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("source_id", "entry_key", name="uq_feed_entry"),
)

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).parent / "migrations"


class _json_items(GenericFunction[Any]):
    """The items of a JSON array as rows of one column, `value`: json_each on SQLite."""

    name = "json_each"
    inherit_cache = True


@compiles(_json_items, "postgresql")
def _json_items_postgresql(element: _json_items, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_array_elements_text(CAST({compiler.process(element.clauses, **kw)} AS JSON))"


def among(column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """`column IN values` with the whole list bound as one JSON value instead of one parameter per item: a
    batch of 1,000 ids costs one parameter, not a thousand, to bind (and SQLite's limit never bites)."""
    items = _json_items(sa.literal(json.dumps(list(values)))).table_valued("value")
    return column.in_(sa.select(sa.cast(items.c.value, column.type)))


def _insert_ignoring_duplicates(engine: Engine, table: sa.Table, keys: list[str]) -> sa.Insert:
    """INSERT … ON CONFLICT DO NOTHING on the unique `keys`: two posts of the same events at the same moment
    both succeed, and each event is stored once."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)


def _suppress(db: Connection, address: str | None, reason: str, now: datetime, digest: str | None = None) -> bool:
    digest = digest or address_hash(address or "")
    if db.execute(sa.select(suppressions.c.id).where(suppressions.c.address_hash == digest)).first():
        return False
    db.execute(suppressions.insert().values(address_hash=digest, address=address, reason=reason[:40], created_at=now))
    return True


def _lock_distribution(db: Connection, distribution_id: int) -> None:
    """Hold a distribution's row until the transaction ends (PostgreSQL; SQLite's write transactions are
    serialised anyway), so deciding it is finished and reopening its deliveries never interleave."""
    db.execute(sa.select(distributions.c.id).where(distributions.c.id == distribution_id).with_for_update())


def db_now(db: Connection) -> datetime:
    """The database server's clock (PostgreSQL), so workers on machines whose clocks disagree share one time;
    this machine's for SQLite, whose users all run here."""
    if db.dialect.name == "postgresql":
        value: datetime = db.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
        return value.astimezone(UTC)
    return utcnow()


def _ledger_written(db: Connection, distribution_id: int) -> bool:
    """Whether a distribution's ledger rows exist. Holds the distribution's row first, so two workers
    snapshotting at once take turns (PostgreSQL; SQLite transactions are serialised anyway) and the second
    finds the ledger written."""
    db.execute(sa.select(distributions.c.id).where(distributions.c.id == distribution_id).with_for_update()).first()
    found = db.execute(
        sa.select(deliveries.c.id).where(deliveries.c.distribution_id == distribution_id).limit(1)
    ).first()
    return found is not None


def address_hash(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StoredRelease:
    id: int
    slug: str
    version: int
    release: Release
    published_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DigestIssue:
    """One occurrence of a recurring digest: the releases published in (period_start, period_end]."""

    name: str
    period_start: datetime
    period_end: datetime
    items: tuple[StoredRelease, ...]


@dataclass(frozen=True, slots=True)
class StoredUser:
    name: str
    role: str
    password_hash: str
    email: str | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    user: str
    action: str
    release_id: int | None
    distribution_id: int | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class ReleaseSummary:
    """A release as the desk lists it: what it is, and how far it has gone."""

    id: int
    slug: str
    title: str
    embargo: datetime | None
    published_at: datetime | None
    updated_at: datetime
    distributions: int
    problems: int


@dataclass(frozen=True, slots=True)
class WorkerState:
    """A `pipeline run` process as `pipeline workers` shows it."""

    name: str
    role: str
    started_at: datetime
    heartbeat_at: datetime
    holding: dict[int, int]  # distribution id → deliveries it has claimed or is sending now
    leases: tuple[str, ...]  # named leases it holds (the scheduler's)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    address: str
    name: str | None
    attempts: int = 1  # claims so far, this one included (rate-limited ones are refunded)
    release_id: int = 0  # which language version goes to this recipient


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True, slots=True)
class Pool:
    """Connection pool sizes per process (PostgreSQL) and how long to keep reconnecting after a drop."""

    size: int = 5
    max_overflow: int = 10
    reconnect_for: timedelta = timedelta(minutes=2)


def create_engine(url: str, pool: Pool = Pool()) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and writer-first transactions; a server database
    gets a sized pool whose connections are checked before use (so those a restart killed are replaced)."""
    try:
        if url.startswith("sqlite"):
            database = sa.engine.make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "begin", _sqlite_begin)
            sa.event.listen(engine, "commit", _committing)
            return engine
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_recycle=1800,
            connect_args={"connect_timeout": 10} if url.startswith("postgresql") else {},
        )
        sa.event.listen(engine, "commit", _committing)
        return engine
    except (sa.exc.ArgumentError, ImportError, OSError) as exc:
        raise StoreError(f"cannot open database {url!r}: {exc}") from exc


_DISCONNECT_STATES = {"57P01", "57P02", "57P03", "25006"}  # shut down, crashed, starting up, read-only (failover)


def _database_gone(exc: BaseException) -> bool:
    """A failure that another try on a fresh connection can cure: the connection dropped, the server is down,
    restarting or starting up, a failover left us on a read-only node, or (SQLite) another writer held the
    lock past the busy timeout. Not a statement timeout, deadlock, full disk or wrong password."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.InternalError):
        return False
    if "sqlite" in type(exc.orig).__module__:
        return "locked" in str(exc.orig).lower()
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:  # no answer from a server at all: refused, reset, timed out while connecting
        return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
    return str(state).startswith("08") or str(state) in _DISCONNECT_STATES


# Store methods that must not simply run again after their COMMIT was sent but its answer never came (the
# first run may have been saved): a second run would misreport what happened or do it twice. They are tried
# again only when the connection failed before COMMIT (nothing was saved); otherwise the error says so.
_NOT_TWICE = {
    "save_release",
    "create_distribution",
    "set_status",
    "release_hold",
    "cancel",
    "resolve_in_doubt",
    "reserve_slots",
    "record_audit",
    "save_user",
    "remove_user",
    "delete_draft",
    "forget",
    "claim",
}
_attempt = threading.local()  # per thread: whether the current attempt got as far as sending COMMIT


def _committing(_connection: Connection) -> None:
    _attempt.committing = True


def _surviving_disconnects(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Store method again (it is one transaction, rolled back when the connection died) until the
    database answers or `Pool.reconnect_for` has passed; a method in _NOT_TWICE only when its COMMIT was
    never sent."""
    once_only = method.__name__ in _NOT_TWICE

    def worth_another_try(exc: BaseException) -> bool:
        return _database_gone(exc) and not (once_only and getattr(_attempt, "committing", False))

    @functools.wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            _attempt.committing = False
            return method(self, *args, **kwargs)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(worth_another_try),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5),
            stop=tenacity.stop_after_delay(max(0.0, self.pool.reconnect_for.total_seconds() - 5)),
            before_sleep=lambda state: log.warning(
                "database unavailable (%s); trying %s again",
                state.outcome.exception() if state.outcome else "?",
                method.__name__,
            ),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if once_only and getattr(_attempt, "committing", False) and _database_gone(exc):
                raise StoreError(
                    f"the database connection broke while saving ({method.__name__}); it may or may not have "
                    "been saved: check, then repeat if needed"
                ) from exc
            raise StoreError(f"the database did not answer: {exc.orig}") from exc

    return call


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


MIGRATION_LOCK = 7_215_402_611  # a PostgreSQL advisory lock key: one process migrates, the others wait


def schema_revisions(engine: Engine) -> tuple[str | None, str, bool]:
    """(the database's schema revision, the newest this code knows, whether this code knows the former).
    Raises StoreError when the database cannot be reached."""
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            script = ScriptDirectory.from_config(_alembic_config(connection))
            head = script.get_current_head()
            known = current is None or current in {rev.revision for rev in script.walk_revisions()}
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise StoreError(f"cannot reach the database: {exc.orig}") from exc
    assert head is not None
    return current, head, known


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; refuse a database made by newer code. Several processes
    starting together on PostgreSQL take turns (an advisory lock): the first migrates, the rest find it done.
    Returns (revision before, revision after)."""
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = _alembic_config(connection)
            script = ScriptDirectory.from_config(config)
            current = MigrationContext.configure(connection).get_current_revision()
            known = {rev.revision for rev in script.walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(
                    f"the database is at schema revision {current}, newer than this version of pipeline "
                    "knows; upgrade pipeline before using this database"
                )
            head = script.get_current_head()
            assert head is not None
            if current != head:
                command.upgrade(config, "head")
            return current, head
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot open database: {exc.orig}") from exc


class Store:
    """Typed operations over the database. Every method is one transaction."""

    def __init__(self, engine: Engine, pool: Pool = Pool()) -> None:
        self.engine = engine
        self.pool = pool

    @classmethod
    def open(cls, url: str, pool: Pool = Pool()) -> Store:
        engine = create_engine(url, pool)
        migrate(engine)
        return cls(engine, pool)

    def close(self) -> None:
        self.engine.dispose()

    # --- releases --------------------------------------------------------------------------------------

    def save_release(self, release: Release, now: datetime | None = None) -> tuple[int, str]:
        """Insert or update by slug, or correct the release named by `release.corrects`.
        Returns (id, "new" | "updated" | "unchanged" | "corrected"). Raises NotFoundError for a correction of
        an unknown slug."""
        now = now or utcnow()
        digest = release.content_hash
        values = _release_values(release, now)
        with self.engine.begin() as db:
            if release.corrects:
                return self._apply_correction(db, release, values)
            row = db.execute(
                sa.select(releases.c.id, releases.c.content_hash, releases.c.version, releases.c.data).where(
                    releases.c.slug == release.slug
                )
            ).first()
            if row is not None and row.data.get("corrects"):
                return int(row.id), "unchanged"  # corrected since: only another correction changes it now
            if row is None:
                new_id = db.execute(
                    releases.insert().values(slug=release.slug, created_at=now, **values).returning(releases.c.id)
                ).scalar_one()
                return int(new_id), "new"
            if row.content_hash == digest:
                return int(row.id), "unchanged"
            db.execute(releases.update().where(releases.c.id == row.id).values(version=row.version + 1, **values))
            return int(row.id), "updated"

    def _apply_correction(self, db: Connection, release: Release, values: dict[str, Any]) -> tuple[int, str]:
        """A correction replaces the content of the release it names, keeping that release's slug (so its
        page, feed guid and deliveries stay the same) and its publication time."""
        row = db.execute(
            sa.select(releases.c.id, releases.c.content_hash, releases.c.version).where(
                releases.c.slug == release.corrects
            )
        ).first()
        if row is None:
            raise NotFoundError(
                f"{release.source or 'the document'} corrects {release.corrects!r}, but no release has that slug "
                "(see `pipeline distributions` or the newsroom URLs for slugs)"
            )
        if row.content_hash == values["content_hash"]:
            return int(row.id), "unchanged"
        db.execute(releases.update().where(releases.c.id == row.id).values(version=row.version + 1, **values))
        return int(row.id), "corrected"

    def _stored(self, row: sa.Row[Any]) -> StoredRelease:
        return StoredRelease(
            row.id, row.slug, row.version, Release.from_record(row.data), row.published_at, row.updated_at
        )

    def release(self, release_id: int) -> StoredRelease:
        with self.engine.begin() as db:
            row = db.execute(sa.select(releases).where(releases.c.id == release_id)).first()
        if row is None:
            raise NotFoundError(f"no release with id {release_id}")
        return self._stored(row)

    def published_releases(self, now: datetime, limit: int | None = None) -> list[StoredRelease]:
        """Releases made public at or before `now`, newest first."""
        query = (
            sa.select(releases)
            .where(releases.c.published_at.is_not(None), releases.c.published_at <= now)
            .order_by(releases.c.published_at.desc(), releases.c.id.desc())
        )
        if limit:
            query = query.limit(limit)
        with self.engine.begin() as db:
            return [self._stored(row) for row in db.execute(query)]

    def versions(self, release_id: int) -> dict[str, int]:
        """The language versions of a release, by language: itself, and every stored release that names it
        in `translation_of`. A version without a language is not listed (it cannot be matched to a reader)."""
        with self.engine.begin() as db:
            primary = db.execute(
                sa.select(releases.c.slug, releases.c.language).where(releases.c.id == release_id)
            ).one()
            rows = db.execute(
                sa.select(releases.c.id, releases.c.language)
                .where(releases.c.translation_of == primary.slug, releases.c.language.is_not(None))
                .order_by(releases.c.id)
            ).all()
        found = {str(r.language): int(r.id) for r in rows}
        if primary.language:
            found[str(primary.language)] = release_id  # the original wins over a translation in its own language
        return found

    def mark_published(self, release_id: int, when: datetime) -> bool:
        """Record the moment a release became public (first time only). True if this call set it."""
        with self.engine.begin() as db:
            result = db.execute(
                releases.update()
                .where(releases.c.id == release_id, releases.c.published_at.is_(None))
                .values(published_at=when)
            )
            return bool(result.rowcount)

    def published_between(self, start: datetime, end: datetime) -> list[StoredRelease]:
        """Releases (originals, not their translations) made public in (start, end], oldest first."""
        query = (
            sa.select(releases)
            .where(
                releases.c.published_at > start,
                releases.c.published_at <= end,
                releases.c.translation_of.is_(None),
            )
            .order_by(releases.c.published_at, releases.c.id)
        )
        with self.engine.begin() as db:
            return [self._stored(row) for row in db.execute(query)]

    def awaiting_embargo(self, channels: Sequence[str]) -> dict[int, datetime]:
        """Unpublished releases with an embargo and a distribution on one of `channels` still to go (scheduled or
        sending): they become public when the embargo lifts, even if their email is due later. By release id."""
        query = (
            sa.select(releases.c.id, releases.c.embargo)
            .where(
                releases.c.published_at.is_(None),
                releases.c.embargo.is_not(None),
                sa.exists().where(
                    distributions.c.release_id == releases.c.id,
                    distributions.c.channel.in_(list(channels)),
                    distributions.c.status.in_([DistributionStatus.SCHEDULED.value, DistributionStatus.SENDING.value]),
                ),
            )
            .order_by(releases.c.embargo)
        )
        with self.engine.begin() as db:
            return {int(row.id): row.embargo for row in db.execute(query)}

    # --- digests ---------------------------------------------------------------------------------------

    def last_digest_end(self, name: str) -> datetime | None:
        """The end of the latest period of this digest that was sent or skipped."""
        with self.engine.begin() as db:
            value: datetime | None = db.execute(
                sa.select(sa.func.max(digests.c.period_end)).where(digests.c.name == name)
            ).scalar()
        return value

    def digest_listed(self, name: str) -> set[int]:
        """Every release a digest of this name has listed so far."""
        with self.engine.begin() as db:
            rows = db.execute(sa.select(digests.c.release_ids).where(digests.c.name == name)).scalars()
            return {int(i) for ids in rows for i in ids}

    def record_digest(
        self,
        name: str,
        period: tuple[datetime, datetime],
        release_ids: Sequence[int],
        email: Release | None,
        audiences: Sequence[str],
        timezone: str,
        now: datetime,
        previous_end: datetime | None = None,
    ) -> tuple[bool, int | None]:
        """Record one period of a digest, and with an `email` (there was something new) store it and schedule
        it for the period's end, all in one transaction. Returns (False, None) when this period was already
        recorded (by another process, or before a restart), else (True, the distribution id or None)."""
        start, end = period
        try:
            return self._record_digest(name, (start, end), release_ids, email, audiences, timezone, now, previous_end)
        except sa.exc.IntegrityError as exc:
            text = str(exc.orig)
            if "uq_digest_once" in text or "digests.name, digests.period_end" in text:
                return False, None  # another process recorded the same period between our check and insert
            raise

    def _record_digest(
        self,
        name: str,
        period: tuple[datetime, datetime],
        release_ids: Sequence[int],
        email: Release | None,
        audiences: Sequence[str],
        timezone: str,
        now: datetime,
        previous_end: datetime | None,
    ) -> tuple[bool, int | None]:
        start, end = period
        with self.engine.begin() as db:
            latest = db.execute(sa.select(sa.func.max(digests.c.period_end)).where(digests.c.name == name)).scalar()
            if latest != previous_end:
                return False, None  # another process recorded a period since we looked: ours would overlap it
            release_id = dist_id = None
            if email is not None:
                slug = f"digest-{name}-{end.astimezone(UTC):%Y%m%dt%H%Mz}"
                release_id = db.execute(
                    releases.insert()
                    .values(slug=slug, created_at=now, **_release_values(email, now))
                    .returning(releases.c.id)
                ).scalar_one()
                dist_id = db.execute(
                    distributions.insert()
                    .values(
                        release_id=release_id,
                        audiences=list(audiences),
                        channel=DIGEST_CHANNEL,
                        due_at=end,
                        timezone=timezone,
                        status=DistributionStatus.SCHEDULED.value,
                        origin=f"digest:{name}:{end.isoformat()}",
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(distributions.c.id)
                ).scalar_one()
            db.execute(
                digests.insert().values(
                    name=name,
                    period_start=start,
                    period_end=end,
                    release_ids=list(release_ids),
                    release_id=release_id,
                    distribution_id=dist_id,
                    created_at=now,
                )
            )
        return True, None if dist_id is None else int(dist_id)

    def digest_issue(self, release_id: int) -> DigestIssue | None:
        """The digest whose own email is `release_id`, with the releases it lists (as they are now)."""
        with self.engine.begin() as db:
            row = db.execute(sa.select(digests).where(digests.c.release_id == release_id)).first()
            if row is None:
                return None
            found = {
                r.id: self._stored(r)
                for r in db.execute(sa.select(releases).where(among(releases.c.id, list(row.release_ids))))
            }
        items = tuple(found[i] for i in row.release_ids if i in found)
        return DigestIssue(row.name, row.period_start, row.period_end, items)

    def digest_history(self, name: str, limit: int = 10) -> list[tuple[datetime, int, int | None]]:
        """The latest periods of a digest, newest first: (period end, releases listed, distribution id)."""
        query = (
            sa.select(digests.c.period_end, digests.c.release_ids, digests.c.distribution_id)
            .where(digests.c.name == name)
            .order_by(digests.c.period_end.desc())
            .limit(limit)
        )
        with self.engine.begin() as db:
            return [(r.period_end, len(r.release_ids), r.distribution_id) for r in db.execute(query)]

    # --- distributions ---------------------------------------------------------------------------------

    def create_distribution(
        self,
        release_id: int,
        audiences: Sequence[str],
        due_at: datetime,
        timezone: str,
        channel: str = "email",
        origin: str | None = None,
        now: datetime | None = None,
        held_note: str | None = None,
    ) -> int | None:
        """A new scheduled distribution (held, with `held_note`, when given: it waits for a person); None when
        `origin` was already queued (automatic queueing)."""
        now = now or utcnow()
        with self.engine.begin() as db:
            if (
                origin is not None
                and db.execute(sa.select(distributions.c.id).where(distributions.c.origin == origin)).first()
            ):
                return None
            new_id = db.execute(
                distributions.insert()
                .values(
                    release_id=release_id,
                    audiences=list(audiences),
                    channel=channel,
                    due_at=due_at,
                    timezone=timezone,
                    status=(DistributionStatus.HELD if held_note else DistributionStatus.SCHEDULED).value,
                    note=held_note,
                    origin=origin,
                    created_at=now,
                    updated_at=now,
                )
                .returning(distributions.c.id)
            ).scalar_one()
        return int(new_id)

    def _distribution_query(self) -> sa.Select[Any]:
        return sa.select(distributions, releases.c.slug).join(releases, releases.c.id == distributions.c.release_id)

    def _to_distribution(self, row: sa.Row[Any], counts: dict[str, int]) -> Distribution:
        return Distribution(
            id=row.id,
            release_id=row.release_id,
            release_slug=row.slug,
            audiences=tuple(row.audiences),
            channel=row.channel,
            due_at=row.due_at,
            timezone=row.timezone,
            status=DistributionStatus(row.status),
            created_at=row.created_at,
            note=row.note,
            counts=counts,
        )

    def distribution(self, distribution_id: int) -> Distribution:
        with self.engine.begin() as db:
            row = db.execute(self._distribution_query().where(distributions.c.id == distribution_id)).first()
            if row is None:
                raise NotFoundError(f"no distribution with id {distribution_id}")
            counts = self._counts(db, [distribution_id]).get(distribution_id, {})
        return self._to_distribution(row, counts)

    def status_of(self, distribution_id: int) -> DistributionStatus:
        """Just the status (cheap enough to check before every batch)."""
        with self.engine.begin() as db:
            status = db.execute(
                sa.select(distributions.c.status).where(distributions.c.id == distribution_id)
            ).scalar_one_or_none()
        if status is None:
            raise NotFoundError(f"no distribution with id {distribution_id}")
        return DistributionStatus(status)

    def distributions(
        self,
        statuses: Iterable[DistributionStatus] | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
        release_id: int | None = None,
    ) -> list[Distribution]:
        query = self._distribution_query().order_by(distributions.c.due_at, distributions.c.id)
        if release_id is not None:
            query = query.where(distributions.c.release_id == release_id)
        if statuses is not None:
            query = query.where(distributions.c.status.in_([s.value for s in statuses]))
        if due_before is not None:
            query = query.where(distributions.c.due_at <= due_before)
        if due_after is not None:
            query = query.where(distributions.c.due_at >= due_after)
        with self.engine.begin() as db:
            rows = db.execute(query).all()
            counts = self._counts(db, [r.id for r in rows])
        return [self._to_distribution(row, counts.get(row.id, {})) for row in rows]

    def _counts(self, db: Connection, ids: list[int]) -> dict[int, dict[str, int]]:
        if not ids:
            return {}
        out: dict[int, dict[str, int]] = {}
        query = sa.select(deliveries.c.distribution_id, deliveries.c.status, sa.func.count()).group_by(
            deliveries.c.distribution_id, deliveries.c.status
        )
        if len(ids) < 500:
            query = query.where(deliveries.c.distribution_id.in_(ids))
        for dist_id, status, count in db.execute(query):
            out.setdefault(dist_id, {})[status] = count
        return out

    def finish(self, distribution_id: int) -> DistributionStatus:
        """A sending distribution with nothing left open becomes `sent`, or `partial` when some deliveries
        failed or are in doubt; decided and written in one statement, so a delivery put back in the queue
        at the same moment keeps it sending. Returns the status it has afterwards."""

        def any_in(*statuses: DeliveryStatus) -> sa.Exists:
            return (
                sa.select(deliveries.c.id)
                .where(
                    deliveries.c.distribution_id == distribution_id,
                    deliveries.c.status.in_([s.value for s in statuses]),
                )
                .exists()
            )

        still_open = any_in(*OPEN_STATUSES)
        troubled = any_in(DeliveryStatus.FAILED, DeliveryStatus.IN_DOUBT)
        with self.engine.begin() as db:
            _lock_distribution(db, distribution_id)  # whoever reopens deliveries holds it too: they take turns
            db.execute(
                distributions.update()
                .where(
                    distributions.c.id == distribution_id,
                    distributions.c.status == DistributionStatus.SENDING.value,
                    ~still_open,
                )
                .values(
                    status=sa.case((troubled, DistributionStatus.PARTIAL.value), else_=DistributionStatus.SENT.value),
                    updated_at=utcnow(),
                )
            )
        return self.status_of(distribution_id)

    def set_status(
        self,
        distribution_id: int,
        status: DistributionStatus,
        note: str | None = None,
        only_from: Iterable[DistributionStatus] | None = None,
    ) -> bool:
        """Move a distribution to `status` (only from the given statuses, if any). True if it moved."""
        query = distributions.update().where(distributions.c.id == distribution_id)
        if only_from is not None:
            query = query.where(distributions.c.status.in_([s.value for s in only_from]))
        values: dict[str, Any] = {"status": status.value, "updated_at": utcnow()}
        if note is not None:
            values["note"] = note
        with self.engine.begin() as db:
            return bool(db.execute(query.values(**values)).rowcount)

    def release_hold(
        self, distribution_id: int, now: datetime | None = None, retry_failed: bool = False
    ) -> DistributionStatus | None:
        """A person lets a distribution go on: a paused one resumes sending; a held one (found too late) is
        due now. With `retry_failed`, its failed deliveries are queued again (the cause, such as a revoked
        key, is fixed), which also reopens a `partial` one. Returns the new status, or None if there was
        nothing to release."""
        now = now or utcnow()
        current = self.distribution(distribution_id).status  # raises NotFoundError
        releasable = {DistributionStatus.PAUSED, DistributionStatus.HELD}
        if retry_failed:
            releasable.add(DistributionStatus.PARTIAL)
        if current not in releasable:
            return None
        with self.engine.begin() as db:
            _lock_distribution(db, distribution_id)
            retried = 0
            if retry_failed:
                retried = db.execute(
                    deliveries.update()
                    .where(
                        deliveries.c.distribution_id == distribution_id,
                        deliveries.c.status == DeliveryStatus.FAILED.value,
                    )
                    .values(status=DeliveryStatus.PENDING.value, error=None, attempts=0, updated_at=now)
                ).rowcount
            if current is DistributionStatus.PARTIAL and not retried:
                return None
            target = DistributionStatus.SCHEDULED if current is DistributionStatus.HELD else DistributionStatus.SENDING
            values: dict[str, Any] = {"status": target.value, "note": None, "updated_at": now}
            if current is DistributionStatus.HELD:
                values["due_at"] = now
            moved = db.execute(
                distributions.update()
                .where(distributions.c.id == distribution_id, distributions.c.status == current.value)
                .values(values)
            ).rowcount
            if not moved:  # changed under us; undo by rolling back
                raise ScheduleError(f"distribution {distribution_id} changed while being released; try again")
        return target

    def cancel(self, distribution_id: int) -> int:
        """Cancel a distribution and every delivery not yet handed to a transport. Returns how many."""
        self.distribution(distribution_id)  # raises NotFoundError
        with self.engine.begin() as db:
            moved = db.execute(
                distributions.update()
                .where(
                    distributions.c.id == distribution_id,
                    distributions.c.status.not_in([DistributionStatus.SENT.value, DistributionStatus.PARTIAL.value]),
                )
                .values(status=DistributionStatus.CANCELLED.value, updated_at=utcnow())
            ).rowcount
            if not moved:
                return -1
            result = db.execute(
                deliveries.update()
                .where(
                    deliveries.c.distribution_id == distribution_id,
                    deliveries.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.CLAIMED.value]),
                )
                .values(status=DeliveryStatus.CANCELLED.value, updated_at=utcnow())
            )
            return int(result.rowcount)

    # --- deliveries ------------------------------------------------------------------------------------

    def snapshot(
        self,
        distribution_id: int,
        release_id: int,
        channel: str,
        recipients: Iterable[tuple[str, str | None, str | None]],
        now: datetime | None = None,
        versions: Mapping[str, int] | None = None,
    ) -> int:
        """Write the ledger rows for a distribution, once: (address, name, language) each get the version of
        the release in their language when `versions` has one, else the release itself. Addresses already in
        the ledger for any version on this channel (another audience, another distribution) or suppressed are
        skipped. Returns rows added."""
        now = now or utcnow()
        versions = dict(versions or {})
        group = {release_id, *versions.values()}
        with self.engine.begin() as db:
            if _ledger_written(db, distribution_id):
                return 0
            suppressed = set(db.execute(sa.select(suppressions.c.address_hash)).scalars())
            taken = set(
                db.execute(
                    sa.select(deliveries.c.address).where(
                        deliveries.c.release_id.in_(group), deliveries.c.channel == channel
                    )
                ).scalars()
            )
            rows: list[dict[str, Any]] = []
            seen: set[str] = set()
            for address, name, language in recipients:
                if address in taken or address in seen or (suppressed and address_hash(address) in suppressed):
                    continue
                seen.add(address)
                version = versions.get(language or "", release_id)
                rows.append({"address": address, "name": name, "version": version})
            # What every row shares is bound once, not per row: 100,000 rows insert in well under a second.
            insert = deliveries.insert().values(
                distribution_id=distribution_id,
                release_id=sa.bindparam("version"),
                channel=channel,
                status=DeliveryStatus.PENDING.value,
                updated_at=now,
                address=sa.bindparam("address"),
                name=sa.bindparam("name"),
            )
            for start in range(0, len(rows), 5000):
                db.execute(insert, rows[start : start + 5000])
        return len(rows)

    def snapshot_everyone(
        self,
        distribution_id: int,
        release_id: int,
        channel: str,
        now: datetime | None = None,
        versions: Mapping[str, int] | None = None,
    ) -> int:
        """`snapshot` for an audience without filters, done inside the database (INSERT … SELECT): every
        contact not already in the ledger for any version on this channel and not suppressed, each with the
        version in their language. (A suppression kept only as a hash cannot be matched here; `claim` checks
        hashes again before anything is sent.)"""
        now = now or utcnow()
        versions = {k: v for k, v in (versions or {}).items() if v != release_id}
        with self.engine.begin() as db:
            if _ledger_written(db, distribution_id):
                return 0
            taken = sa.select(deliveries.c.address).where(
                deliveries.c.release_id.in_({release_id, *versions.values()}), deliveries.c.channel == channel
            )
            suppressed = sa.select(suppressions.c.address).where(suppressions.c.address.is_not(None))
            version: sa.ColumnElement[Any] = (
                sa.case(
                    *((contacts.c.language == language, sa.literal(vid)) for language, vid in versions.items()),
                    else_=sa.literal(release_id),
                )
                if versions
                else sa.literal(release_id)
            )
            chosen = (
                sa.select(
                    sa.literal(distribution_id),
                    version,
                    sa.literal(channel),
                    contacts.c.email,
                    contacts.c.name,
                    sa.literal(DeliveryStatus.PENDING.value),
                    sa.literal(now, UTCDateTime()),
                )
                .where(contacts.c.email.not_in(taken), contacts.c.email.not_in(suppressed))
                .order_by(contacts.c.email)
            )
            columns = ["distribution_id", "release_id", "channel", "address", "name", "status", "updated_at"]
            insert = deliveries.insert().from_select(columns, chosen).execution_options(preserve_rowcount=True)
            added = db.execute(insert).rowcount
        return int(added)

    def claim(
        self,
        distribution_id: int,
        worker: str,
        limit: int,
        lease_until: datetime,
        categories: Sequence[str] = (),
    ) -> list[ClaimedDelivery]:
        """Atomically take up to `limit` pending deliveries of a distribution that is sending (none once it was
        paused, held or cancelled). Addresses suppressed since the snapshot, or opted out of one of the
        release's `categories`, are marked `suppressed` inside the same transaction and not returned, so an
        unsubscribe beats the next batch."""
        optout_keys = [c.strip().casefold() for c in categories]
        now = utcnow()
        with self.engine.begin() as db:
            status = db.execute(
                sa.select(distributions.c.status).where(distributions.c.id == distribution_id)
            ).scalar_one_or_none()
            if status != DistributionStatus.SENDING.value:
                return []
            pick = (
                sa.select(deliveries.c.id)
                .where(
                    deliveries.c.distribution_id == distribution_id,
                    # A literal, not a parameter: only then can SQLite use the partial index on pending rows.
                    deliveries.c.status == sa.literal_column("'pending'"),
                )
                .order_by(deliveries.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            take = (
                deliveries.update()
                .where(deliveries.c.id.in_(pick.scalar_subquery()))
                .values(
                    status=DeliveryStatus.CLAIMED.value,
                    claimed_by=worker,
                    lease_until=lease_until,
                    attempts=deliveries.c.attempts + 1,
                    updated_at=now,
                )
                .returning(
                    deliveries.c.id,
                    deliveries.c.address,
                    deliveries.c.name,
                    deliveries.c.attempts,
                    deliveries.c.release_id,
                )
            )
            while True:  # a batch that was all suppressed is not the end of the list: take the next one
                rows = db.execute(take).all()
                hashes = {address_hash(r.address): r.id for r in rows}
                blocked = set(
                    db.execute(
                        sa.select(suppressions.c.address_hash).where(among(suppressions.c.address_hash, list(hashes)))
                    ).scalars()
                )
                if optout_keys and hashes:
                    blocked |= set(
                        db.execute(
                            sa.select(category_optouts.c.address_hash).where(
                                among(category_optouts.c.address_hash, list(hashes)),
                                category_optouts.c.category.in_(optout_keys),
                            )
                        ).scalars()
                    )
                if blocked:
                    db.execute(
                        deliveries.update()
                        .where(among(deliveries.c.id, [hashes[h] for h in blocked]))
                        .values(status=DeliveryStatus.SUPPRESSED.value, claimed_by=None, updated_at=now)
                    )
                blocked_ids = {hashes[h] for h in blocked}
                claimed = [
                    ClaimedDelivery(r.id, r.address, r.name, r.attempts, r.release_id)
                    for r in rows
                    if r.id not in blocked_ids
                ]
                if claimed or not rows:
                    return sorted(claimed, key=lambda c: c.id)

    def mark_submitting(self, ids: Sequence[int], worker: str) -> list[int]:
        """Record that these deliveries are being handed to the transport (a crash now means "in doubt").
        Returns the ids still claimed by `worker`: one cancelled, or taken over after the lease ran out, in
        the meantime must not be sent."""
        with self.engine.begin() as db:
            moved = db.execute(
                deliveries.update()
                .where(
                    among(deliveries.c.id, ids),
                    # `submitting` too: run again after its commit's answer was lost, it still says "yours"
                    deliveries.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SUBMITTING.value]),
                    deliveries.c.claimed_by == worker,
                )
                .values(status=DeliveryStatus.SUBMITTING.value, updated_at=utcnow())
                .returning(deliveries.c.id)
            ).scalars()
            return sorted(int(i) for i in moved)

    def extend_claims(self, ids: Sequence[int], worker: str, until: datetime) -> int:
        """Push back the lease of deliveries `worker` still holds (claimed or being submitted)."""
        with self.engine.begin() as db:
            return int(
                db.execute(
                    deliveries.update()
                    .where(
                        among(deliveries.c.id, ids),
                        deliveries.c.claimed_by == worker,
                        deliveries.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SUBMITTING.value]),
                    )
                    .values(lease_until=until)
                ).rowcount
            )

    def release_claims(self, ids: Sequence[int], worker: str, refund: bool = False) -> None:
        """Give back deliveries `worker` claimed but did not send; never someone else's. `refund` takes the
        claim off their attempt count (a rate limit is not the recipient's doing)."""
        with self.engine.begin() as db:
            db.execute(
                deliveries.update()
                .where(
                    among(deliveries.c.id, ids),
                    deliveries.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SUBMITTING.value]),
                    deliveries.c.claimed_by == worker,
                )
                .values(
                    status=DeliveryStatus.PENDING.value,
                    claimed_by=None,
                    lease_until=None,
                    updated_at=utcnow(),
                    attempts=deliveries.c.attempts - (1 if refund else 0),
                )
            )

    def record_results(self, results: Sequence[SendResult], when: datetime | None = None) -> None:
        """Write what the transport reported. Results that share an outcome, provider id and error (a whole
        SendGrid request shares one X-Message-Id) are written with one UPDATE … WHERE id IN (…). Only rows
        still in flight (or put in doubt meanwhile, when a lease ran out) change: a late answer never undoes
        a person's decision or a provider event."""
        in_flight = sa.or_(
            deliveries.c.status == sa.literal_column("'submitting'"),
            deliveries.c.status == sa.literal_column("'in_doubt'"),
        )
        when = when or utcnow()
        groups: dict[tuple[Outcome, str | None, str | None], list[int]] = {}
        for result in results:
            groups.setdefault((result.outcome, result.provider_id, result.error), []).append(result.delivery_id)
        singles: list[dict[str, Any]] = []
        with self.engine.begin() as db:
            for (outcome, provider_id, error), ids in groups.items():
                accepted = outcome is Outcome.ACCEPTED
                values: dict[str, Any] = {
                    "status": DeliveryStatus(outcome.value).value,
                    "provider_id": provider_id if accepted else None,
                    "sent_at": when if accepted else None,
                    "error": error,
                }
                if len(ids) == 1:  # one per message (an SMTP queue id): written together below
                    singles.append({f"b_{key}": value for key, value in values.items()} | {"b_id": ids[0]})
                    continue
                values |= {"lease_until": None, "updated_at": when}
                db.execute(deliveries.update().where(among(deliveries.c.id, ids), in_flight).values(values))
            if singles:
                db.execute(
                    deliveries.update()
                    .where(deliveries.c.id == sa.bindparam("b_id"), in_flight)
                    .values(
                        status=sa.bindparam("b_status"),
                        provider_id=sa.bindparam("b_provider_id"),
                        sent_at=sa.bindparam("b_sent_at", type_=UTCDateTime()),
                        error=sa.bindparam("b_error"),
                        lease_until=None,
                        updated_at=when,
                    ),
                    singles,
                )

    def take_lease(self, name: str, holder: str, now: datetime, ttl: timedelta, dead_holder: str | None = None) -> bool:
        """Take or renew the lease `name` until now + ttl. True when `holder` has it: it was free, expired,
        already theirs, or held by `dead_holder` (known to have died). Atomic: of two processes trying at
        once, one gets it."""
        until = now + ttl
        mine_or_free = [leases.c.holder == holder, leases.c.expires_at < now]
        if dead_holder:
            mine_or_free.append(leases.c.holder == dead_holder)
        with self.engine.begin() as db:
            taken = db.execute(
                leases.update()
                .where(leases.c.name == name, sa.or_(*mine_or_free))
                .values(holder=holder, expires_at=until)
            ).rowcount
            if taken:
                return True
            if db.execute(sa.select(leases.c.name).where(leases.c.name == name)).first() is not None:
                return False
            db.execute(
                _insert_ignoring_duplicates(self.engine, leases, ["name"]).values(
                    name=name, holder=holder, expires_at=until
                )
            )
            held_by = db.execute(sa.select(leases.c.holder).where(leases.c.name == name)).scalar_one()
        return bool(held_by == holder)

    def lease_holder(self, name: str, now: datetime) -> str | None:
        """Who holds `name` now (None when nobody, or the last holder's lease ran out)."""
        with self.engine.begin() as db:
            row = db.execute(sa.select(leases).where(leases.c.name == name)).first()
        return str(row.holder) if row is not None and row.expires_at >= now else None

    def give_up_lease(self, name: str, holder: str) -> None:
        with self.engine.begin() as db:
            db.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

    def claim_holders(self) -> set[str]:
        """Workers that hold claimed or in-flight deliveries."""
        with self.engine.begin() as db:
            return set(
                db.execute(
                    sa.select(deliveries.c.claimed_by)
                    .where(deliveries.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SUBMITTING.value]))
                    .distinct()
                ).scalars()
            ) - {None}

    def expire_leases(self, now: datetime, resend_in_flight: bool, dead_workers: Sequence[str] = ()) -> tuple[int, int]:
        """Take back deliveries of workers that are gone: those whose lease ran out, and every one held by
        `dead_workers` (known dead, so there is no need to wait for the lease). Claimed ones go back to
        pending; ones being submitted go back too when the transport is idempotent, else become in_doubt.
        Returns (released, in_doubt)."""
        gone = sa.or_(deliveries.c.lease_until < now, deliveries.c.claimed_by.in_(list(dead_workers)))
        with self.engine.begin() as db:
            released = db.execute(
                deliveries.update()
                .where(deliveries.c.status == DeliveryStatus.CLAIMED.value, gone)
                .values(status=DeliveryStatus.PENDING.value, claimed_by=None, lease_until=None, updated_at=now)
            ).rowcount
            target = DeliveryStatus.PENDING if resend_in_flight else DeliveryStatus.IN_DOUBT
            doubted = db.execute(
                deliveries.update()
                .where(deliveries.c.status == DeliveryStatus.SUBMITTING.value, gone)
                .values(
                    status=target.value,
                    claimed_by=None,
                    lease_until=None,
                    updated_at=now,
                    error=None if resend_in_flight else "the worker stopped while submitting; outcome unknown",
                )
            ).rowcount
        return int(released), int(doubted) if not resend_in_flight else 0

    def open_count(self, distribution_id: int) -> int:
        """Deliveries still pending, claimed or being submitted."""
        with self.engine.begin() as db:
            return int(
                db.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.distribution_id == distribution_id,
                        deliveries.c.status.in_([s.value for s in OPEN_STATUSES]),
                    )
                ).scalar_one()
            )

    def in_doubt(self, distribution_id: int, addresses: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Deliveries of a distribution whose outcome is unknown (optionally only these addresses)."""
        self.distribution(distribution_id)  # raises NotFoundError
        query = (
            sa.select(deliveries.c.id, deliveries.c.address, deliveries.c.error, deliveries.c.updated_at)
            .where(
                deliveries.c.distribution_id == distribution_id,
                deliveries.c.status == DeliveryStatus.IN_DOUBT.value,
            )
            .order_by(deliveries.c.id)
        )
        if addresses:
            query = query.where(deliveries.c.address.in_([a.strip().lower() for a in addresses]))
        with self.engine.begin() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def resolve_in_doubt(self, delivery_ids: Sequence[int], sent: bool, now: datetime | None = None) -> int:
        """A person's decision on in-doubt deliveries: `sent` marks them accepted; otherwise they go back to
        pending and their distribution back to sending, so the next run sends them. Returns how many moved."""
        now = now or utcnow()
        if not delivery_ids:
            return 0
        with self.engine.begin() as db:
            if not sent:  # reopening: not while finish() decides this distribution is done
                owners = db.execute(
                    sa.select(deliveries.c.distribution_id).where(deliveries.c.id.in_(list(delivery_ids))).distinct()
                ).scalars()
                for owner in sorted(owners):
                    _lock_distribution(db, owner)
            rows = (
                db.execute(
                    deliveries.update()
                    .where(
                        deliveries.c.id.in_(list(delivery_ids)), deliveries.c.status == DeliveryStatus.IN_DOUBT.value
                    )
                    .values(
                        status=(DeliveryStatus.ACCEPTED if sent else DeliveryStatus.PENDING).value,
                        error="in doubt; confirmed sent by a person" if sent else None,
                        sent_at=now if sent else None,
                        claimed_by=None,
                        lease_until=None,
                        updated_at=now,
                    )
                    .returning(deliveries.c.distribution_id)
                )
                .scalars()
                .all()
            )
            touched = set(rows)
            if not sent and touched:
                db.execute(
                    distributions.update()
                    .where(
                        distributions.c.id.in_(touched),
                        distributions.c.status.in_([DistributionStatus.PARTIAL.value, DistributionStatus.SENT.value]),
                    )
                    .values(status=DistributionStatus.SENDING.value, updated_at=now)
                )
            if sent and touched:  # a partial distribution with nothing left in doubt or failed is sent
                troubled = (
                    sa.select(deliveries.c.id)
                    .where(
                        deliveries.c.distribution_id == distributions.c.id,
                        deliveries.c.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.IN_DOUBT.value]),
                    )
                    .exists()
                )
                db.execute(
                    distributions.update()
                    .where(
                        distributions.c.id.in_(touched),
                        distributions.c.status == DistributionStatus.PARTIAL.value,
                        ~troubled,
                    )
                    .values(status=DistributionStatus.SENT.value, updated_at=now)
                )
        return len(rows)

    def deliveries_of(self, distribution_id: int) -> list[dict[str, Any]]:
        with self.engine.begin() as db:
            return [
                dict(row._mapping)
                for row in db.execute(
                    sa.select(deliveries)
                    .where(deliveries.c.distribution_id == distribution_id)
                    .order_by(deliveries.c.id)
                )
            ]

    # --- contacts and suppressions ---------------------------------------------------------------------

    def save_contacts(self, items: Sequence[Contact], now: datetime | None = None) -> tuple[int, int, int]:
        """Insert new contacts and update changed ones, in one transaction. Suppressed addresses (including
        forgotten people, known only by hash) are not imported. Returns (imported, updated, suppressed)."""
        now = now or utcnow()
        with self.engine.begin() as db:
            existing = {row.email: row for row in db.execute(sa.select(contacts))}
            blocked = set(db.execute(sa.select(suppressions.c.address_hash)).scalars())
            new_rows, changed, skipped = [], [], 0
            for contact in items:
                if address_hash(contact.email) in blocked:
                    skipped += 1
                    continue
                values = _contact_values(contact)
                row = existing.get(contact.email)
                if row is None:
                    new_rows.append(values | {"created_at": now, "updated_at": now})
                elif any(getattr(row, k) != v for k, v in values.items()):
                    changed.append({f"v_{k}": v for k, v in values.items()} | {"v_updated_at": now})
            for start in range(0, len(new_rows), 5000):  # chunks keep the driver's parameter copies small
                db.execute(contacts.insert(), new_rows[start : start + 5000])
            if changed:
                cols: dict[str, Any] = {k[2:]: sa.bindparam(k) for k in changed[0] if k != "v_email"}
                db.execute(
                    contacts.update().where(contacts.c.email == sa.bindparam("v_email")).values(**cols),
                    changed,
                )
        return len(new_rows), len(changed), skipped

    def contacts(self) -> Iterator[Contact]:
        with self.engine.begin() as db:
            rows = db.execute(sa.select(contacts).order_by(contacts.c.email)).all()
        for row in rows:
            yield _contact_of(row)

    def suppress(self, address: str, reason: str, keep_address: bool = True) -> bool:
        """Add an address to the suppression list. True if it was not there before."""
        with self.engine.begin() as db:
            return _suppress(db, address if keep_address else None, reason, utcnow(), address_hash(address))

    def forget(self, address: str, now: datetime | None = None) -> dict[str, int]:
        """Erase a person (GDPR Art. 17): the contact row goes, past deliveries keep only a placeholder in
        place of the address and no name, provider events lose their payload, and the suppression list keeps
        only the address's hash, so a later import or list never mails them again. Returns what changed."""
        now = now or utcnow()
        address = address.strip().lower()
        digest = address_hash(address)
        placeholder = f"forgotten-{digest[:24]}@invalid"
        with self.engine.begin() as db:
            removed = db.execute(contacts.delete().where(sa.func.lower(contacts.c.email) == address)).rowcount
            anonymised = db.execute(
                deliveries.update()
                .where(sa.func.lower(deliveries.c.address) == address)
                .values(address=placeholder, name=None, error=None, updated_at=now)
            ).rowcount
            scrubbed = db.execute(
                events.update().where(events.c.address_hash == digest).values(raw={}, detail=None)
            ).rowcount
            kept = db.execute(
                suppressions.update()
                .where(suppressions.c.address_hash == digest)
                .values(address=None, reason="forgotten")
            ).rowcount
            if not kept:
                _suppress(db, None, "forgotten", now, digest)
        return {"contacts": int(removed), "deliveries": int(anonymised), "events": int(scrubbed)}

    def opt_out(self, digest: str, category: str) -> bool:
        """Stop one category of releases for an address (known by hash). True if it was new."""
        key = category.strip().casefold()
        with self.engine.begin() as db:
            exists = db.execute(
                sa.select(category_optouts.c.id).where(
                    category_optouts.c.address_hash == digest, category_optouts.c.category == key
                )
            ).first()
            if exists:
                return False
            db.execute(category_optouts.insert().values(address_hash=digest, category=key, created_at=utcnow()))
        return True

    def opted_out(self, categories: Iterable[str]) -> set[str]:
        """Hashes of the addresses that opted out of any of these categories."""
        keys = [c.strip().casefold() for c in categories]
        if not keys:
            return set()
        with self.engine.begin() as db:
            return set(
                db.execute(
                    sa.select(category_optouts.c.address_hash).where(category_optouts.c.category.in_(keys))
                ).scalars()
            )

    def release_id_by_slug(self, slug: str) -> int | None:
        with self.engine.begin() as db:
            found = db.execute(sa.select(releases.c.id).where(releases.c.slug == slug)).scalar_one_or_none()
        return int(found) if found is not None else None

    def release_by_slug(self, slug: str) -> StoredRelease | None:
        with self.engine.begin() as db:
            row = db.execute(sa.select(releases).where(releases.c.slug == slug)).first()
        return self._stored(row) if row is not None else None

    def suppress_hash(self, digest: str, reason: str) -> bool:
        """Suppress an address known only by its hash (an unsubscribe link carries no address)."""
        with self.engine.begin() as db:
            return _suppress(db, None, reason, utcnow(), digest)

    # --- provider events ----------------------------------------------------------------------------

    def record_events(
        self, provider: str, items: Sequence[TrackingEvent], soft_bounce_limit: int, now: datetime | None = None
    ) -> EventsReport:
        """Store provider events once each (a retried post changes nothing) and act on the new ones, in one
        transaction: an event naming one of our deliveries settles it if it was in doubt and moves its
        status on (never back: clicked is not undone by a late "delivered"); hard bounces, complaints,
        unsubscribes and suppressing drops suppress the address at once, soft bounces after
        `soft_bounce_limit` of them."""
        now = now or utcnow()
        report = EventsReport(received=len(items))
        with self.engine.begin() as db:
            keys = list({e.key for e in items})
            seen = set(
                db.execute(
                    sa.select(events.c.event_key).where(events.c.provider == provider, among(events.c.event_key, keys))
                ).scalars()
            )
            fresh: dict[str, TrackingEvent] = {}
            for item in items:
                if item.key not in seen and item.key not in fresh:
                    fresh[item.key] = item
            report.duplicates = len(items) - len(fresh)
            ids = [e.delivery_id for e in fresh.values() if e.delivery_id is not None]
            found = db.execute(
                sa.select(deliveries.c.id, deliveries.c.address, deliveries.c.status).where(among(deliveries.c.id, ids))
            ).all()
            address_of = {int(r.id): str(r.address) for r in found}
            status_of = {int(r.id): DeliveryStatus(r.status) for r in found}
            rows = []
            moved: set[int] = set()  # deliveries whose status an event moves on (written once each, below)
            for item in fresh.values():
                delivery = item.delivery_id
                # An id is trusted only for the address it was sent to.
                linked = delivery is not None and address_of.get(delivery) == item.address
                rows.append(
                    {
                        "provider": provider,
                        "event_key": item.key,
                        "delivery_id": item.delivery_id if linked else None,
                        "kind": item.kind.value,
                        "address_hash": address_hash(item.address),
                        "occurred_at": item.occurred_at,
                        "detail": item.detail,
                        "raw": item.raw,
                        "received_at": now,
                    }
                )
                if not linked or delivery is None:
                    continue
                if status_of[delivery] in (DeliveryStatus.IN_DOUBT, DeliveryStatus.SUBMITTING):
                    # The provider speaks of this message, so it accepted the request.
                    db.execute(
                        deliveries.update()
                        .where(deliveries.c.id == delivery)
                        .values(
                            status=DeliveryStatus.ACCEPTED.value, error=None, sent_at=item.occurred_at, updated_at=now
                        )
                    )
                    status_of[delivery] = DeliveryStatus.ACCEPTED
                    report.resolved += 1
                target = EVENT_STATUS.get(item.kind)
                if target is not None and STATUS_RANK[target] > STATUS_RANK.get(status_of[delivery], 99):
                    status_of[delivery] = target
                    moved.add(delivery)
            by_status: dict[DeliveryStatus, list[int]] = {}
            for delivery in moved:
                by_status.setdefault(status_of[delivery], []).append(delivery)
            for status, group in by_status.items():
                lower = [s.value for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
                db.execute(
                    deliveries.update()
                    .where(among(deliveries.c.id, group), deliveries.c.status.in_(lower))  # only ever upwards
                    .values(status=status.value, updated_at=now)
                )
            forgotten = set(
                db.execute(
                    sa.select(suppressions.c.address_hash).where(
                        suppressions.c.reason == "forgotten",
                        among(suppressions.c.address_hash, list({r["address_hash"] for r in rows})),
                    )
                ).scalars()
            )
            for row in rows:
                if row["address_hash"] in forgotten:  # an erased person's late events keep no address
                    row["raw"], row["detail"] = {}, None
            insert = _insert_ignoring_duplicates(self.engine, events, ["provider", "event_key"])
            for start in range(0, len(rows), 1000):
                db.execute(insert, rows[start : start + 1000])
            report.new = len(rows)
            for item in fresh.values():
                reason = item.suppresses
                if reason is None and item.kind is EventKind.BLOCKED:
                    soft = db.execute(
                        sa.select(sa.func.count())
                        .select_from(events)
                        .where(
                            events.c.address_hash == address_hash(item.address),
                            events.c.kind == EventKind.BLOCKED.value,
                        )
                    ).scalar_one()
                    if soft >= soft_bounce_limit:
                        reason = f"{soft} soft bounces"
                if reason is not None and _suppress(db, item.address, reason, now):
                    report.suppressed += 1
        return report

    def event_counts(self, distribution_id: int) -> dict[str, int]:
        """Deliveries of a distribution with at least one event of each kind (each delivery counted once;
        soft and hard bounces count together as `bounced`)."""
        kind = sa.case((events.c.kind == EventKind.BLOCKED.value, EventKind.BOUNCED.value), else_=events.c.kind)
        with self.engine.begin() as db:
            rows = db.execute(
                sa.select(kind, sa.func.count(sa.distinct(events.c.delivery_id)))
                .join(deliveries, deliveries.c.id == events.c.delivery_id)
                .where(deliveries.c.distribution_id == distribution_id)
                .group_by(kind)
            ).all()
        return {str(kind): int(count) for kind, count in rows}

    def suppressed_hashes(self) -> set[str]:
        with self.engine.begin() as db:
            return set(db.execute(sa.select(suppressions.c.address_hash)).scalars())

    # --- partner feeds ---------------------------------------------------------------------------------

    def _feed_source_id(self, db: Connection, url: str, now: datetime) -> int:
        row = db.execute(sa.select(feed_sources.c.id).where(feed_sources.c.url == url)).first()
        if row is not None:
            return int(row.id)
        return int(
            db.execute(feed_sources.insert().values(url=url, created_at=now).returning(feed_sources.c.id)).scalar_one()
        )

    def feed_checked_at(self, url: str) -> datetime | None:
        """When this feed was last read through (or answered "not modified")."""
        with self.engine.begin() as db:
            found = db.execute(sa.select(feed_sources.c.fetched_at).where(feed_sources.c.url == url)).first()
        return found.fetched_at if found is not None else None

    def touch_feed(self, url: str, now: datetime) -> None:
        """The feed answered "not modified": remember that it was checked."""
        with self.engine.begin() as db:
            source_id = self._feed_source_id(db, url, now)
            db.execute(feed_sources.update().where(feed_sources.c.id == source_id).values(fetched_at=now))

    def feed_validators(self, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) the server sent on our last complete fetch of this feed."""
        with self.engine.begin() as db:
            row = db.execute(
                sa.select(feed_sources.c.etag, feed_sources.c.last_modified).where(feed_sources.c.url == url)
            ).first()
        return (row.etag, row.last_modified) if row is not None else (None, None)

    def record_feed_fetch(
        self, url: str, title: str | None, etag: str | None, modified: str | None, now: datetime
    ) -> None:
        """Remember the validators; called only after every entry of the fetch has been recorded."""
        with self.engine.begin() as db:
            source_id = self._feed_source_id(db, url, now)
            db.execute(
                feed_sources.update()
                .where(feed_sources.c.id == source_id)
                .values(title=title, etag=etag, last_modified=modified, fetched_at=now)
            )

    def seen_feed_entries(self, url: str) -> dict[str, str]:
        """entry key → content hash of every entry of this feed already ingested."""
        with self.engine.begin() as db:
            rows = db.execute(
                sa.select(feed_entries.c.entry_key, feed_entries.c.content_hash)
                .join(feed_sources, feed_sources.c.id == feed_entries.c.source_id)
                .where(feed_sources.c.url == url)
            )
            return {row.entry_key: row.content_hash for row in rows}

    def record_feed_entry(self, url: str, key: str, content_hash: str, release_id: int | None, now: datetime) -> None:
        with self.engine.begin() as db:
            source_id = self._feed_source_id(db, url, now)
            where = (feed_entries.c.source_id == source_id) & (feed_entries.c.entry_key == key)
            values = {"content_hash": content_hash, "release_id": release_id, "seen_at": now}
            if db.execute(feed_entries.update().where(where).values(**values)).rowcount == 0:
                db.execute(feed_entries.insert().values(source_id=source_id, entry_key=key, **values))

    # --- the web desk ----------------------------------------------------------------------------------

    def save_user(self, name: str, role: str, password_hash: str, email: str | None, now: datetime) -> bool:
        """Add a desk user, or replace their role, password and email. True if the user is new."""
        with self.engine.begin() as db:
            changed = db.execute(
                users.update()
                .where(users.c.name == name)
                .values(role=role, password_hash=password_hash, email=email, updated_at=now)
            ).rowcount
            if not changed:
                db.execute(
                    users.insert().values(
                        name=name, role=role, password_hash=password_hash, email=email, created_at=now, updated_at=now
                    )
                )
        return not changed

    def user(self, name: str) -> StoredUser | None:
        with self.engine.begin() as db:
            row = db.execute(sa.select(users).where(users.c.name == name)).first()
        return None if row is None else StoredUser(row.name, row.role, row.password_hash, row.email)

    def users(self) -> list[StoredUser]:
        with self.engine.begin() as db:
            rows = db.execute(sa.select(users).order_by(users.c.name)).all()
        return [StoredUser(r.name, r.role, r.password_hash, r.email) for r in rows]

    def remove_user(self, name: str) -> bool:
        with self.engine.begin() as db:
            return bool(db.execute(users.delete().where(users.c.name == name)).rowcount)

    def record_audit(
        self,
        user: str,
        action: str,
        now: datetime,
        detail: str | None = None,
        release_id: int | None = None,
        distribution_id: int | None = None,
    ) -> None:
        with self.engine.begin() as db:
            db.execute(
                audit.insert().values(
                    at=now,
                    user=user,
                    action=action,
                    detail=detail,
                    release_id=release_id,
                    distribution_id=distribution_id,
                )
            )

    def audit_log(
        self, release_id: int | None = None, distribution_id: int | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first; of one release (and its distributions), one distribution, or everything."""
        query = sa.select(audit).order_by(audit.c.at.desc(), audit.c.id.desc()).limit(limit)
        if distribution_id is not None:
            query = query.where(audit.c.distribution_id == distribution_id)
        if release_id is not None:
            query = query.where(audit.c.release_id == release_id)
        with self.engine.begin() as db:
            rows = db.execute(query).all()
        return [AuditEntry(r.at, r.user, r.action, r.release_id, r.distribution_id, r.detail) for r in rows]

    def queued_by(self, distribution_id: int) -> str | None:
        """Who queued a distribution on the desk (None: the command line or the scheduler did)."""
        with self.engine.begin() as db:
            name: str | None = db.execute(
                sa.select(audit.c.user)
                .where(audit.c.distribution_id == distribution_id, audit.c.action == "queued")
                .order_by(audit.c.id)
                .limit(1)
            ).scalar()
        return name

    def signed_out_since(self, user: str, since: datetime) -> bool:
        """Whether `user` signed out (or was signed out everywhere) after `since`."""
        with self.engine.begin() as db:
            return (
                db.execute(
                    sa.select(audit.c.id)
                    .where(audit.c.user == user, audit.c.action == "signed out", audit.c.at > since)
                    .limit(1)
                ).first()
                is not None
            )

    def release_summaries(self, limit: int = 200) -> list[ReleaseSummary]:
        """Releases newest first, without digests (they are emails, not releases)."""
        count = (
            sa.select(sa.func.count())
            .where(distributions.c.release_id == releases.c.id)
            .scalar_subquery()
            .label("distributions")
        )
        query = (
            sa.select(releases, count)
            .where(~sa.exists().where(digests.c.release_id == releases.c.id))
            .order_by(releases.c.updated_at.desc(), releases.c.id.desc())
            .limit(limit)
        )
        with self.engine.begin() as db:
            rows = db.execute(query).all()
        return [
            ReleaseSummary(
                r.id,
                r.slug,
                r.headline,
                r.embargo,
                r.published_at,
                r.updated_at,
                int(r.distributions),
                len(r.data.get("problems") or ()),
            )
            for r in rows
        ]

    def delete_draft(self, release_id: int) -> bool:
        """Remove a release nobody has seen and nothing refers to: never queued, never published, not a partner
        feed's entry, no translation naming it. True if removed; False leaves it as it is."""
        with self.engine.begin() as db:
            row = db.execute(sa.select(releases.c.slug).where(releases.c.id == release_id)).first()
            if row is None:
                return False
            referred = [
                sa.select(distributions.c.id).where(distributions.c.release_id == release_id),
                sa.select(feed_entries.c.id).where(feed_entries.c.release_id == release_id),
                sa.select(releases.c.id).where(releases.c.translation_of == row.slug),
                sa.select(digests.c.id).where(digests.c.release_id == release_id),
            ]
            if any(db.execute(query.limit(1)).first() for query in referred):
                return False
            db.execute(audit.update().where(audit.c.release_id == release_id).values(release_id=None))
            return bool(
                db.execute(
                    releases.delete().where(releases.c.id == release_id, releases.c.published_at.is_(None))
                ).rowcount
            )

    def search_contacts(self, text: str, limit: int = 50, offset: int = 0) -> tuple[list[Contact], int, set[str]]:
        """Contacts whose address, name or outlet contains `text` (any case): a page of them, how many match
        in all, and which of the page's addresses are suppressed."""
        where = []
        if text.strip():
            wanted = text.strip().lower()
            where.append(
                sa.or_(
                    sa.func.lower(contacts.c.email).contains(wanted, autoescape=True),
                    sa.func.lower(sa.func.coalesce(contacts.c.name, "")).contains(wanted, autoescape=True),
                    sa.func.lower(sa.func.coalesce(contacts.c.outlet, "")).contains(wanted, autoescape=True),
                )
            )
        with self.engine.begin() as db:
            total = int(db.execute(sa.select(sa.func.count()).select_from(contacts).where(*where)).scalar_one())
            rows = db.execute(
                sa.select(contacts).where(*where).order_by(contacts.c.email).limit(limit).offset(offset)
            ).all()
            hashes = [address_hash(r.email) for r in rows]
            suppressed = set(
                db.execute(
                    sa.select(suppressions.c.address_hash).where(among(suppressions.c.address_hash, hashes))
                ).scalars()
            )
        page = [_contact_of(r) for r in rows]
        return page, total, {c.email for c in page if address_hash(c.email) in suppressed}

    def suppression_list(self, text: str = "", limit: int = 200) -> list[tuple[str | None, str, datetime]]:
        """Suppressed addresses (None once forgotten), newest first: (address, reason, since)."""
        query = sa.select(suppressions).order_by(suppressions.c.created_at.desc()).limit(limit)
        if text.strip():
            query = query.where(sa.func.lower(suppressions.c.address).contains(text.strip().lower(), autoescape=True))
        with self.engine.begin() as db:
            rows = db.execute(query).all()
        return [(r.address, r.reason, r.created_at) for r in rows]

    def event_timeline(self, distribution_id: int) -> list[tuple[datetime, str]]:
        """When each delivery of a distribution was sent ("sent") and every provider event about them, oldest
        first: (when, kind)."""
        with self.engine.begin() as db:
            sent = db.execute(
                sa.select(deliveries.c.sent_at).where(
                    deliveries.c.distribution_id == distribution_id, deliveries.c.sent_at.is_not(None)
                )
            ).scalars()
            points = [(when, "sent") for when in sent]
            rows = db.execute(
                sa.select(events.c.occurred_at, events.c.kind)
                .join(deliveries, deliveries.c.id == events.c.delivery_id)
                .where(deliveries.c.distribution_id == distribution_id)
            ).all()
        points += [(r.occurred_at, str(r.kind)) for r in rows]
        return sorted(points)

    # --- a rate shared by all workers --------------------------------------------------------------------

    def reserve_slots(self, name: str, count: int, interval: float, now: float | None = None) -> float:
        """Reserve `count` send slots `interval` seconds apart for provider `name`, after every slot any worker
        holds: returns how many seconds from now the first starts. One row per provider, locked for the moment
        of the update (FOR UPDATE on PostgreSQL; SQLite's write transactions queue). Times are the database's
        (db_now) unless `now` (seconds since the epoch) is given, so workers' clocks need not agree."""
        with self.engine.begin() as db:
            current = now if now is not None else db_now(db).timestamp()
            db.execute(
                _insert_ignoring_duplicates(self.engine, rate_slots, ["name"]).values(name=name, next_free=current)
            )
            free = db.execute(
                sa.select(rate_slots.c.next_free).where(rate_slots.c.name == name).with_for_update()
            ).scalar_one()
            start = max(float(free), current)
            db.execute(rate_slots.update().where(rate_slots.c.name == name).values(next_free=start + count * interval))
        return start - current

    # --- workers ---------------------------------------------------------------------------------------

    def heartbeat(self, name: str, forget_after: timedelta) -> None:
        """Record that worker `name` is alive now, in the database's time (its role follows from the leases it
        holds); rows of workers not
        heard from for `forget_after` (they died) are removed on the way."""
        with self.engine.begin() as db:
            now = db_now(db)
            db.execute(workers.delete().where(workers.c.heartbeat_at < now - forget_after))
            if not db.execute(workers.update().where(workers.c.name == name).values(heartbeat_at=now)).rowcount:
                db.execute(
                    _insert_ignoring_duplicates(self.engine, workers, ["name"]).values(
                        name=name, started_at=now, heartbeat_at=now
                    )
                )

    def remove_worker(self, name: str) -> None:
        with self.engine.begin() as db:
            db.execute(workers.delete().where(workers.c.name == name))

    def workers(self, live_within: timedelta) -> tuple[datetime, list[WorkerState]]:
        """The database's time now, and the workers heard from within `live_within` of it, with what each
        holds. Reads only."""
        with self.engine.begin() as db:
            now = db_now(db)
            rows = db.execute(
                sa.select(workers)
                .where(workers.c.heartbeat_at >= now - live_within)
                .order_by(workers.c.started_at, workers.c.name)
            ).all()
            held = db.execute(
                sa.select(deliveries.c.claimed_by, deliveries.c.distribution_id, sa.func.count())
                .where(deliveries.c.status.in_([DeliveryStatus.CLAIMED.value, DeliveryStatus.SUBMITTING.value]))
                .group_by(deliveries.c.claimed_by, deliveries.c.distribution_id)
            ).all()
            lease_rows = db.execute(sa.select(leases.c.name, leases.c.holder).where(leases.c.expires_at > now)).all()
        holding: dict[str, dict[int, int]] = {}
        for holder, dist_id, count in held:
            holding.setdefault(str(holder), {})[int(dist_id)] = int(count)
        return now, [
            WorkerState(
                r.name,
                "scheduler" if any(lease.holder == r.name for lease in lease_rows) else "sender",
                r.started_at,
                r.heartbeat_at,
                holding.get(r.name, {}),
                tuple(lease.name for lease in lease_rows if lease.holder == r.name),
            )
            for r in rows
        ]

    def totals(self) -> dict[str, int]:
        """Headline numbers for summaries."""
        with self.engine.begin() as db:

            def count(table: sa.Table, *where: Any) -> int:
                return int(db.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())

            return {
                "releases": count(releases),
                "contacts": count(contacts),
                "distributions": count(distributions),
                "accepted": count(deliveries, deliveries.c.status == DeliveryStatus.ACCEPTED.value),
            }


# Every public Store method is one transaction: when the database goes away mid-way it is rolled back, and
# the method runs again on a fresh connection (see _surviving_disconnects). Generators are left alone.
for _name, _method in list(vars(Store).items()):
    if _name in {"open", "close"} or _name.startswith("_") or not inspect.isfunction(_method):
        continue
    if not inspect.isgeneratorfunction(_method):
        setattr(Store, _name, _surviving_disconnects(_method))


def _release_values(release: Release, now: datetime) -> dict[str, Any]:
    return {
        "content_hash": release.content_hash,
        "source": release.source,
        "headline": release.title,
        "language": release.language,
        "release_date": release.date,
        "embargo": release.embargo,
        "data": release.to_record(),
        "translation_of": release.translation_of,
        "updated_at": now,
    }


def _contact_of(row: sa.Row[Any]) -> Contact:
    return Contact(
        email=row.email,
        name=row.name,
        outlet=row.outlet,
        beats=tuple(row.beats),
        regions=tuple(row.regions),
        language=row.language,
        consent_basis=ConsentBasis(row.consent_basis) if row.consent_basis else None,
        consent_source=row.consent_source,
        consent_date=row.consent_date,
        role=row.role,
        tags=tuple(row.tags or ()),
        embargo_trusted=bool(row.embargo_trusted),
    )


def _contact_values(contact: Contact) -> dict[str, Any]:
    return {
        "email": contact.email,
        "name": contact.name,
        "outlet": contact.outlet,
        "beats": list(contact.beats),
        "regions": list(contact.regions),
        "language": contact.language,
        "consent_basis": contact.consent_basis.value if contact.consent_basis else None,
        "consent_source": contact.consent_source,
        "consent_date": contact.consent_date,
        "role": contact.role,
        "tags": list(contact.tags),
        "embargo_trusted": contact.embargo_trusted,
    }


def reschedule(
    store: Store,
    distribution_id: int,
    due_at: datetime,
    timezone: str,
    status: DistributionStatus = DistributionStatus.SCHEDULED,
) -> bool:
    """Move a distribution that has not started to a new time (and `status`). True if it moved."""
    with store.engine.begin() as db:
        return bool(
            db.execute(
                distributions.update()
                .where(
                    distributions.c.id == distribution_id,
                    distributions.c.status.in_([DistributionStatus.SCHEDULED.value, DistributionStatus.HELD.value]),
                )
                .values(due_at=due_at, timezone=timezone, status=status.value, updated_at=utcnow())
            ).rowcount
        )


def approve(store: Store, distribution_id: int, waiting_note: str, now: datetime) -> datetime | None:
    """A held distribution whose note starts with `waiting_note` becomes scheduled at its time, or now if that
    has passed; None if it was not waiting (any more)."""
    with store.engine.begin() as db:
        row = db.execute(
            sa.select(distributions.c.due_at).where(
                distributions.c.id == distribution_id,
                distributions.c.status == DistributionStatus.HELD.value,
                distributions.c.note.startswith(waiting_note, autoescape=True),
            )
        ).first()
        if row is None:
            return None
        when: datetime = max(row.due_at, now)
        db.execute(
            distributions.update()
            .where(distributions.c.id == distribution_id, distributions.c.status == DistributionStatus.HELD.value)
            .values(status=DistributionStatus.SCHEDULED.value, due_at=when, note=None, updated_at=now)
        )
        return when


def auto_distribution(store: Store, origin: str) -> Distribution | None:
    """The distribution queued automatically under `origin`, if any."""
    with store.engine.begin() as db:
        row = db.execute(sa.select(distributions.c.id).where(distributions.c.origin == origin)).first()
    return store.distribution(row.id) if row else None
