"""Only one process schedules: a lease in the database, renewed by its holder, taken over when it lapses."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from pipeline.config import Settings
from pipeline.runtime import Runtime
from pipeline.schedule import SCHEDULER_LEASE, Worker
from pipeline.store import Store
from tests.conftest import wait_until

T0 = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
MINUTE = timedelta(seconds=60)


def test_one_holder_at_a_time_and_a_lapsed_lease_passes_on(runtime: Runtime) -> None:
    store: Store = runtime.store
    assert store.take_lease("scheduler", "a", T0, MINUTE)
    assert not store.take_lease("scheduler", "b", T0 + timedelta(seconds=30), MINUTE)  # a holds it
    assert store.take_lease("scheduler", "a", T0 + timedelta(seconds=40), MINUTE)  # a renews until 12:01:40
    assert not store.take_lease("scheduler", "b", T0 + timedelta(seconds=90), MINUTE)
    assert store.lease_holder("scheduler", T0 + timedelta(seconds=90)) == "a"
    # a stops renewing (its process died): once the lease has run out, b takes it, and a cannot renew.
    later = T0 + timedelta(seconds=101)
    assert store.lease_holder("scheduler", later) is None
    assert store.take_lease("scheduler", "b", later, MINUTE)
    assert not store.take_lease("scheduler", "a", later + timedelta(seconds=1), MINUTE)
    store.give_up_lease("scheduler", "a")  # not a's to give up
    assert store.lease_holder("scheduler", later) == "b"
    store.give_up_lease("scheduler", "b")
    assert store.lease_holder("scheduler", later) is None


def test_a_second_worker_stands_by_and_takes_over(settings: Settings) -> None:
    quick = settings.model_copy(
        update={"schedule": settings.schedule.model_copy(update={"leader_lease": timedelta(seconds=0.3)})}
    )
    first_rt, second_rt = Runtime.open(quick), Runtime.open(quick)
    first, second = Worker(first_rt), Worker(second_rt)
    first.holder, second.holder = "host-a:1", "host-b:2"
    standby: list[str] = []
    threads = [
        threading.Thread(target=first.run_forever, daemon=True),
        threading.Thread(target=lambda: second.run_forever(on_standby=standby.append), daemon=True),
    ]
    threads[0].start()
    wait_until(lambda: first.leading, 10, "the first worker to lead")
    threads[1].start()
    wait_until(lambda: standby == ["host-a:1"], 10, "the second to stand by")
    assert not second.leading  # only one schedules
    first.stop()
    threads[0].join(5)
    wait_until(lambda: second.leading, 10, "the takeover")  # the standby takes over within a third of the lease
    assert second_rt.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) == "host-b:2"
    second.stop()
    threads[1].join(5)
    assert second_rt.store.lease_holder(SCHEDULER_LEASE, datetime.now(UTC)) is None
    first_rt.close()
    second_rt.close()
