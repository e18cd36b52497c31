"""Sending at scale: import N contacts from a CSV, queue one release to all of them, and send it through the
SendGrid transport to a local SendGrid-compatible server (or through SMTP to a local aiosmtpd relay).

    .venv/bin/python bench/send.py                          # SendGrid, 10,000 and 100,000 recipients
    .venv/bin/python bench/send.py --transport smtp --sizes 10000
    .venv/bin/python bench/send.py --database postgresql+psycopg://user@127.0.0.1/postgres --workers 1,3

Each phase runs in a process of its own, as `pipeline contacts import` and `pipeline run` would, so the peak
memory printed is that phase's alone (ru_maxrss). With `--workers 3`, three sending processes work the same
distribution at once (atomic claims), as three `pipeline run` would; the time is from the first one starting
to send to the last one finishing. With a PostgreSQL URL, each run gets a fresh database created beside the
one named (and dropped afterwards). The server runs in another process too. Prints figures, asserts nothing
except that the server received every recipient exactly once.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "SG.bench-key"
CONFIG = """\
database: {database}
timezone: America/Toronto
transport: {transport}
sender: {{from: newsroom@bench.example.com, name: Bench Newsroom}}
organization: {{name: Bench Co, postal_address: "1 Bench Road, Halifax, NS"}}
site: {{base_url: https://news.bench.example.com}}
unsubscribe: {{mailto: unsubscribe@bench.example.com}}
sendgrid: {{host: "{sendgrid}", timeout: 30, concurrency: {concurrency}}}
smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, connections: {concurrency}}}
"""
RELEASE = """\
FOR IMMEDIATE RELEASE

Bench Co Measures Its Own Mail Run
Every recipient once, in seconds

HALIFAX, Nova Scotia--(EXAMPLE WIRE)--March 3, 2026--Bench Co today sent one release to a very long list.

"Fast is good, exactly once is better," said Morgan Vale, chief executive officer of Bench Co.

About Bench Co

Bench Co makes benchmarks. Visit https://bench.example.com.

