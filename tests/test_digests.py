"""Recurring digests across real weeks (time-machine): the releases published since the previous digest, on
the cron's local time through a DST change, sent once, skipped when nothing is new."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
import time_machine

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from tests.conftest import CONFIG, run_cli, write_project

DIGEST = """\
digests:
  - name: weekly
    cron: "0 8 * * mon"
    timezone: America/Toronto
    to: [all]
"""


def _release(title: str, day: str) -> str:
    return f"---\ntitle: {title}\ndate: {day}\n---\nSPRINGFIELD, Ontario — {title}, Acme Instruments said today.\n"


def _digests(outbox: Path) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for path in sorted(outbox.glob("digest-*/*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        found.setdefault(path.parent.name, []).append(message)
    return found


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def project(tmp_path: Path, database_url: str | None) -> Path:
    config = write_project(tmp_path, {}, config=CONFIG + DIGEST, database=database_url)
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    return config


def _publish(project: Path, name: str, title: str, day: str) -> None:
    draft = project.parent / f"{name}.md"
    draft.write_text(_release(title, day), encoding="utf-8")
    queued = run_cli(project, "queue", str(draft), "--to", "all", "--at", "now")
    assert queued.exit_code == 0, queued.output
    ran = run_cli(project, "run", "--once")
    assert ran.exit_code == 0 and "4 accepted" in ran.output, ran.output


def test_a_weekly_digest_lists_the_weeks_releases_once_and_skips_an_empty_week(project: Path) -> None:
    outbox = load_settings(project).outbox_dir
    # Monday 2 March 08:30 EST: the first digest has nothing to list (the week before had no releases).
    with time_machine.travel("2026-03-02T13:30:00+00:00", tick=False):
        first = run_cli(project, "run", "--once")
    assert "digest weekly: nothing published since the last one; skipped" in first.output
    assert _digests(outbox) == {}
    with time_machine.travel("2026-03-03T15:00:00+00:00", tick=False):
        _publish(project, "a", "Acme Ships a Quantum Thermometer", "2026-03-03")
    with time_machine.travel("2026-03-05T20:00:00+00:00", tick=False):
        _publish(project, "b", "Acme Opens a Lab in Halifax", "2026-03-05")
    # Sunday after the change to summer time, and Monday 9 March 07:59 EDT: not yet.
    for moment in ("2026-03-08T16:00:00+00:00", "2026-03-09T11:59:00+00:00"):
        with time_machine.travel(moment, tick=False):
            assert "digest weekly" not in run_cli(project, "run", "--once").output
    assert _digests(outbox) == {}
    # 08:00 EDT is 12:00 UTC now (it was 13:00 UTC a week earlier): the digest goes at the local time.
    with time_machine.travel("2026-03-09T12:00:30+00:00", tick=False):
        sent = run_cli(project, "run", "--once")
    assert "digest weekly: 2 release(s)" in sent.output, sent.output
    (issue,) = _digests(outbox).values()
    assert sorted(m["To"].addresses[0].addr_spec for m in issue) == [
        "ana@example.com",
        "bo@example.test",
        "chloe@example.com",
        "dev@example.com",
    ]
    body = _text(issue[0])
    assert str(issue[0]["Subject"]).strip() == "Acme Instruments newsroom: 2 new releases"
    assert body.index("Acme Ships a Quantum Thermometer") < body.index("Acme Opens a Lab in Halifax")
    assert "https://news.acme.example.com/releases/2026-03-03-acme-ships-a-quantum-thermometer/" in body
    assert issue[0]["List-Unsubscribe"]  # a digest honours unsubscribes like any mailing
    # Later the same morning: the period is recorded, nothing is sent twice.
    with time_machine.travel("2026-03-09T12:10:00+00:00", tick=False):
        again = run_cli(project, "run", "--once")
    assert "digest weekly" not in again.output and sum(len(v) for v in _digests(outbox).values()) == 4
    # The next week lists only what was published since that digest.
    with time_machine.travel("2026-03-10T14:00:00+00:00", tick=False):
        _publish(project, "c", "Acme Wins a Design Award", "2026-03-10")
    with time_machine.travel("2026-03-16T12:05:00+00:00", tick=False):
        assert "digest weekly: 1 release(s)" in run_cli(project, "run", "--once").output
    issues = _digests(outbox)
    assert len(issues) == 2
    latest = _text(issues["digest-weekly-20260316t1200z"][0])
    assert "Acme Wins a Design Award" in latest and "Quantum Thermometer" not in latest
    # A week with nothing new is skipped.
    with time_machine.travel("2026-03-23T12:05:00+00:00", tick=False):
        assert "skipped" in run_cli(project, "run", "--once").output
    assert len(_digests(outbox)) == 2
    with time_machine.travel("2026-03-24T12:00:00+00:00", tick=False):
        listing = run_cli(project, "digests")
    assert "2026-03-30 08:00 EDT" in listing.output  # the next Monday, local time
    assert "skipped, nothing new" in listing.output and "1 release(s), distribution" in listing.output
    # Digests are never public: the newsroom lists only the three releases.
    feed = (load_settings(project).output_dir / "feed.xml").read_text(encoding="utf-8")
    assert feed.count("<item>") == 3 and "digest" not in feed


def test_a_digest_found_past_max_lateness_is_held(project: Path) -> None:
    with time_machine.travel("2026-03-03T15:00:00+00:00", tick=False):
        _publish(project, "a", "Acme Ships a Quantum Thermometer", "2026-03-03")
    with time_machine.travel("2026-03-09T15:30:00+00:00", tick=False):  # 3 h 30 after the digest's time
        ran = run_cli(project, "run", "--once")
        listing = run_cli(project, "distributions", "--status", "held")
    assert "digest weekly: 1 release(s)" in ran.output
    assert "digest" in listing.output and _digests(load_settings(project).outbox_dir) == {}


def test_a_digest_with_its_own_templates_and_subject(project: Path) -> None:
    config = project.read_text(encoding="utf-8").replace(
        "    to: [all]\n",
        '    to: [tech]\n    subject: "Acme & friends: {{ count }} this week"\n'
        "    html_template: weekly.html\n    text_template: weekly.txt\n",
    )
    project.write_text(config, encoding="utf-8")
    templates = project.parent / "templates"
    templates.mkdir()
    (templates / "weekly.txt").write_text(
        "{% for item in items %}* {{ item.title }}\n{% endfor %}Stop: {{ unsubscribe_url }}\n", encoding="utf-8"
    )
    (templates / "weekly.html").write_text(
        '<p>{% for item in items %}{{ item.title }} {% endfor %}<a href="{{ unsubscribe_url }}">stop</a></p>',
        encoding="utf-8",
    )
    with time_machine.travel("2026-03-03T15:00:00+00:00", tick=False):
        _publish(project, "a", "Acme Ships a Quantum Thermometer", "2026-03-03")
    with time_machine.travel("2026-03-09T12:01:00+00:00", tick=False):
        assert run_cli(project, "run", "--once").exit_code == 0
    (issue,) = _digests(load_settings(project).outbox_dir).values()
    assert sorted(m["To"].addresses[0].addr_spec for m in issue) == ["ana@example.com", "bo@example.test"]
    assert str(issue[0]["Subject"]).strip() == "Acme & friends: 1 this week"
    text = _text(issue[0]).replace("\r\n", "\n")
    assert text.startswith("* Acme Ships a Quantum Thermometer\n") and "/unsubscribe/" in text


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ("  - {name: weekly, cron: 'every monday'}\n", "digests.0.cron", "not a crontab expression"),
        ("  - {name: weekly, cron: '0 8 * * mon', to: [nobody]}\n", "digests.0.to", "unknown audience 'nobody'"),
        ("  - {name: Weekly Digest, cron: '0 8 * * mon'}\n", "digests.0.name", "should match pattern"),
        ("  - {name: w, cron: '0 8 * * mon', timezone: Mars/Base}\n", "digests.0.timezone", "unknown IANA time zone"),
    ],
)
def test_a_misconfigured_digest_names_its_key(tmp_path: Path, entry: str, key: str, words: str) -> None:
    config = write_project(tmp_path, {}, config=CONFIG + "digests:\n" + entry)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert key in str(caught.value) and words in str(caught.value)
