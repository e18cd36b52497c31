"""PostgreSQL only: the server restarted in the middle of a send; the schema's own command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from pipeline.config import load_settings
from pipeline.models import DeliveryStatus, DistributionStatus
from pipeline.runtime import Runtime
from tests.conftest import run_cli, wait_until, write_project
from tests.pg_server import PgServer
from tests.test_workers import RELEASE, _config
from tests.transport_rig import API_KEY, many_contacts
from tools.fake_sendgrid import FakeSendGrid, Faults

RECIPIENTS = 10_000


def test_a_database_restart_mid_send_is_survived_and_nothing_is_sent_twice(tmp_path: Path, pg: PgServer) -> None:
    with FakeSendGrid(API_KEY, faults=Faults(slow=1.0, slow_seconds=0.05), keep_messages=False) as server:
        config = write_project(tmp_path, {}, config=_config(server.url), database=pg.create_database())
        settings = load_settings(config)
        runtime = Runtime.open(settings)
        runtime.store.save_contacts(many_contacts(RECIPIENTS))
        draft = tmp_path / "open.md"
        draft.write_text(RELEASE, encoding="utf-8")
        assert run_cli(config, "queue", str(draft), "--to", "all", "--at", "now").exit_code == 0
        (dist,) = runtime.store.distributions()
        env = os.environ | {"SENDGRID_API_KEY": API_KEY, "PIPELINE_SECRET": "pg-restart-secret"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--config", str(config), "run"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.log").open("wb"),
        )
        try:
            wait_until(lambda: server.requests >= 10, 60, "the send to be under way")
            pg.restart()  # every connection of the worker (and ours) is cut in the middle of its work
            restarted_at = server.requests
            wait_until(
                lambda: runtime.store.distribution(dist.id).status is DistributionStatus.SENT, 120, "the send to finish"
            )
            assert worker.poll() is None, "the worker died with the database"
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        ledger = runtime.store.deliveries_of(dist.id)
        counts = server.counts()
    runtime.close()
    assert restarted_at < RECIPIENTS // 200, "the restart came after the send had finished"
    assert Counter(str(row["status"]) for row in ledger) == {DeliveryStatus.ACCEPTED: RECIPIENTS}
    assert len(counts) == RECIPIENTS and set(counts.values()) == {1}
    assert "database unavailable" in (tmp_path / "worker.log").read_text(encoding="utf-8")


def test_db_status_and_upgrade_on_postgresql(tmp_path: Path, pg: PgServer) -> None:
    url = pg.create_database()
    config = write_project(tmp_path, {}, database=url)
    assert run_cli(config, "db", "status").exit_code == 1  # an empty database needs the upgrade
    upgraded = run_cli(config, "db", "upgrade")
    assert upgraded.exit_code == 0 and "upgraded from revision none" in upgraded.output
    assert "already up to date" in run_cli(config, "db", "upgrade").output
    status = run_cli(config, "db", "status")
    assert status.exit_code == 0 and "up to date" in status.output
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    newer = run_cli(config, "db", "status")
    assert newer.exit_code == 2 and "newer than this version of pipeline" in newer.output
    refused = run_cli(config, "distributions")
    assert refused.exit_code == 2 and "newer than this version of pipeline" in refused.output
