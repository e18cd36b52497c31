"""A real PostgreSQL server for the tests, started on loopback from Debian's binaries in a throwaway folder.

As root the server runs as the unprivileged `postgres` user (PostgreSQL refuses to run as root). fsync is off:
the tests check the pipeline's logic, not the disk. Each test gets a database of its own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tools.fake_smtp import free_port

SUPERUSER = "pipeline"
PREFIX = "pipeline-pg-"


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def available() -> bool:
    return _bindir() is not None


@dataclass
class PgServer:
    bindir: Path
    folder: Path
    port: int
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        """Stop (ending every connection) and start again on the same port, as `systemctl restart` does."""
        self.stop("fast")
        self.start()

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres", autocommit=True
        ) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(bindir: Path) -> None:
    """Stop servers that earlier test runs left behind (a run killed before its teardown) and remove them."""
    for folder in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        owner = folder / "owner.pid"
        try:
            pid = int(owner.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        run_as = "postgres" if os.geteuid() == 0 else None
        PgServer(bindir, folder, 0, run_as).stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def start_server() -> PgServer:
    """A fresh server, stopped by stop_server, or at exit, or by the next run's sweep if this one is killed."""
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    sweep_stale(bindir)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    run_as = "postgres" if os.geteuid() == 0 else None
    if run_as:
        shutil.chown(folder, user=run_as)
    server = PgServer(bindir, folder, free_port(), run_as)
    (folder / "owner.pid").write_text(str(os.getpid()), encoding="utf-8")
    server._run("initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
    server.start()
    atexit.register(stop_server, server)
    return server


def stop_server(server: PgServer) -> None:
    if server.folder.exists():
        server.stop("immediate")
        shutil.rmtree(server.folder, ignore_errors=True)
