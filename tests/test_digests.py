"""Recurring digests across real weeks (time-machine): the releases published since the previous digest, on
the cron's local time through a DST change, sent once, skipped when nothing is new."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from apscheduler.triggers.cron import CronTrigger

from pipeline.config import load_settings
from pipeline.digest import make_due_digests, previous_fire
from pipeline.errors import ConfigError
from pipeline.models import Release
from pipeline.runtime import Runtime
from tests.conftest import CONFIG, run_cli, scheduler_jobs, start_worker, wait_until, write_project

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


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cron", ["30 1 * * *", "*/15 * * * *", "0 * * * *", "30 1 * * sun", "30 2 * * *", "0 8 1 * *"])
@pytest.mark.parametrize(
    "moment",
    [
        "2026-11-01T05:45:00+00:00",
        "2026-11-01T06:45:00+00:00",
        "2026-11-01T12:00:00+00:00",
        "2026-03-08T07:45:00+00:00",
    ],
)
def test_the_latest_cron_time_is_found_across_daylight_saving_changes(cron: str, moment: str) -> None:
    """Toronto's repeated hour (1–2 a.m. on 1 November 2026) and skipped hour (2–3 a.m. on 8 March)."""
    trigger = CronTrigger.from_crontab(cron, timezone="America/Toronto")
    at = datetime.fromisoformat(moment)
    found = previous_fire(trigger, at)
    assert found is not None and found <= at
    following = trigger.get_next_fire_time(found, found.astimezone(UTC) + timedelta(microseconds=1))
    assert following is not None
    local = found.astimezone(ZoneInfo("America/Toronto"))
    # Nothing the cron names lies between the one found and `at`, except the repeat of the same wall time.
    assert following > at or following.astimezone(ZoneInfo("America/Toronto")).replace(tzinfo=None) == local.replace(
        tzinfo=None
    )


def test_a_daily_digest_goes_once_on_the_day_the_clocks_go_back(tmp_path: Path, database_url: str | None) -> None:
    config = write_project(
        tmp_path,
        {},
        config=CONFIG + DIGEST.replace('"0 8 * * mon"', '"30 1 * * *"').replace("weekly", "daily"),
        database=database_url,
    )
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    with time_machine.travel("2026-10-31T02:00:00+00:00", tick=False):  # the first digest: nothing yet
        assert "digest daily: nothing published" in run_cli(config, "run", "--once").output
    with time_machine.travel("2026-10-31T15:00:00+00:00", tick=False):
        _publish(config, "a", "Acme Ships a Quantum Thermometer", "2026-10-31")
    # 01:30 EDT (05:30 UTC) is the digest; 01:30 EST an hour later is the same wall time again, not a second one.
    for moment in ("2026-11-01T05:31:00+00:00", "2026-11-01T06:31:00+00:00", "2026-11-01T12:00:00+00:00"):
        with time_machine.travel(moment, tick=False):
            assert run_cli(config, "run", "--once").exit_code == 0
    issues = _digests(load_settings(config).outbox_dir)
    assert list(issues) == ["digest-daily-20261101t0530z"] and len(issues["digest-daily-20261101t0530z"]) == 4


def test_a_release_on_a_period_end_is_listed_once_and_a_late_write_is_not_lost(
    tmp_path: Path, database_url: str | None
) -> None:
    config = write_project(tmp_path, {}, config=CONFIG + DIGEST, database=database_url)
    settings = load_settings(config)
    runtime = Runtime.open(settings)
    end = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # Monday 08:00 EDT
    ids = {}
    for title, published in (
        ("On the End Itself", end),
        ("Just After the End", end + timedelta(microseconds=1)),
        ("Earlier That Week", end - timedelta(days=3)),
    ):
        release_id, _ = runtime.store.save_release(Release(headline=title, body=("Text.",)), end - timedelta(days=7))
        runtime.store.mark_published(release_id, published)
        ids[title] = release_id
    first, errors = make_due_digests(runtime.store, settings, runtime.renderer, end + timedelta(minutes=1))
    assert errors == [] and [r.releases for r in first] == [2]
    issue = runtime.store.digest_issue(runtime.store.distribution(first[0].distribution_id or 0).release_id)
    assert issue is not None and [i.slug for i in issue.items] == [
        runtime.store.release(ids["Earlier That Week"]).slug,
        runtime.store.release(ids["On the End Itself"]).slug,
    ]
    # A release another process was publishing at that moment: stamped before the end, written after it.
    late_id, _ = runtime.store.save_release(Release(headline="Written Late", body=("Text.",)), end)
    runtime.store.mark_published(late_id, end - timedelta(seconds=1))
    second, _ = make_due_digests(runtime.store, settings, runtime.renderer, end + timedelta(days=7, minutes=1))
    later = runtime.store.digest_issue(runtime.store.distribution(second[0].distribution_id or 0).release_id)
    assert later is not None and {i.id for i in later.items} == {ids["Just After the End"], late_id}
    runtime.close()


def test_a_broken_digest_does_not_hold_up_the_others(tmp_path: Path) -> None:
    broken = DIGEST.replace("    to: [all]\n", '    to: [all]\n    subject: "{{ count | nosuch }}"\n') + DIGEST.replace(
        "digests:\n", ""
    ).replace("name: weekly", "name: other")
    config = write_project(tmp_path, {}, config=CONFIG + broken)
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    with time_machine.travel("2026-03-03T15:00:00+00:00", tick=False):
        _publish(config, "a", "Acme Ships a Quantum Thermometer", "2026-03-03")
    with time_machine.travel("2026-03-09T12:01:00+00:00", tick=False):
        ran = run_cli(config, "run", "--once")
    assert "digest weekly:" in ran.output and "nosuch" in ran.output
    assert "digest other: 1 release(s)" in ran.output
    assert list(_digests(load_settings(config).outbox_dir)) == ["digest-other-20260309t1200z"]


def test_the_running_worker_makes_the_digest_by_its_own_timer(tmp_path: Path) -> None:
    """The periodic sweep is an hour apart here: only the digest's APScheduler job can make it on time."""
    config = write_project(
        tmp_path,
        {},
        config=CONFIG.replace("  max_lateness: 2h\n", "  max_lateness: 2h\n  sweep_interval: 1h\n") + DIGEST,
    )
    settings = load_settings(config)
    with time_machine.travel("2026-03-09T11:58:00+00:00", tick=True) as traveller:  # Monday 07:58 EDT
        runtime = Runtime.open(settings)
        worker, thread = start_worker(runtime)
        jobs = scheduler_jobs(runtime)
        assert datetime.fromtimestamp(jobs["digest-weekly"], UTC) == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
        assert runtime.store.last_digest_end("weekly") == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # last Monday
        traveller.shift(timedelta(minutes=2, seconds=1))
        worker.wakeup()
        recorded = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
        wait_until(lambda: runtime.store.last_digest_end("weekly") == recorded, 20, "the digest at 08:00")
        worker.stop()
        thread.join(10)
    runtime.close()
