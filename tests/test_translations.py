"""A release in several languages: each contact gets the version in their language, once, whichever version."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.intake import queue_release
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from pipeline.store import utcnow
from tests.conftest import run_cli, write_project

ENGLISH = """\
---
title: Acme Opens a Lab in Quebec
date: 2026-03-03
language: en
---
SPRINGFIELD, Ontario, March 3, 2026 — Acme Instruments opened a measurement lab in Quebec City today.

About Acme Instruments

Acme Instruments builds measuring tools for science labs.
"""

FRENCH = """\
---
title: Acme ouvre un laboratoire au Québec
date: 2026-03-03
language: fr
translation_of: 2026-03-03-acme-opens-a-lab-in-quebec
---
MONTRÉAL, le 3 mars 2026 — Acme Instruments a ouvert aujourd'hui un laboratoire de mesure à Québec.

À propos d'Acme Instruments

Acme Instruments fabrique des instruments de mesure pour les laboratoires.
"""


def _subjects(outbox: Path) -> dict[str, str]:
    found = {}
    for path in outbox.rglob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        found[message["To"].addresses[0].addr_spec] = str(message["Subject"])
    return found


@pytest.fixture
def bilingual(tmp_path: Path, database_url: str | None) -> Path:
    return write_project(tmp_path, {"lab.md": ENGLISH, "lab.fr.md": FRENCH}, database=database_url)


def test_each_contact_gets_the_version_in_their_language(bilingual: Path) -> None:
    result = run_cli(bilingual, "run", "--once")
    assert result.exit_code == 0, result.output
    settings = load_settings(bilingual)
    subjects = _subjects(settings.outbox_dir)
    assert subjects == {
        "ana@example.com": "Acme Opens a Lab in Quebec",
        "bo@example.test": "Acme Opens a Lab in Quebec",
        "chloe@example.com": "Acme ouvre un laboratoire au Québec",  # language: fr
        "dev@example.com": "Acme Opens a Lab in Quebec",
    }
    runtime = Runtime.open(settings)
    assert len(runtime.store.distributions()) == 1  # the translation is not queued on its own
    # Both versions are public: a page each.
    assert (settings.output_dir / "releases" / "2026-03-03-acme-opens-a-lab-in-quebec" / "index.html").exists()
    assert (settings.output_dir / "releases" / "2026-03-03-acme-ouvre-un-laboratoire-au-quebec" / "index.html").exists()
    runtime.close()


def test_a_second_distribution_sends_no_one_either_version_again(bilingual: Path) -> None:
    assert run_cli(bilingual, "run", "--once").exit_code == 0
    settings = load_settings(bilingual)
    runtime = Runtime.open(settings)
    english = parse_release(bilingual.parent / "releases" / "lab.md", settings.zone)
    again, _ = queue_release(runtime.store, settings, english, ("french", "tech"), utcnow(), "UTC")
    assert again is not None
    report = runtime.dispatcher().dispatch(again)
    assert (report.recipients, report.accepted) == (0, 0)
    assert len(list(settings.outbox_dir.rglob("*.eml"))) == 4
    runtime.close()


def test_a_filtered_audience_also_gets_each_language(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        {"lab.md": ENGLISH.replace("language: en\n", "language: en\naudiences: [french]\n"), "lab.fr.md": FRENCH},
    )
    assert run_cli(project, "run", "--once").exit_code == 0
    subjects = _subjects(load_settings(project).outbox_dir)
    assert subjects == {"chloe@example.com": "Acme ouvre un laboratoire au Québec"}


def test_a_translation_is_never_queued_on_its_own(bilingual: Path) -> None:
    assert run_cli(bilingual, "run", "--once").exit_code == 0
    settings = load_settings(bilingual)
    result = run_cli(bilingual, "queue", str(bilingual.parent / "releases" / "lab.fr.md"), "--to", "all")
    assert result.exit_code == 2 and "is a translation of '2026-03-03-acme-opens-a-lab-in-quebec'" in result.output
    assert len(list(settings.outbox_dir.rglob("*.eml"))) == 4


def test_a_translation_of_an_unknown_release_is_reported(tmp_path: Path) -> None:
    orphan = FRENCH.replace("translation_of: 2026-03-03-acme-opens-a-lab-in-quebec", "translation_of: no-such-slug")
    project = write_project(tmp_path, {"lab.md": ENGLISH, "orphan.fr.md": orphan})
    result = run_cli(project, "run", "--once")
    assert "translation_of 'no-such-slug': no release has that slug" in result.output


def test_an_opt_out_from_a_translations_category_is_honoured(tmp_path: Path) -> None:
    from pipeline.store import address_hash

    english = ENGLISH.replace("language: en\n", "language: en\ncategories: [Labs]\n")
    french = FRENCH.replace("language: fr\n", "language: fr\ncategories: [Laboratoires]\n")
    project = write_project(tmp_path, {"lab.md": english, "lab.fr.md": french})
    settings = load_settings(project)
    runtime = Runtime.open(settings)
    runtime.store.opt_out(address_hash("chloe@example.com"), "Laboratoires")
    runtime.close()
    assert run_cli(project, "run", "--once").exit_code == 0
    assert "chloe@example.com" not in _subjects(settings.outbox_dir)
    assert len(_subjects(settings.outbox_dir)) == 3
