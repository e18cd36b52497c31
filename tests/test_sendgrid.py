"""The SendGrid transport against a local SendGrid-compatible server: the request, and every way it can fail."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.models import DeliveryStatus, DistributionStatus
from pipeline.runtime import Runtime
from pipeline.send import Dispatcher, DispatchReport
from pipeline.store import utcnow
from tests.conftest import run_cli, wait_until
from tests.transport_rig import API_KEY, channel, queue_to_all, with_send
from tools.fake_sendgrid import FakeSendGrid, Faults


def _dispatcher(runtime: Runtime, naps: list[float]) -> Dispatcher:
    """A dispatcher whose waits are recorded instead of slept."""
    return Dispatcher(
        runtime.settings,
        runtime.store,
        runtime.transport(),
        runtime.renderer,
        runtime.links,
        clock=runtime.clock,
        sleep=naps.append,
    )


def _statuses(runtime: Runtime, dist_id: int) -> dict[str, str]:
    return {str(d["address"]): str(d["status"]) for d in runtime.store.deliveries_of(dist_id)}


def test_the_request_carries_what_each_recipient_needs(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with channel("sendgrid", settings, monkeypatch) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        ch.runtime.dispatcher().dispatch(dist_id)
        assert ch.sendgrid is not None and ch.sendgrid.requests == 1
        ledger = {d["address"]: d for d in ch.runtime.store.deliveries_of(dist_id)}
        for accepted in ch.sendgrid.accepted:
            row = ledger[accepted.email]
            assert accepted.custom_args["delivery_id"] == str(row["id"])
            assert row["provider_id"] == accepted.message_id  # X-Message-Id kept
            assert "press-release" in accepted.categories
            assert any(c.startswith("2026-03-03") for c in accepted.categories)  # the release's slug
            assert accepted.recipients_in_personalization == 1
        chloe = next(a for a in ch.sendgrid.accepted if a.email == "chloe@example.com")
        assert chloe.name == "Chloé Roy"


def test_sandbox_mode_is_validated_but_not_delivered(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandboxed = settings.model_copy(update={"sendgrid": settings.sendgrid.model_copy(update={"sandbox": True})})
    with channel("sendgrid", sandboxed, monkeypatch) as ch:
        assert ch.runtime.settings.sendgrid.sandbox
        report = ch.runtime.dispatcher().dispatch(queue_to_all(ch.runtime, project))
        assert ch.sendgrid is not None
        assert report.accepted == 4 and ch.sendgrid.statuses["200"] == 1 and ch.sendgrid.accepted == []


def test_a_missing_api_key_names_the_variable(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    rt = Runtime.open(settings.model_copy(update={"transport": "sendgrid"}))
    with pytest.raises(Exception, match="SENDGRID_API_KEY"):
        rt.transport()
    rt.close()


def test_a_wrong_key_fails_and_pauses_at_once(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with channel("sendgrid", with_send(settings, pause_after_failures=3), monkeypatch) as ch:
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
        report = ch.runtime.dispatcher().dispatch(queue_to_all(ch.runtime, project))
        assert report.status is DistributionStatus.PAUSED and report.failed == 4
        row = ch.runtime.store.deliveries_of(report.distribution_id)[0]
        assert "401" in str(row["error"]) and "authorization grant is invalid" in str(row["error"])


def test_rate_limits_wait_for_the_reset_and_never_count_as_failures(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five 429s in a row with a retry budget of one: rate limits do not spend it.
    faults = Faults(script=["rate_limit"] * 5, reset_after=30)
    with channel("sendgrid", with_send(settings, max_retries=1), monkeypatch, faults=faults) as ch:
        naps: list[float] = []
        report = _dispatcher(ch.runtime, naps).dispatch(queue_to_all(ch.runtime, project))
        assert report.status is DistributionStatus.SENT and report.accepted == 4 and report.failed == 0
        assert len(naps) == 5
        assert all(28 <= nap <= 31 for nap in naps)  # until X-RateLimit-Reset, plus a little jitter
        assert ch.sendgrid is not None and ch.sendgrid.counts() == dict.fromkeys(ch.sendgrid.counts(), 1)


def test_server_errors_back_off_and_give_up_after_the_budget(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(script=["server_error"] * 4)
    with channel(
        "sendgrid", with_send(settings, max_retries=2, backoff=timedelta(seconds=1)), monkeypatch, faults=faults
    ) as ch:
        naps: list[float] = []
        dist_id = queue_to_all(ch.runtime, project)
        first = _dispatcher(ch.runtime, naps).dispatch(dist_id)
        # Three attempts (one plus two retries), each waiting longer; then it stops for the next sweep.
        assert first.accepted == 0 and first.status is DistributionStatus.SENDING
        assert "gave up after 2 retries" in first.errors[0]
        assert len(naps) == 2 and 0.5 <= naps[0] <= 1.5 and 1.0 <= naps[1] <= 3.0
        assert set(_statuses(ch.runtime, dist_id).values()) == {"pending"}
        # The next sweep carries on: one more 500, then it goes through.
        second = _dispatcher(ch.runtime, naps).dispatch(dist_id)
        assert second.accepted == 4 and second.status is DistributionStatus.SENT


def test_an_answer_lost_after_sending_leaves_the_batch_in_doubt_and_unsent_again(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(script=["drop_after_accept"])
    with channel("sendgrid", settings, monkeypatch, faults=faults) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert (report.in_doubt, report.status) == (4, DistributionStatus.PARTIAL)
        assert set(_statuses(ch.runtime, dist_id).values()) == {"in_doubt"}
        assert ch.runtime.dispatcher().dispatch(dist_id).accepted == 0  # never resent automatically
        assert ch.sendgrid is not None and sum(ch.sendgrid.counts().values()) == 4


def test_a_timeout_waiting_for_the_answer_is_in_doubt(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(script=["slow"], slow_seconds=1.0)
    with channel("sendgrid", settings, monkeypatch, faults=faults, timeout=0.3) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert report.in_doubt == 4
        row = ch.runtime.store.deliveries_of(dist_id)[0]
        assert "no answer from SendGrid" in str(row["error"])


def test_an_unreachable_server_is_retried_later(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    server = FakeSendGrid(API_KEY)
    url = server.url  # bound but never serving: connections are refused
    server.stop()
    sg = settings.sendgrid.model_copy(update={"host": url, "timeout": 2})
    rt = Runtime.open(with_send(settings, max_retries=1).model_copy(update={"transport": "sendgrid", "sendgrid": sg}))
    dist_id = queue_to_all(rt, project)
    naps: list[float] = []
    report = _dispatcher(rt, naps).dispatch(dist_id)
    assert report.accepted == 0 and "unreachable" in report.errors[0]
    assert set(_statuses(rt, dist_id).values()) == {"pending"}
    rt.close()


def test_resolve_lists_then_settles_deliveries_in_doubt(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(script=["drop_after_accept"])
    with channel("sendgrid", with_send(settings, batch_size=2), monkeypatch, faults=faults) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        ch.runtime.dispatcher().dispatch(dist_id)
        config = project
        doubtful = sorted(a for a, s in _statuses(ch.runtime, dist_id).items() if s == "in_doubt")
        assert len(doubtful) == 2
        listing = run_cli(config, "resolve", str(dist_id))
        assert listing.exit_code == 0
        assert all(a in listing.output for a in doubtful) and "--sent" in listing.output
        # Nothing changed by listing.
        assert sorted(a for a, s in _statuses(ch.runtime, dist_id).items() if s == "in_doubt") == doubtful
        # One was delivered after all (the provider's log says so); the other goes again.
        sent = run_cli(config, "resolve", str(dist_id), "--sent", "--address", doubtful[0], "--yes")
        assert "1 deliveries marked as sent" in sent.output
        again = run_cli(config, "resolve", str(dist_id), "--resend", "--yes")
        assert "1 deliveries back in the queue" in again.output
        assert ch.runtime.store.distribution(dist_id).status is DistributionStatus.SENDING
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert report.accepted == 1 and report.status is DistributionStatus.SENT
        statuses = _statuses(ch.runtime, dist_id)
        assert set(statuses.values()) == {DeliveryStatus.ACCEPTED}
        assert "no delivery in doubt" in run_cli(config, "resolve", str(dist_id)).output


def test_resolve_of_an_unknown_distribution_is_a_clear_error(project: Path) -> None:
    result = run_cli(project, "resolve", "999", "--sent")
    assert result.exit_code == 2 and "999" in result.output and "Traceback" not in result.output


@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_under_random_faults_everyone_is_accepted_exactly_once_and_the_ledger_agrees(
    seed: int, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.config import load_settings
    from tests.conftest import write_project

    project = write_project(tmp_path_factory.mktemp("faults"))
    base = with_send(load_settings(project), batch_size=50, max_retries=3, backoff=timedelta(milliseconds=10))
    faults = Faults(
        rate_limit=0.15,
        server_error=0.15,
        slow=0.15,
        drop_after_accept=0.1,
        slow_seconds=0.4,
        seed=seed,
        script=["rate_limit", "server_error", "slow", "drop_after_accept"],  # each kind at least once
    )
    with channel("sendgrid", base, monkeypatch, faults=faults, timeout=0.25) as ch:
        assert ch.sendgrid is not None
        dist_id = queue_to_all(ch.runtime, project, extra=600)
        naps: list[float] = []
        for _ in range(200):  # sweeps, until nothing is left to send
            _dispatcher(ch.runtime, naps).dispatch(dist_id)
            if not ch.runtime.store.open_count(dist_id):
                break
        time.sleep(0.5)  # let slow answers the client gave up on finish recording on the server
        ledger = ch.runtime.store.deliveries_of(dist_id)
        counts = ch.sendgrid.counts()
        assert len(ledger) == 604
        assert ch.runtime.store.open_count(dist_id) == 0
        for row in ledger:
            held = counts.get(str(row["address"]), 0)
            if row["status"] == DeliveryStatus.ACCEPTED:
                assert held == 1, row
            else:
                assert row["status"] == DeliveryStatus.IN_DOUBT and held <= 1, row
        assert set(counts) <= {str(r["address"]) for r in ledger}
        # Every kind of fault did happen.
        assert ch.sendgrid.statuses["429"] and ch.sendgrid.statuses["500"] and ch.sendgrid.statuses["dropped"]
        assert any(r["status"] == DeliveryStatus.IN_DOUBT for r in ledger)


def test_with_requests_in_flight_a_pause_still_stops_the_list(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lanes = with_send(settings, batch_size=100, pause_after_failures=1)
    lanes = lanes.model_copy(update={"sendgrid": lanes.sendgrid.model_copy(update={"concurrency": 4})})
    with channel("sendgrid", lanes, monkeypatch) as ch:
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.revoked")
        dist_id = queue_to_all(ch.runtime, project, extra=3000)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert report.status is DistributionStatus.PAUSED
        # Only the batches already in flight when the first refusal came back failed; the rest wait.
        assert 100 <= report.failed <= 400
        assert ch.runtime.store.distribution(dist_id).counts["pending"] == 3004 - report.failed
        assert ch.sendgrid is not None and ch.sendgrid.requests <= 4


def test_a_dead_workers_batches_are_taken_over_and_nothing_in_flight_is_resent(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with channel("sendgrid", settings, monkeypatch) as ch:
        store = ch.runtime.store
        dist_id = queue_to_all(ch.runtime, project)
        store.snapshot_everyone(dist_id, store.distribution(dist_id).release_id, "email")
        store.set_status(dist_id, DistributionStatus.SENDING)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        local_dead = f"{socket.gethostname()}:{gone.pid}"  # a process of this machine that has exited
        remote = "another-host.example:4242"  # cannot be checked from here: only its lease tells
        lease = utcnow() + timedelta(minutes=5)
        local_claimed, local_submitting, remote_claimed, remote_submitting = (
            store.claim(dist_id, worker, 1, lease)[0].id for worker in (local_dead, local_dead, remote, remote)
        )
        store.mark_submitting([local_submitting], local_dead)
        store.mark_submitting([remote_submitting], remote)

        first = ch.runtime.dispatcher().dispatch(dist_id)  # leases still running
        states = {d["id"]: d["status"] for d in store.deliveries_of(dist_id)}
        assert states[local_claimed] == "accepted" and states[local_submitting] == "in_doubt"
        assert states[remote_claimed] == "claimed" and states[remote_submitting] == "submitting"
        assert first.accepted == 1 and first.status is DistributionStatus.SENDING

        with time_machine.travel(datetime.now(UTC) + timedelta(minutes=6), tick=False):
            second = ch.runtime.dispatcher().dispatch(dist_id)
        states = {d["id"]: d["status"] for d in store.deliveries_of(dist_id)}
        assert states[remote_claimed] == "accepted" and states[remote_submitting] == "in_doubt"
        assert second.status is DistributionStatus.PARTIAL
        assert ch.sendgrid is not None and sum(ch.sendgrid.counts().values()) == 2  # in-flight ones not resent


def test_a_long_rate_limit_is_left_to_a_later_sweep(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(script=["rate_limit"], reset_after=3600)
    with channel("sendgrid", settings, monkeypatch, faults=faults) as ch:
        naps: list[float] = []
        dist_id = queue_to_all(ch.runtime, project)
        first = _dispatcher(ch.runtime, naps).dispatch(dist_id)
        assert naps == [] and first.accepted == 0 and "rate limited for 60 min" in (first.waiting or "")
        assert set(_statuses(ch.runtime, dist_id).values()) == {"pending"}
        assert _dispatcher(ch.runtime, naps).dispatch(dist_id).status is DistributionStatus.SENT


def test_after_a_revoked_key_is_fixed_release_retry_failed_sends_the_rest(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with channel("sendgrid", with_send(settings, pause_after_failures=2, batch_size=2), monkeypatch) as ch:
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.revoked")
        dist_id = queue_to_all(ch.runtime, project)
        report = ch.runtime.dispatcher().dispatch(dist_id)
        assert report.status is DistributionStatus.PAUSED and report.failed >= 2
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)  # the key is replaced
        plain = run_cli(project, "release", str(dist_id))
        assert "released: sending" in plain.output
        ch.runtime.store.set_status(dist_id, DistributionStatus.PAUSED)
        retried = run_cli(project, "release", str(dist_id), "--retry-failed")
        assert retried.exit_code == 0 and "released: sending" in retried.output
        again = ch.runtime.dispatcher().dispatch(dist_id)
        assert again.status is DistributionStatus.SENT
        assert ch.sendgrid is not None and ch.sendgrid.counts() == dict.fromkeys(ch.sendgrid.counts(), 1)
        assert len(ch.sendgrid.counts()) == 4
        refused = run_cli(project, "release", str(dist_id))
        assert refused.exit_code == 2 and "is sent; only a held or paused one" in refused.output


def test_links_mailed_before_key_ids_still_unsubscribe(runtime: Runtime) -> None:
    from itsdangerous import URLSafeSerializer

    from pipeline.store import address_hash

    secret = runtime.settings.unsubscribe_secret()
    old_token = URLSafeSerializer([secret], salt="pipeline.unsubscribe.v1").dumps("ana@example.com")
    assert runtime.links.address_hash_of(old_token) == address_hash("ana@example.com")
    forged = URLSafeSerializer(["not-the-secret"], salt="pipeline.unsubscribe.v1").dumps("ana@example.com")
    assert runtime.links.address_hash_of(forged) is None
    new = runtime.links.token("ana@example.com")
    assert runtime.links.address_hash_of(new) == address_hash("ana@example.com")
    assert runtime.links.address_hash_of(new[:-2] + "xx") is None
    assert (
        runtime.links.address_hash_of(
            new.replace(new.split(".")[1], runtime.links.token("bo@example.test").split(".")[1])
        )
        is None
    )


def test_a_batch_slower_than_its_lease_keeps_its_lease_while_it_is_sent(
    settings: Settings, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request answered after 2.5 s with a 1.2 s lease: the sender renews the batch's lease while it waits,
    so another worker expiring leases meanwhile neither takes the batch nor puts it in doubt."""
    faults = Faults(script=["slow"], slow_seconds=2.5)
    with channel(
        "sendgrid", with_send(settings, lease=timedelta(seconds=1.2)), monkeypatch, faults=faults, timeout=10
    ) as ch:
        dist_id = queue_to_all(ch.runtime, project)
        reports: list[DispatchReport] = []
        sending = threading.Thread(target=lambda: reports.append(ch.runtime.dispatcher().dispatch(dist_id)))
        sending.start()
        wait_until(lambda: ch.sendgrid is not None and ch.sendgrid.requests >= 1, 10, "the request to go out")
        expired: list[tuple[int, int]] = []
        while sending.is_alive():  # what another worker's dispatch does, again and again, for the whole wait
            expired.append(ch.runtime.store.expire_leases(datetime.now(UTC), resend_in_flight=False))
            time.sleep(0.1)
        sending.join()
    assert expired and all(found == (0, 0) for found in expired), expired
    assert reports[0].accepted == 4 and reports[0].in_doubt == 0