###
"""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_import(config: Path, csv_path: Path) -> dict[str, Any]:
    from pipeline.config import load_settings
    from pipeline.contacts import read_contacts
    from pipeline.runtime import Runtime

    rt = Runtime.open(load_settings(config))
    start = time.perf_counter()
    found = read_contacts(csv_path)
    new, _, _ = rt.store.save_contacts(found.contacts)
    seconds = time.perf_counter() - start
    rt.close()
    return {"seconds": seconds, "imported": new, "rejected": len(found.rejected), "peak_mb": _peak_mb()}


def child_queue(config: Path) -> dict[str, Any]:
    from pipeline.config import load_settings
    from pipeline.intake import queue_release
    from pipeline.parse import parse_release
    from pipeline.runtime import Runtime
    from pipeline.store import utcnow

    settings = load_settings(config)
    rt = Runtime.open(settings)
    release = parse_release(config.parent / "releases" / "bench.txt", settings.zone)
    dist_id, _ = queue_release(rt.store, settings, release, ("all",), utcnow(), settings.timezone)
    rt.close()
    return {"distribution": dist_id}


def child_send(config: Path, dist_id: int) -> dict[str, Any]:
    from pipeline.config import load_settings
    from pipeline.runtime import Runtime
    from pipeline.send import Dispatcher

    settings = load_settings(config)
    rt = Runtime.open(settings)
    transport = rt.transport()
    dispatcher = Dispatcher(settings, rt.store, transport, rt.renderer, rt.links)
    began, start, cpu = time.time(), time.perf_counter(), time.process_time()
    report = dispatcher.dispatch(dist_id)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rt.close()
    return {
        "began": began,
        "ended": began + seconds,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "accepted": report.accepted,
        "failed": report.failed,
        "in_doubt": report.in_doubt,
        "requests": getattr(transport, "requests", None),
        "connections": getattr(transport, "connections", None),
        "peak_mb": _peak_mb(),
    }


def _children(*commands: list[str]) -> list[dict[str, Any]]:
    """Run bench children at once, each in a process of its own; their JSON answers, in order."""
    import os

    env = os.environ | {"SENDGRID_API_KEY": API_KEY, "PIPELINE_SECRET": "bench-secret"}
    running = [
        subprocess.Popen(
            [sys.executable, __file__, *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    results = []
    for process in running:
        out, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"bench child failed:\n{err}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _child(*args: str) -> dict[str, Any]:
    return _children(list(args))[0]


class _Database:
    """The database of one run: a fresh SQLite file, or a fresh database beside the PostgreSQL one named."""

    def __init__(self, url: str | None, folder: Path) -> None:
        self.admin, self.name = None, None
        if url is None or url.startswith("sqlite"):
            self.url = url or f"sqlite:///{folder / 'bench.db'}"
            return
        import uuid

        import sqlalchemy as sa

        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as db:
            db.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = sa.engine.make_url(url).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin is not None:
            import sqlalchemy as sa

            with self.admin.connect() as db:
                db.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.admin.dispose()


def _write_csv(path: Path, size: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,name,outlet,beats\n")
        for i in range(size):
            handle.write(f"reader{i:07d}@example.com,Reader {i},Outlet {i % 500},technology\n")


class _Server:
    """The far end, in a process of its own so it does not share the sender's CPU time slices and GIL."""

    def __init__(self, transport: str) -> None:
        module = "tools.fake_sendgrid" if transport == "sendgrid" else "tools.fake_smtp"
        args = ["--port", "0", "--api-key", API_KEY] if transport == "sendgrid" else ["--port", str(_free_port())]
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.transport = transport

    def received(self) -> dict[str, int]:
        if self.transport == "sendgrid":
            import urllib.request

            with urllib.request.urlopen(f"{self.url}/__accepted", timeout=60) as answer:
                counts: dict[str, int] = json.loads(answer.read())
                return counts
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        while not line.strip().isdigit():
            line = self.process.stdout.readline()
        return {"total": int(line)}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(args: argparse.Namespace, server: _Server, port: str, size: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "releases").mkdir()
        (folder / "releases" / "bench.txt").write_text(RELEASE, encoding="utf-8")
        database = _Database(args.database, folder)
        try:
            config = folder / "config.yaml"
            config.write_text(
                CONFIG.format(
                    database=database.url,
                    transport=args.transport,
                    sendgrid=server.url,
                    smtp_port=port,
                    concurrency=args.concurrency,
                ),
                encoding="utf-8",
            )
            _write_csv(folder / "contacts.csv", size)
            before = sum(server.received().values())
            imported = _child("--child", "import", "--config", str(config), "--csv", str(folder / "contacts.csv"))
            dist = _child("--child", "queue", "--config", str(config))["distribution"]
            send = ["--child", "send", "--config", str(config), "--distribution", str(dist)]
            sent = _children(*([*send] for _ in range(workers)))
        finally:
            database.drop()
    received = sum(server.received().values()) - before
    seconds = max(s["ended"] for s in sent) - min(s["began"] for s in sent)
    accepted = sum(s["accepted"] for s in sent)
    key = "requests" if args.transport == "sendgrid" else "connections"
    requests = sum(s[key] or 0 for s in sent)
    peak = max(s["peak_mb"] for s in sent)
    shares = "/".join(str(s["accepted"]) for s in sent)
    print(
        f"{size:>10,} {workers:>7} {imported['seconds']:>9.2f} {seconds:>7.2f} {accepted / seconds:>12,.0f} "
        f"{requests!s:>8} {max(imported['peak_mb'], peak):>8.0f}"
        f"   (import peak {imported['peak_mb']:.0f} MB, send peak {peak:.0f} MB per process;"
        f" sender CPU {sum(s['cpu_seconds'] for s in sent):.2f} s; shares {shares})"
    )
    if received != size or accepted != size:
        print(f"  !! server received {received}, ledger accepted {accepted} of {size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["sendgrid", "smtp"], default="sendgrid")
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated list sizes.")
    parser.add_argument("--database", help="A database URL (default: a fresh SQLite file per size).")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="Requests (SendGrid) or connections (SMTP) in flight at once."
    )
    parser.add_argument("--workers", default="1", help="Comma-separated numbers of sending processes to try.")
    parser.add_argument("--child", choices=["import", "queue", "send"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--distribution", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "import":
        print(json.dumps(child_import(args.config, args.csv)))
        return
    if args.child == "queue":
        print(json.dumps(child_queue(args.config)))
        return
    if args.child == "send":
        print(json.dumps(child_send(args.config, args.distribution)))
        return

    server = _Server(args.transport)
    port = server.url.rsplit(":", 1)[1]
    engine = "SQLite" if not args.database or args.database.startswith("sqlite") else "PostgreSQL"
    print(f"transport: {args.transport} → local server {server.url} (own process); database: {engine}")
    header = (
        f"{'recipients':>10} {'workers':>7} {'import s':>9} {'send s':>7} {'recipients/s':>12} {'requests':>8} "
        f"{'peak MB':>8}"
    )
    print(header)
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            for workers in (int(w) for w in args.workers.split(",")):
                _run(args, server, port, size, workers)
    finally:
        server.stop()
    if args.transport == "smtp":
        print("(for smtp the 'requests' column is SMTP connections opened)")


if __name__ == "__main__":
    main()
