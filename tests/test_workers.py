"""Several real `pipeline run` processes sending one distribution together through the SendGrid transport to a
local SendGrid-compatible server, on SQLite and on PostgreSQL: one schedules, all send, one is killed with
SIGKILL mid-send, and still every recipient is accepted once (or, for the killed worker's last request, held
in doubt and sent at most once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pipeline.config import load_settings
from pipeline.models import DeliveryStatus, DistributionStatus
from pipeline.runtime import Runtime
from tests.conftest import CONFIG, run_cli, wait_until, write_project
from tests.transport_rig import API_KEY, many_contacts
from tools.fake_sendgrid import FakeSendGrid, Faults

RECIPIENTS = 30_000
RELEASE = "---\ntitle: Acme Opens Its Labs to Students\ndate: 2026-03-03\n---\nSPRINGFIELD, Ontario — Acme opened.\n"


def _config(server_url: str) -> str:
    return (
        CONFIG.replace("transport: outbox", "transport: sendgrid")
        .replace("  sources: [contacts.csv]", "  sources: []")
        .replace(
            "  max_lateness: 2h\n", "  max_lateness: 2h\n  sweep_interval: 1s\n  leader_lease: 3s\n  heartbeat: 1s\n"
        )
        + f"sendgrid:\n  host: {server_url}\n  timeout: 10\nsend:\n  batch_size: 200\n  lease: 60s\n"
    )


def _worker(config: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"SENDGRID_API_KEY": API_KEY, "PIPELINE_SECRET": "workers-test-secret"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config), "run"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(config.parent / "workers.log").open("ab"),
    )


def test_three_workers_share_one_distribution_and_a_killed_one_loses_nothing(
    tmp_path: Path, database_url: str | None
) -> None:
    # Each answer takes a little while, as a distant provider's would, so all three workers get batches.
    with FakeSendGrid(API_KEY, faults=Faults(slow=1.0, slow_seconds=0.15), keep_messages=False) as server:
        config = write_project(tmp_path, {}, config=_config(server.url), database=database_url)
        settings = load_settings(config)
        runtime = Runtime.open(settings)
        runtime.store.save_contacts(many_contacts(RECIPIENTS))
        workers = [_worker(config) for _ in range(3)]
        try:
            names = {f"{os.uname().nodename}:{w.pid}": w for w in workers}

            def live() -> set[str]:
                return {w.name for w in runtime.store.workers(settings.schedule.heartbeat * 3)[1]}

            wait_until(lambda: live() == set(names), 30, "three live workers")

            def roles() -> list[str]:
                return sorted(w["role"] for w in json.loads(run_cli(config, "workers", "--json").output))

            wait_until(lambda: roles() == ["scheduler", "sender", "sender"], 30, "one scheduler, two senders")

            draft = tmp_path / "open.md"
            draft.write_text(RELEASE, encoding="utf-8")
            assert run_cli(config, "queue", str(draft), "--to", "all", "--at", "now").exit_code == 0
            (dist,) = runtime.store.distributions()

            def holders() -> set[str]:
                return {w.name for w in runtime.store.workers(settings.schedule.heartbeat * 3)[1] if w.holding}

            # Some way into the send (each worker has had time for a few requests), all three holding batches.
            wait_until(lambda: server.requests >= 40 and len(holders()) == 3, 60, "all three workers sending")
            scheduler = next(w for w in runtime.store.workers(settings.schedule.heartbeat * 3)[1] if w.leases)
            victim = names[scheduler.name]
            victim.send_signal(signal.SIGKILL)  # the scheduler, mid-send: it holds a claimed or in-flight batch
            victim.wait()

            def new_scheduler() -> str | None:
                listing = json.loads(run_cli(config, "workers", "--json").output)
                return next((w["worker"] for w in listing if w["role"] == "scheduler"), None)

            # A sender busy with the distribution still takes the schedule over within the lease (3 s here).
            wait_until(lambda: new_scheduler() not in (None, scheduler.name), 15, "another worker to schedule")

            def finished() -> bool:
                status = runtime.store.distribution(dist.id).status
                return status in (DistributionStatus.SENT, DistributionStatus.PARTIAL)

            wait_until(finished, 180, "the distribution to finish")
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(30)
        ledger = runtime.store.deliveries_of(dist.id)
        counts = server.counts()
    runtime.close()

    assert len(ledger) == RECIPIENTS
    statuses = Counter(str(row["status"]) for row in ledger)
    assert set(statuses) <= {DeliveryStatus.ACCEPTED, DeliveryStatus.IN_DOUBT}, statuses  # nothing left pending
    for row in ledger:
        held = counts.get(str(row["address"]), 0)
        assert held == 1 if row["status"] == DeliveryStatus.ACCEPTED else held <= 1, row
    assert set(counts) <= {str(row["address"]) for row in ledger} and max(counts.values()) == 1
    shares = Counter(str(row["claimed_by"]) for row in ledger if row["status"] == DeliveryStatus.ACCEPTED)
    assert set(shares) == set(names) and min(shares.values()) >= 200, shares  # each sent at least a batch
    assert statuses[DeliveryStatus.IN_DOUBT] <= 2 * 200  # at most the killed worker's requests in flight
    print(f"\nshares {dict(shares)}; {statuses[DeliveryStatus.IN_DOUBT]} in doubt after the kill")
