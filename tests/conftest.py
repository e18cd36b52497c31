"""Shared fixtures: a throwaway project folder (config.yaml, releases, contacts) on a temp SQLite file."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.config import Settings, load_settings
from pipeline.runtime import Runtime
from pipeline.schedule import JOB_TABLE, SweepReport, Worker
from tests import pg_server
from tests.pg_server import PgServer

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
SEED = CORPUS / "releases" / "000-seed-bioquebec.txt"

CONFIG = """\
database: sqlite:///var/test.db
timezone: America/Toronto
transport: outbox
outbox:
  dir: var/outbox
sender:
  from: newsroom@acme.example.com
  name: Acme Newsroom
  reply_to: press@acme.example.com
organization:
  name: Acme Instruments
  postal_address: 1 Test Road, Springfield, ON K0K 0K0, Canada
site:
  base_url: https://news.acme.example.com
  output_dir: public
releases:
  dir: releases
  default_audiences: [all]
contacts:
  sources: [contacts.csv]
audiences:
  all: {}
  tech:
    beats: [technology]
  french:
    languages: [fr]
schedule:
  max_lateness: 2h
unsubscribe:
  mailto: unsubscribe@acme.example.com
"""

CONTACTS = """\
email,name,outlet,beats,regions,language,consent_basis,consent_source,consent_date
ana@example.com,Ana Lima,Daily Planet,technology;science,ontario,en,express,conference 2026,2026-01-10
bo@example.test,Bo Chen,Tech Times,technology,quebec,en,implied-published,masthead,2026-02-01
chloe@example.com,Chloé Roy,La Gazette,business,quebec,fr,business-relationship,,
dev@example.com,Dev Patel,Business Weekly,business;finance,national,en,,,
"""

WIRE_RELEASE = """\
FOR IMMEDIATE RELEASE

Acme Instruments Ships Its First Quantum Thermometer
The sensor reads temperatures to a millionth of a degree

SPRINGFIELD, Ontario--(EXAMPLE WIRE)--March 3, 2026--Acme Instruments today shipped its first quantum thermometer to three university laboratories.

"Precision at this level used to need a room full of equipment," said Dana Whitfield, chief executive officer of Acme Instruments.

The thermometer fits in a shoebox and runs on a laptop.

About Acme Instruments

Acme Instruments builds measuring tools for science labs. Visit https://acme.example.com.

###

Media contact:
Riley Stone
riley.stone@acme.example.com
+1 555-010-0199
"""


def write_project(
    root: Path, releases: dict[str, str] | None = None, config: str = CONFIG, database: str | None = None
) -> Path:
    """A project folder: config.yaml (on `database` instead of its SQLite file, if given), releases, contacts."""
    (root / "releases").mkdir(parents=True, exist_ok=True)
    if database:
        config = re.sub(r"(?m)^database: .*$", f"database: {database}", config)
    (root / "config.yaml").write_text(config, encoding="utf-8")
    (root / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    for name, text in (releases if releases is not None else {"acme.txt": WIRE_RELEASE}).items():
        (root / "releases" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "config.yaml"


# Test modules whose store, dispatch and scheduling tests run on both engines: SQLite and a real PostgreSQL
# server the tests start on loopback (tests/pg_server.py).
BOTH_ENGINES = {
    "test_store",
    "test_send",
    "test_schedule",
    "test_leader",
    "test_transports",
    "test_sendgrid",
    "test_embargo_lift",
    "test_digests",
    "test_queue_cli",
    "test_translations",
    "test_web",
    "test_postgres",
    "test_workers",
    "test_contacts",
    "test_ingest",
    "test_partner_polling",
    "test_previews",
    "test_smtp",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        metafunc.parametrize("backend", ["sqlite", "postgresql"] if module in BOTH_ENGINES else ["sqlite"])


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole run, started on first use."""
    if not pg_server.available():
        if os.environ.get("CI"):
            raise RuntimeError(
                "PostgreSQL is not installed: `make test` installs it as root (apt-get install postgresql)"
            )
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = pg_server.start_server()
    yield server
    pg_server.stop_server(server)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for the project's SQLite file; else a fresh database on the test PostgreSQL server."""
    if backend == "sqlite":
        return None
    server: PgServer = request.getfixturevalue("pg")
    return server.create_database()


@pytest.fixture
def project(tmp_path: Path, database_url: str | None) -> Path:
    """A project folder with config.yaml, one wire release and four contacts; returns the config path."""
    return write_project(tmp_path, database=database_url)


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings)
    yield rt
    rt.close()


def run_cli(config: Path, *args: str, input: str | None = None) -> Result:
    """Run a command in-process, as `pipeline --config CONFIG ARGS`."""
    return CliRunner(env={"COLUMNS": "200"}).invoke(
        cli, ["--config", str(config), *args], input=input, catch_exceptions=False
    )


def start_worker(runtime: Runtime) -> tuple[Worker, threading.Thread]:
    """A scheduling worker (`pipeline run`) on a thread of this process, back once its start-up sweep ran."""
    worker = Worker(runtime)
    started: list[SweepReport] = []
    thread = threading.Thread(target=worker.run_forever, kwargs={"on_start": started.append}, daemon=True)
    thread.start()
    wait_until(lambda: bool(started), 20, "the start-up sweep")
    return worker, thread


def scheduler_jobs(runtime: Runtime) -> dict[str, float]:
    """APScheduler's persistent jobs: id → next run (seconds since the epoch)."""
    with runtime.store.engine.begin() as db:
        rows = db.execute(sa.text(f"SELECT id, next_run_time FROM {JOB_TABLE}")).all()
    return {str(job): float(when) for job, when in rows}


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait for another thread or process to reach a state (not for time to pass), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


needs_corpus = pytest.mark.skipif(not SEED.exists(), reason="../shared/corpus is not beside the project")


def copy_seed(dest: Path) -> Path:
    target = dest / SEED.name
    shutil.copy(SEED, target)
    return target
