"""Kill -9 at random moments: a real `pipeline run --once` process sending a large distribution through the
SendGrid transport to a local SendGrid-compatible server is killed 30 times and restarted each time.

At the end every recipient was accepted by the server exactly once (those the ledger holds in doubt, at most
once), the ledger agrees with the server, and nothing is left pending."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import load_settings
from pipeline.models import DeliveryStatus
from pipeline.runtime import Runtime
from tests.conftest import write_project
from tests.transport_rig import API_KEY, many_contacts
from tools.fake_sendgrid import FakeSendGrid, Faults

RECIPIENTS = 20_000
KILLS = 30
PIPELINE = [sys.executable, "-m", "pipeline"]


def _config(server_url: str) -> str:
    from tests.conftest import CONFIG

    return (
        CONFIG.replace("transport: outbox", "transport: sendgrid").replace("  sources: [contacts.csv]", "  sources: []")
        + f"sendgrid:\n  host: {server_url}\n  timeout: 5\nsend:\n  batch_size: 100\n  lease: 60s\n"
    )


def _start(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PIPELINE, "--config", str(config), "run", "--once"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_kill_9_at_random_moments_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261126")))
    # Every answer takes a little while, so kills land mid-request as well as between database writes.
    faults = Faults(slow=1.0, slow_seconds=0.02)
    with FakeSendGrid(API_KEY, faults=faults, keep_messages=False) as server:
        config = write_project(tmp_path, config=_config(server.url))
        settings = load_settings(config)
        setup = Runtime.open(settings)  # creates the database; the contacts are imported once, up front
        setup.store.save_contacts(many_contacts(RECIPIENTS))  # contacts.csv is not a source here
        setup.close()
        env = os.environ | {"SENDGRID_API_KEY": API_KEY, "PIPELINE_SECRET": "crash-test-secret"}

        kills = 0
        finished_early = 0
        while kills < KILLS:
            before = server.requests
            process = _start(config, env)
            if rng.random() < 0.7:  # most kills while sending: after its first request, a random moment on
                deadline = time.monotonic() + 30
                while server.requests == before and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.15))
            else:  # the rest at any moment from start-up on (imports, migrations, intake, snapshot, claims)
                time.sleep(rng.uniform(0, 1.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            else:
                finished_early += 1
                assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""
            process.wait()
            if process.stderr:
                process.stderr.close()
            assert finished_early < 5, "the distribution finished before it could be killed 30 times"

        final = _start(config, env)  # and one run left alone to finish the job
        _, errors = final.communicate(timeout=120)
        assert final.returncode == 0, errors.decode()

        rt = Runtime.open(settings)
        (dist,) = rt.store.distributions()
        ledger = rt.store.deliveries_of(dist.id)
        rt.close()
        counts = server.counts()

    assert kills == KILLS
    assert len(ledger) == RECIPIENTS
    statuses = {str(row["status"]) for row in ledger}
    assert statuses <= {DeliveryStatus.ACCEPTED, DeliveryStatus.IN_DOUBT}, statuses  # nothing left pending
    in_doubt = 0
    for row in ledger:
        held = counts.get(str(row["address"]), 0)
        if row["status"] == DeliveryStatus.ACCEPTED:
            assert held == 1, row
        else:
            in_doubt += 1
            assert held <= 1, row
    assert set(counts) <= {str(row["address"]) for row in ledger}
    assert all(n == 1 for n in counts.values())
    print(
        f"\n{KILLS} kills; {len(ledger) - in_doubt} accepted exactly once, {in_doubt} in doubt (each sent at most once)"
    )
