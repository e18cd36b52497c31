"""The store on a temp SQLite file and on a real PostgreSQL server: migrations, the once-only ledger, atomic
claims."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import pipeline.store
from pipeline.errors import StoreError
from pipeline.models import DistributionStatus, Release
from pipeline.store import Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path, database_url: str | None) -> str:
    return database_url or f"sqlite:///{tmp_path}/db.sqlite"


def _store(url: str) -> Store:
    return Store.open(url)


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(pipeline.store.__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_the_migrations_build_exactly_the_schema_the_code_uses(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = _store(url)
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), pipeline.store.metadata)
    store.close()
    assert differences == []


def test_migrations_are_idempotent_and_newer_databases_refused(url: str) -> None:
    _store(url).close()
    store = _store(url)  # second open: nothing to do
    with store.engine.begin() as db:
        assert db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == _head()
        db.execute(sa.text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    store.close()
    with pytest.raises(StoreError, match="newer than this version"):
        _store(url)


def test_an_older_database_is_brought_up_to_date(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(pipeline.store.__file__).parent / "migrations"))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        assert "feed_entries" not in sa.inspect(connection).get_table_names()
    engine.dispose()
    store = Store.open(url)
    try:
        with store.engine.begin() as db:
            assert db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == _head()
        store.record_feed_entry("https://partner.example.com/feed", "guid-1", "0" * 64, None, NOW)
        assert store.seen_feed_entries("https://partner.example.com/feed") == {"guid-1": "0" * 64}
    finally:
        store.close()


def test_release_versions(url: str) -> None:
    store = _store(url)
    release = Release(headline="Acme Opens a Lab", body=("Text.",))
    first_id, state = store.save_release(release, NOW)
    assert state == "new"
    assert store.save_release(release, NOW) == (first_id, "unchanged")
    assert store.save_release(Release(headline="Acme Opens a Lab", body=("Edited.",)), NOW) == (first_id, "updated")
    assert store.release(first_id).version == 2


def test_ledger_never_holds_an_address_twice_for_a_release(url: str) -> None:
    store = _store(url)
    release_id, _ = store.save_release(Release(headline="One", body=("x",)), NOW)
    first = store.create_distribution(release_id, ["a"], NOW, "UTC")
    second = store.create_distribution(release_id, ["b"], NOW, "UTC")
    assert first is not None and second is not None
    people = [("a@example.com", "A", None), ("b@example.com", "B", None), ("a@example.com", "A again", None)]
    assert store.snapshot(first, release_id, "email", people) == 2
    assert store.snapshot(first, release_id, "email", people) == 0  # a snapshot is taken once
    assert store.snapshot(second, release_id, "email", [*people, ("c@example.com", None, None)]) == 1
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as db:
        db.execute(
            sa.text(
                "INSERT INTO deliveries (distribution_id, release_id, channel, address, status, updated_at) "
                "VALUES (:d, :r, 'email', 'a@example.com', 'pending', '2026-01-01')"
            ),
            {"d": second, "r": release_id},
        )


def test_concurrent_claims_never_share_a_delivery(url: str) -> None:
    store = _store(url)
    release_id, _ = store.save_release(Release(headline="Many", body=("x",)), NOW)
    dist = store.create_distribution(release_id, ["all"], NOW, "UTC")
    assert dist is not None
    store.snapshot(dist, release_id, "email", ((f"p{i}@example.com", None, None) for i in range(2000)))
    assert store.claim(dist, "early", 50, datetime.now(UTC) + timedelta(minutes=5)) == []  # not sending yet
    store.set_status(dist, DistributionStatus.SENDING)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def worker(slot: int) -> None:
        other = _store(url)
        while batch := other.claim(dist, f"w{slot}", 50, datetime.now(UTC) + timedelta(minutes=5)):
            claimed[slot].extend(d.id for d in batch)
        other.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for slot in claimed for i in slot]
    assert len(every) == 2000 and len(set(every)) == 2000


def test_a_category_opt_out_made_mid_send_is_honoured_at_the_next_claim(url: str) -> None:
    from pipeline.store import address_hash

    store = _store(url)
    release_id, _ = store.save_release(Release(headline="Tech news", body=("x",)), NOW)
    dist = store.create_distribution(release_id, ["all"], NOW, "UTC")
    assert dist is not None
    people = [(f"p{i}@example.com", None, None) for i in range(3)]
    store.snapshot(dist, release_id, "email", people)
    store.set_status(dist, DistributionStatus.SENDING)
    assert store.opt_out(address_hash("p1@example.com"), " Technology ")
    assert not store.opt_out(address_hash("p1@example.com"), "technology")  # once
    lease = datetime.now(UTC) + timedelta(minutes=5)
    claimed = store.claim(dist, "w", 10, lease, categories=("TECHNOLOGY", "Health"))
    assert [c.address for c in claimed] == ["p0@example.com", "p2@example.com"]
    statuses = {d["address"]: d["status"] for d in store.deliveries_of(dist)}
    assert statuses["p1@example.com"] == "suppressed"
    store.close()


def test_send_slots_reserved_at_once_by_several_workers_never_overlap(url: str) -> None:
    store = _store(url)
    taken: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        own = _store(url)
        for _ in range(10):
            start = 1_800_000_000.0 + own.reserve_slots("smtp", 5, 0.1, 1_800_000_000.0)
            with lock:
                taken.append((start, start + 5 * 0.1))
        own.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    taken.sort()
    assert len(taken) == 40
    assert all(b[0] >= a[1] - 1e-6 for a, b in itertools.pairwise(taken))  # one after another
    assert taken[-1][1] == pytest.approx(1_800_000_000.0 + 40 * 5 * 0.1)


def test_marking_a_batch_as_being_sent_twice_still_says_it_is_ours(url: str) -> None:
    """Run again after its commit's answer was lost, mark_submitting must not make the lane drop the batch."""
    store = _store(url)
    release_id, _ = store.save_release(Release(headline="Twice", body=("x",)), NOW)
    dist = store.create_distribution(release_id, ["all"], NOW, "UTC")
    assert dist is not None
    store.snapshot(dist, release_id, "email", ((f"p{i}@example.com", None, None) for i in range(5)))
    store.set_status(dist, DistributionStatus.SENDING)
    ids = [d.id for d in store.claim(dist, "w1", 5, datetime.now(UTC) + timedelta(minutes=5))]
    assert store.mark_submitting(ids, "w1") == sorted(ids)
    assert store.mark_submitting(ids, "w1") == sorted(ids)
    assert store.mark_submitting(ids, "w2") == []  # never another worker's
    store.close()


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        ("AdminShutdown", True),  # 57P01: the server is restarting
        ("CannotConnectNow", True),  # 57P03: starting up
        ("ConnectionFailure", True),  # 08006
        ("ReadOnlySqlTransaction", True),  # 25006: a failover left us on a read-only node
        ("QueryCanceled", False),  # 57014: a statement timeout is not an outage
        ("DeadlockDetected", False),
        ("DiskFull", False),
        ("InvalidPassword", False),
    ],
)
def test_only_an_outage_is_waited_out(error: str, retried: bool) -> None:
    import psycopg.errors

    cause = getattr(psycopg.errors, error)()
    wrapped = sa.exc.DBAPIError.instance("SELECT 1", {}, cause, psycopg.Error)
    assert pipeline.store._database_gone(wrapped) is retried
