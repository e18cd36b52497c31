"""The command line, in-process and as a real process: outputs, idempotent runs, errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEED, needs_corpus, run_cli, write_project

ROOT = Path(__file__).resolve().parent.parent


def _pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_CONFIG", "PIPELINE_DEBUG")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


@needs_corpus
def test_parse_json_seed_as_a_real_process(tmp_path: Path) -> None:
    result = _pipeline("parse", "--json", str(SEED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data)[:13] == [
        "headline",
        "subheadline",
        "date",
        "dateline",
        "wire",
        "language",
        "embargo",
        "body",
        "quotes",
        "about",
        "contacts",
        "forward_looking_statements",
        "end_marker",
    ]
    assert (data["date"], data["dateline"], data["wire"]) == ("2021-03-23", "BROMONT, Québec", "BUSINESS WIRE")
    assert [a["name"] for a in data["about"]] == ["BIOQuébec", "BioForward Wisconsin"]
    assert len(data["quotes"]) == 3
    assert data["body"][0].startswith("BIOQuébec, Québec's largest network")


def test_parse_several_files_gives_a_list(project: Path) -> None:
    releases = project.parent / "releases"
    (releases / "two.md").write_text("---\nheadline: Two\n---\nBody text here.\n", encoding="utf-8")
    result = run_cli(project, "parse", "--json", str(releases / "acme.txt"), str(releases / "two.md"))
    data = json.loads(result.output)
    assert [d["headline"] for d in data] == ["Acme Instruments Ships Its First Quantum Thermometer", "Two"]
    readable = run_cli(project, "parse", str(releases / "acme.txt"))
    assert "Dana Whitfield" in readable.output and readable.exit_code == 0


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        (None, ("parse", "missing.txt"), "missing.txt: file not found"),
        ("undecodable", ("parse", "bad.txt"), "bad.txt"),
        ("frontmatter", ("parse", "broken.md"), "broken.md:2: front matter is not valid YAML"),
        ("badkey", ("run", "--once"), "config.yaml:3: transprt: unknown key"),
        ("nocsvemail", ("contacts", "import", "people.csv"), "people.csv:1: no 'email' column"),
        (None, ("report", "99"), "no distribution with id 99"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, setup: str | None, args: tuple[str, ...], expected: str) -> None:
    config = write_project(tmp_path)
    if setup == "undecodable":
        (tmp_path / "bad.txt").write_bytes(bytes(range(256)) * 4)
    elif setup == "frontmatter":
        (tmp_path / "broken.md").write_text("---\ntitle: [oops\n---\nText\n", encoding="utf-8")
    elif setup == "badkey":
        config.write_text(config.read_text().replace("transport:", "transprt:"), encoding="utf-8")
    elif setup == "nocsvemail":
        (tmp_path / "people.csv").write_text("name,outlet\nA,B\n", encoding="utf-8")
    result = _pipeline(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_run_once_twice_is_idempotent(project: Path) -> None:
    first = _pipeline("run", "--once", cwd=project.parent)
    assert first.returncode == 0, first.stderr
    assert "4 accepted" in first.stdout
    outbox = project.parent / "var" / "outbox"
    assert len(list(outbox.rglob("*.eml"))) == 4
    assert (project.parent / "public" / "feed.xml").exists()
    assert len(list((project.parent / "public" / "releases").glob("*/index.html"))) == 1
    second = _pipeline("run", "--once", cwd=project.parent)
    assert second.returncode == 0, second.stderr
    assert "Nothing new" in second.stdout
    assert len(list(outbox.rglob("*.eml"))) == 4


def test_contacts_queue_distributions_report_cancel(project: Path) -> None:
    imported = run_cli(project, "contacts", "import", str(project.parent / "contacts.csv"))
    assert "4 imported, 0 updated, 0 rejected" in imported.output
    listed = run_cli(project, "contacts", "list", "--audience", "tech")
    assert "ana@example.com" in listed.output and "chloe@example.com" not in listed.output
    release = project.parent / "releases" / "acme.txt"
    queued = run_cli(project, "queue", str(release), "--to", "tech", "--at", "2099-01-01 09:00")
    dist_id = int(queued.stdout.strip().splitlines()[-1])
    table = run_cli(project, "distributions")
    assert "scheduled" in table.output and "tech" in table.output
    report = json.loads(run_cli(project, "report", str(dist_id), "--json").output)
    assert report["distribution"] == dist_id
    assert report["counts"]["accepted"] == 0 and report["counts"]["pending"] == 0
    assert "cancelled" in run_cli(project, "cancel", str(dist_id)).output
    assert "cancelled" in run_cli(project, "distributions", "--status", "cancelled").output
    now = run_cli(project, "queue", str(release), "--to", "all", "--at", "now")
    now_id = int(now.stdout.strip().splitlines()[-1])
    run_cli(project, "run", "--once")
    sent = json.loads(run_cli(project, "report", str(now_id), "--json").output)
    assert sent["counts"]["accepted"] == 4


def test_queue_refuses_a_time_before_the_embargo(project: Path) -> None:
    release = project.parent / "releases" / "embargoed.md"
    release.write_text(
        "---\nheadline: Later\nembargo: 2099-05-01T09:00:00-04:00\n---\nText of the release.\n", encoding="utf-8"
    )
    result = run_cli(project, "queue", str(release), "--to", "all", "--at", "now")
    assert result.exit_code == 2
    assert "before the embargo" in result.output


def test_preview_writes_every_variant(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = run_cli(project, "preview", str(project.parent / "releases" / "acme.txt"), "--out", str(out))
    assert result.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "email.html",
        "email.txt",
        "feed-item.xml",
        "message.eml",
        "page.html",
    ]


def test_every_command_is_documented_in_the_readme() -> None:
    from pipeline.cli import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, command in cli.commands.items():
        assert f"pipeline {name}" in readme, name
        for sub in getattr(command, "commands", {}):
            assert f"pipeline {name} {sub}" in readme, f"{name} {sub}"
