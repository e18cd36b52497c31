"""Embargoed previews: before the embargo, only to trusted contacts, labelled; nothing public until it lifts."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path

import pytest
import time_machine

from pipeline.config import load_settings
from tests.conftest import run_cli, write_project

RELEASE = """\
---
title: Acme Names a New Chief Scientist
date: 2026-03-10
embargo: 2026-03-10T09:00:00-04:00
---
SPRINGFIELD, Ontario — Acme Instruments named a new chief scientist.
"""
CONTACTS = """\
email,name,language,embargo_trusted
ana@example.com,Ana Lima,en,yes
bo@example.test,Bo Chen,en,no
chloe@example.com,Chloé Roy,fr,
"""
BEFORE = "2026-03-09T12:00:00+00:00"
AFTER = "2026-03-10T13:05:00+00:00"  # five minutes after the embargo (09:00 EDT)


def _messages(outbox: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted(outbox.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        found.append((message["To"].addresses[0].addr_spec, str(message["Subject"]).strip()))  # folded: leading space
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    config = write_project(tmp_path, {"news.md": RELEASE})
    (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    return config


def test_a_preview_reaches_only_trusted_contacts_and_the_release_follows_at_the_embargo(project: Path) -> None:
    settings = load_settings(project)
    page = settings.output_dir / "releases" / "2026-03-10-acme-names-a-new-chief-scientist" / "index.html"
    with time_machine.travel(BEFORE, tick=False):
        assert run_cli(project, "run", "--once").exit_code == 0  # imports contacts, queues the release itself
        queued = run_cli(project, "queue", str(project.parent / "releases" / "news.md"), "--to", "all", "--preview")
        assert queued.exit_code == 0 and "an embargoed preview of" in queued.output and "(1 contacts)" in queued.output
        assert run_cli(project, "run", "--once").exit_code == 0
        assert _messages(settings.outbox_dir) == [
            ("ana@example.com", "EMBARGOED UNTIL 09:00 EDT, March 10, 2026: Acme Names a New Chief Scientist")
        ]
        assert not page.exists()  # nothing public before the embargo
        assert "Chief Scientist" not in (settings.output_dir / "feed.xml").read_text(encoding="utf-8")
    with time_machine.travel(AFTER, tick=False):
        assert run_cli(project, "run", "--once").exit_code == 0
        subjects = _messages(settings.outbox_dir)
    released = [to for to, subject in subjects if subject == "Acme Names a New Chief Scientist"]
    assert sorted(released) == ["ana@example.com", "bo@example.test", "chloe@example.com"]  # ana twice in all
    assert page.exists()


def test_a_preview_must_come_before_the_embargo(project: Path) -> None:
    with time_machine.travel(AFTER, tick=False):
        late = run_cli(project, "queue", str(project.parent / "releases" / "news.md"), "--to", "all", "--preview")
    assert late.exit_code == 2 and "must go out before the release's embargo" in late.output
    no_embargo = project.parent / "releases" / "plain.md"
    no_embargo.write_text(RELEASE.replace("embargo: 2026-03-10T09:00:00-04:00\n", ""), encoding="utf-8")
    with time_machine.travel(BEFORE, tick=False):
        refused = run_cli(project, "queue", str(no_embargo), "--to", "all", "--preview")
    assert refused.exit_code == 2 and "this release has no embargo" in refused.output


def test_a_preview_not_sent_when_the_embargo_lifts_is_held(project: Path) -> None:
    with time_machine.travel(BEFORE, tick=False):
        queued = run_cli(
            project,
            "queue",
            str(project.parent / "releases" / "news.md"),
            "--to",
            "all",
            "--preview",
            "--at",
            "2026-03-10 08:30",
        )
        dist_id = queued.stdout.strip().splitlines()[-1]
    with time_machine.travel(AFTER, tick=False):
        run_cli(project, "run", "--once")
        shown = run_cli(project, "show", dist_id).output
    assert "held" in shown and "embargo has lifted" in shown
    subjects = [s for _, s in _messages(load_settings(project).outbox_dir)]
    assert not any(s.startswith("EMBARGOED") for s in subjects)
