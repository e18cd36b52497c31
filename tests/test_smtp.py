"""The SMTP transport against a real aiosmtpd relay on loopback: TLS, login, pacing, reconnects, faults."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.config import Settings, load_settings
from pipeline.models import Contact, DeliveryStatus, DistributionStatus
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from pipeline.send import Dispatcher
from pipeline.send.smtp import SmtpTransport
from tests.conftest import write_project
from tests.transport_rig import queue_to_all, with_send
from tools.fake_smtp import FakeSmtp, SmtpFaults


@contextmanager
def _smtp_runtime(settings: Settings, relay: FakeSmtp, **smtp: Any) -> Iterator[Runtime]:
    values = {"host": relay.host, "port": relay.port, "security": relay.tls, "timeout": 5.0} | smtp
    rt = Runtime.open(
        settings.model_copy(update={"transport": "smtp", "smtp": settings.smtp.model_copy(update=values)})
    )
    try:
        yield rt
    finally:
        rt.close()


def _dispatcher(rt: Runtime, naps: list[float] | None = None) -> Dispatcher:
    sleep = naps.append if naps is not None else (lambda _s: None)
    return Dispatcher(rt.settings, rt.store, rt.transport(), rt.renderer, rt.links, clock=rt.clock, sleep=sleep)


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_tls_and_login(tls: str, settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    with FakeSmtp(tls=tls, login=("newsroom", "s3cret")) as relay:
        assert relay.cert is not None
        with _smtp_runtime(settings, relay, username="newsroom", ca_file=relay.cert) as rt:
            report = rt.dispatcher().dispatch(queue_to_all(rt, project))
        assert report.accepted == 4 and relay.connections == 1
        assert len(relay.received) == 4


def test_a_refused_login_fails_the_batch_with_the_relays_words(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    with (
        FakeSmtp(tls="starttls", login=("newsroom", "s3cret")) as relay,
        _smtp_runtime(
            with_send(settings, pause_after_failures=4), relay, username="newsroom", ca_file=relay.cert
        ) as rt,
    ):
        report = rt.dispatcher().dispatch(queue_to_all(rt, project))
        assert report.failed == 4 and report.status is DistributionStatus.PAUSED
        assert "refused the login: 535" in str(rt.store.deliveries_of(report.distribution_id)[0]["error"])
        assert relay.received == []


def test_a_login_without_its_password_variable_is_a_config_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    smtp = settings.smtp.model_copy(update={"username": "newsroom"})
    rt = Runtime.open(settings.model_copy(update={"transport": "smtp", "smtp": smtp}))
    with pytest.raises(Exception, match=r"smtp.password_env.*SMTP_PASSWORD"):
        rt.transport()
    rt.close()


def test_starttls_required_but_not_offered_is_refused(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeSmtp(tls="none") as relay, _smtp_runtime(settings, relay, security="starttls") as rt:
        report = rt.dispatcher().dispatch(queue_to_all(rt, project))
        assert report.failed == 4 and relay.received == []
        assert "does not offer STARTTLS" in str(rt.store.deliveries_of(report.distribution_id)[0]["error"])


def test_messages_are_paced_to_the_configured_rate(settings: Settings, project: Path) -> None:
    with FakeSmtp() as relay:
        smtp = settings.smtp.model_copy(
            update={"host": relay.host, "port": relay.port, "security": "none", "rate_per_second": 5}
        )
        clock = [0.0]
        naps: list[float] = []

        def sleep(seconds: float) -> None:
            naps.append(seconds)
            clock[0] += seconds

        rt = Runtime.open(settings)
        transport = SmtpTransport(smtp, None, sleep=sleep, monotonic=lambda: clock[0])
        release = parse_release(project.parent / "releases" / "acme.txt", rt.settings.zone)
        rendition = rt.renderer.email(release, release.slug)
        people = [rt.links.recipient(i, f"r{i}@example.com", None) for i in range(10)]
        results = transport.send(rendition, people)
        transport.close()
        rt.close()
        assert [r.outcome for r in results] == ["accepted"] * 10
        # Ten messages at five a second: nine waits, 1.8 s in all (the clock does not move otherwise).
        assert len(naps) == 9 and sum(naps) == pytest.approx(1.8)
        # A lane's batch fits in half a lease, at its share of the rate (two connections share 5/s).
        assert transport.max_batch(timedelta(minutes=5)) == 375


def test_a_temporary_refusal_is_retried_later_not_failed(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = {"bo@example.test": "450 4.2.1 mailbox busy, try later"}
    with FakeSmtp(reject=busy) as relay, _smtp_runtime(with_send(settings, max_retries=2), relay) as rt:
        dist_id = queue_to_all(rt, project)
        naps: list[float] = []
        report = _dispatcher(rt, naps).dispatch(dist_id)
        assert report.accepted == 3 and report.failed == 0
        statuses = {d["address"]: d["status"] for d in rt.store.deliveries_of(dist_id)}
        assert statuses["bo@example.test"] == DeliveryStatus.PENDING
        assert report.status is DistributionStatus.SENDING and len(naps) == 2
        relay.reject.clear()  # the mailbox frees up; the next sweep delivers
        assert _dispatcher(rt).dispatch(dist_id).status is DistributionStatus.SENT
        assert relay.counts() == dict.fromkeys(statuses, 1)


def test_an_unreachable_relay_leaves_everything_pending(settings: Settings, project: Path) -> None:
    relay = FakeSmtp()  # never started: the port refuses connections
    with _smtp_runtime(with_send(settings, max_retries=1), relay) as rt:
        dist_id = queue_to_all(rt, project)
        report = _dispatcher(rt).dispatch(dist_id)
        assert report.accepted == 0 and "cannot reach the relay" in report.errors[0]
        assert {d["status"] for d in rt.store.deliveries_of(dist_id)} == {DeliveryStatus.PENDING}


@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_dropped_connections_never_duplicate_and_lose_nothing(
    seed: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    project = write_project(tmp_path_factory.mktemp("smtp"))
    settings = with_send(load_settings(project), batch_size=40, max_retries=5)
    faults = SmtpFaults(drop_after_accept=0.05, drop_before_accept=0.1, seed=seed)
    with FakeSmtp(faults=faults) as relay, _smtp_runtime(settings, relay) as rt:
        dist_id = queue_to_all(rt, project, extra=200)
        for _ in range(50):
            _dispatcher(rt).dispatch(dist_id)
            if not rt.store.open_count(dist_id):
                break
        ledger = rt.store.deliveries_of(dist_id)
        counts = relay.counts()
        assert rt.store.open_count(dist_id) == 0 and len(ledger) == 204
        for row in ledger:
            held = counts.get(str(row["address"]), 0)
            if row["status"] == DeliveryStatus.ACCEPTED:
                assert held == 1, row
            else:
                assert row["status"] == DeliveryStatus.IN_DOUBT and held == 1, row  # dropped after it was kept
        assert relay.connections > 1  # it did reconnect


def test_header_injection_through_a_name_is_impossible(settings: Settings) -> None:
    with FakeSmtp() as relay:
        smtp = settings.smtp.model_copy(update={"host": relay.host, "port": relay.port, "security": "none"})
        rt = Runtime.open(settings)
        transport = SmtpTransport(smtp, None, clock=lambda: datetime(2026, 3, 3, tzinfo=UTC))
        release = parse_release(Path(rt.settings.releases_dir) / "acme.txt", rt.settings.zone)
        rendition = rt.renderer.email(release, release.slug)
        evil = rt.links.recipient(1, "eve@example.com", "Eve\r\nBcc: all@example.com")
        transport.send(rendition, [evil])
        transport.close()
        rt.close()
        (received,) = relay.received
        message = received.message()
        assert message["Bcc"] is None and received.rcpt_to == "eve@example.com"
        assert message["To"].addresses[0].display_name == "Eve Bcc: all@example.com"


def test_an_internationalised_address_fails_alone_when_the_relay_lacks_smtputf8(
    settings: Settings, project: Path
) -> None:
    with FakeSmtp(smtputf8=False) as relay, _smtp_runtime(with_send(settings, batch_size=10), relay) as rt:
        rt.store.save_contacts([Contact(email="josé@example.com"), Contact(email="zoë@example.com", name="Zoë")])
        dist_id = queue_to_all(rt, project)
        report = _dispatcher(rt).dispatch(dist_id)
        statuses = {d["address"]: (d["status"], d["error"]) for d in rt.store.deliveries_of(dist_id)}
        assert report.accepted == 4 and report.failed == 2 and report.status is DistributionStatus.PARTIAL
        assert statuses["josé@example.com"][0] == "failed"
        assert "SMTPUTF8" in str(statuses["josé@example.com"][1])
        assert len(relay.received) == 4


def test_a_message_is_well_formed_for_any_address_and_line_ending(runtime: Runtime, project: Path) -> None:
    from dataclasses import replace

    from pipeline.message import MessageTemplate

    release = parse_release(project.parent / "releases" / "acme.txt", runtime.settings.zone)
    rendition = runtime.renderer.email(release, release.slug)
    rendition = replace(rendition, text=rendition.text.replace("\n", "\r", 3))  # lone CRs from a template
    raw = MessageTemplate(rendition).render(runtime.links.recipient(3, "josé@example.com", None), datetime.now(UTC))
    assert b"\r\n" in raw and b"\r" not in raw.replace(b"\r\n", b"")
    assert b"\nTo: <jos\xc3\xa9@example.com>\r\n" in raw


def test_the_message_rate_holds_for_all_workers_together(settings: Settings, project: Path) -> None:
    """Two transports (as in two `pipeline run` processes) share the database's send slots: at five a second
    between them, twenty messages take 3.8 s of the shared clock, one slot after another, not 1.8 s each."""
    with FakeSmtp() as relay:
        smtp = settings.smtp.model_copy(
            update={"host": relay.host, "port": relay.port, "security": "none", "rate_per_second": 5}
        )
        clock = [1_800_000_000.0]
        sent_at: list[float] = []  # each message: the clock when the transport was free to send it

        def wallclock() -> float:  # read once per message, just before it waits for its slot (if it must)
            sent_at.append(clock[0])
            return clock[0]

        def sleep(seconds: float) -> None:
            clock[0] += seconds
            sent_at[-1] = clock[0]

        rt = Runtime.open(settings)

        class Gate:
            def reserve(self, count: int, interval: float) -> float:
                return clock[0] + rt.store.reserve_slots("smtp", count, interval, clock[0])

        release = parse_release(project.parent / "releases" / "acme.txt", rt.settings.zone)
        rendition = rt.renderer.email(release, release.slug)
        for worker in range(2):
            transport = SmtpTransport(smtp, None, sleep=sleep, wallclock=wallclock, gate=Gate())
            people = [rt.links.recipient(i, f"w{worker}r{i}@example.com", None) for i in range(10)]
            assert [r.outcome for r in transport.send(rendition, people)] == ["accepted"] * 10
            transport.close()
        rt.close()
    steps = [round(b - a, 6) for a, b in itertools.pairwise(sent_at)]
    assert steps == [0.2] * 19, steps
    assert len(relay.received) == 20
