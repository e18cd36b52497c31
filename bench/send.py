"""Sending at scale: import N contacts from a CSV, queue one release to all of them, and send it through the
SendGrid transport to a local SendGrid-compatible server (or through SMTP to a local aiosmtpd relay).

    .venv/bin/python bench/send.py                          # SendGrid, 10,000 and 100,000 recipients
    .venv/bin/python bench/send.py --transport smtp --sizes 10000
    .venv/bin/python bench/send.py --database postgresql+psycopg://user@127.0.0.1/bench

Each phase runs in a process of its own, as `pipeline contacts import` and `pipeline run` would, so the peak
memory printed is that phase's alone (ru_maxrss). The server runs in another process too. Prints figures,
asserts nothing except that the server received every recipient exactly once.
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


def child_send(config: Path) -> dict[str, Any]:
    from pipeline.config import load_settings
    from pipeline.intake import queue_release
    from pipeline.parse import parse_release
    from pipeline.runtime import Runtime
    from pipeline.store import utcnow

    settings = load_settings(config)
    rt = Runtime.open(settings)
    release = parse_release(config.parent / "releases" / "bench.txt", settings.zone)
    dist_id, _ = queue_release(rt.store, settings, release, ("all",), utcnow(), settings.timezone)
    assert dist_id is not None
    transport = rt.transport()
    from pipeline.send import Dispatcher

    dispatcher = Dispatcher(settings, rt.store, transport, rt.renderer, rt.links)
    start, cpu = time.perf_counter(), time.process_time()
    report = dispatcher.dispatch(dist_id)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rt.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "accepted": report.accepted,
        "failed": report.failed,
        "in_doubt": report.in_doubt,
        "requests": getattr(transport, "requests", None),
        "connections": getattr(transport, "connections", None),
        "peak_mb": _peak_mb(),
    }


def _child(*args: str) -> dict[str, Any]:
    env_key = {"SENDGRID_API_KEY": API_KEY, "PIPELINE_SECRET": "bench-secret"}
    import os

    out = subprocess.run(
        [sys.executable, __file__, *args], env=os.environ | env_key, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"bench child failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["sendgrid", "smtp"], default="sendgrid")
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated list sizes.")
    parser.add_argument("--database", help="A database URL (default: a fresh SQLite file per size).")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="Requests (SendGrid) or connections (SMTP) in flight at once."
    )
    parser.add_argument("--child", choices=["import", "send"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "import":
        print(json.dumps(child_import(args.config, args.csv)))
        return
    if args.child == "send":
        print(json.dumps(child_send(args.config)))
        return

    server = _Server(args.transport)
    port = server.url.rsplit(":", 1)[1]
    print(f"transport: {args.transport} → local server {server.url} (own process)")
    header = f"{'recipients':>10} {'import s':>9} {'send s':>7} {'recipients/s':>12} {'requests':>8} {'peak MB':>8}"
    print(header)
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as scratch:
                folder = Path(scratch)
                (folder / "releases").mkdir()
                (folder / "releases" / "bench.txt").write_text(RELEASE, encoding="utf-8")
                database = args.database or f"sqlite:///{folder / 'bench.db'}"
                config = folder / "config.yaml"
                config.write_text(
                    CONFIG.format(
                        database=database,
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
                sent = _child("--child", "send", "--config", str(config))
                received = sum(server.received().values()) - before
                requests = sent["requests"] if args.transport == "sendgrid" else sent["connections"]
                print(
                    f"{size:>10,} {imported['seconds']:>9.2f} {sent['seconds']:>7.2f} "
                    f"{sent['accepted'] / sent['seconds']:>12,.0f} {requests!s:>8} "
                    f"{max(imported['peak_mb'], sent['peak_mb']):>8.0f}"
                    f"   (import peak {imported['peak_mb']:.0f} MB, send peak {sent['peak_mb']:.0f} MB;"
                    f" sender CPU {sent['cpu_seconds']:.2f} s)"
                )
                if received != size or sent["accepted"] != size:
                    print(f"  !! server received {received}, ledger accepted {sent['accepted']} of {size}")
    finally:
        server.stop()
    if args.transport == "smtp":
        print("(for smtp the 'requests' column is SMTP connections opened)")


if __name__ == "__main__":
    main()
