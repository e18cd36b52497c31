"""One contract, every transport: outbox (files), SMTP (a real aiosmtpd relay on loopback) and SendGrid (the
official client against a local SendGrid-compatible server on loopback), driven through the dispatcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.models import DeliveryStatus, DistributionStatus
from pipeline.runtime import Runtime
from pipeline.store import address_hash
from tests.conftest import write_project
from tests.transport_rig import TRANSPORTS, channel, many_contacts, queue_to_all, with_send

FOUR = {"ana@example.com", "bo@example.test", "chloe@example.com", "dev@example.com"}


def _ledger(runtime: Runtime, dist_id: int) -> dict[str, dict[str, object]]:
    return {str(d["address"]): d for d in runtime.store.deliveries_of(dist_id)}


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_each_recipient_gets_one_message_of_its_own(
    kind: str, settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with channel(kind, settings, monkeypatch) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert (report.status, report.accepted, report.failed, report.in_doubt) == (DistributionStatus.SENT, 4, 0, 0)
        got = ch.received()
        assert sorted(m.to for m in got) == sorted(FOUR)
        ledger = _ledger(ch.runtime, dist_id)
        for message in got:
            row = ledger[message.to]
            assert row["status"] == DeliveryStatus.ACCEPTED
            assert message.subject == "Acme Instruments Ships Its First Quantum Thermometer"
            assert message.from_address == "newsroom@acme.example.com"
            # Our delivery id and the recipient's own one-click unsubscribe link travel with the message.
            assert message.headers["X-Delivery-Id"] == str(row["id"])
            assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            first_link = message.headers["List-Unsubscribe"].split(",")[0].strip("<> ")
            assert first_link.startswith("https://news.acme.example.com/unsubscribe/")
            token = first_link.rsplit("/", 1)[1].split("?")[0]
            assert ch.runtime.links.address_hash_of(token) == address_hash(message.to)
            assert first_link.endswith("?r=2026-03-03-acme-instruments-ships-its-first-quantum-thermometer")
            assert first_link in message.text and first_link in message.html
            assert "%unsubscribe_url%" not in message.text + message.html
            assert "Acme Instruments today shipped" in message.html.replace("\n", " ")
        names = {m.to: m.name for m in got}
        assert names["chloe@example.com"] == "Chloé Roy"
        # Dispatching again sends nothing more.
        assert ch.runtime.dispatcher().dispatch(dist_id).accepted == 0
        assert len(ch.received()) == 4


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_headline_and_names_in_other_scripts_survive(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = (
        "POUR DIFFUSION IMMÉDIATE\n\nÉcole Ωmega: 山田 Ünïcode «Prix» — la première édition\n\n"
        "MONTRÉAL, le 3 mars 2026 /CNW/ - L'École Ωmega annonce un prix.\n\n-30-\n"
    )
    project = write_project(tmp_path, {"fr.txt": release})
    (tmp_path / "contacts.csv").write_text('email,name\nzoe@example.com,"Zoë 山田, Ω"\n', encoding="utf-8")
    from pipeline.config import load_settings

    with channel(kind, load_settings(project), monkeypatch) as ch:
        dist_id = queue_to_all(ch.runtime, project, release_file="fr.txt")
        assert ch.runtime.dispatcher().dispatch(dist_id).accepted == 1
        (message,) = ch.received()
        assert message.subject == "École Ωmega: 山田 Ünïcode «Prix» — la première édition"
        # SendGrid cannot take a comma in a display name, so it is dropped there; MIME quotes it.
        assert message.name == ("Zoë 山田 Ω" if kind == "sendgrid" else "Zoë 山田, Ω")
        assert "L'École Ωmega annonce un prix" in message.text.replace("\n", " ")


@pytest.mark.parametrize("kind", ["smtp", "sendgrid"])
def test_a_refused_recipient_is_failed_with_the_providers_words(
    kind: str, settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_at_a_time = with_send(settings, batch_size=1)
    with channel(kind, one_at_a_time, monkeypatch, reject={"bo@example.test": "Recipient refused"}) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert (report.accepted, report.failed, report.status) == (3, 1, DistributionStatus.PARTIAL)
        ledger = _ledger(ch.runtime, dist_id)
        assert ledger["bo@example.test"]["status"] == DeliveryStatus.FAILED
        error = str(ledger["bo@example.test"]["error"])
        assert ("550" in error) if kind == "smtp" else ("400" in error and "Recipient refused" in error)
        assert {m.to for m in ch.received()} == FOUR - {"bo@example.test"}


@pytest.mark.parametrize("kind", ["smtp", "sendgrid"])
def test_consecutive_permanent_failures_pause_the_distribution(
    kind: str, settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = with_send(settings, batch_size=1, pause_after_failures=2)
    # One request at a time, so "consecutive" is well defined (with several in flight, those already sent
    # when the pause comes still finish).
    strict = strict.model_copy(
        update={
            "sendgrid": strict.sendgrid.model_copy(update={"concurrency": 1}),
            "smtp": strict.smtp.model_copy(update={"connections": 1}),
        }
    )
    refused = {"ana@example.com": "Mailbox closed", "bo@example.test": "Mailbox closed"}
    with channel(kind, strict, monkeypatch, reject=refused) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert report.status is DistributionStatus.PAUSED
        assert (report.accepted, report.failed) == (0, 2)
        dist = ch.runtime.store.distribution(dist_id)
        assert dist.counts == {"failed": 2, "pending": 2}
        assert "2 consecutive permanent failures" in (dist.note or "")
        assert ch.received() == []
        # A paused distribution is not sent by the next sweep either.
        assert ch.runtime.dispatcher().dispatch(dist_id).accepted == 0


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_large_list_goes_in_batches_over_one_connection(
    kind: str, settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with channel(kind, with_send(settings, batch_size=1000), monkeypatch) as ch:
        ch.runtime.store.save_contacts(many_contacts(2500))
        dist_id = queue_to_all(ch.runtime, project)
        seen: list[tuple[int, int]] = []
        report = ch.runtime.dispatcher().dispatch(dist_id, lambda done, total: seen.append((done, total)))
        assert report.accepted == 2504 and report.status is DistributionStatus.SENT
        # One progress call per batch (batches may finish in any order when several are in flight).
        assert len(seen) == 3 and seen[-1] == (2504, 2504) and all(total == 2504 for _, total in seen)
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        got = ch.recipients()
        assert len(got) == 2504 and len(set(got)) == 2504
        if ch.sendgrid is not None:
            assert ch.sendgrid.requests == 3
            assert ch.sendgrid.statuses["202"] == 3
            assert {a.recipients_in_personalization for a in ch.sendgrid.accepted} == {1}
        if ch.smtp is not None:
            assert ch.smtp.connections == 2  # one connection per lane (smtp.connections), reused for every message


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_templates_may_greet_each_recipient_by_name(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import load_settings

    project = write_project(tmp_path)
    (tmp_path / "contacts.csv").write_text(
        'email,name\nana@example.com,Ana <b>Lima</b>\nbo@example.test,"O\'Neil & Sons"\n', encoding="utf-8"
    )
    shipped = (Path(__file__).parent.parent / "pipeline" / "templates" / "email.html").read_text(encoding="utf-8")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.html").write_text(
        shipped.replace('<tr><td class="pad">', '<tr><td class="pad"><p>Hello {{ recipient_name }},</p>', 1),
        encoding="utf-8",
    )
    with channel(kind, load_settings(project), monkeypatch) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        assert ch.runtime.dispatcher().dispatch(dist_id).accepted == 2
        html = {m.to: m.html for m in ch.received()}
        assert "Hello Ana &lt;b&gt;Lima&lt;/b&gt;," in html["ana@example.com"]
        assert "Hello O&#x27;Neil &amp; Sons," in html["bo@example.test"]
        assert "%recipient_name%" not in "".join(html.values())
