"""The web app through real HTTP on loopback (uvicorn in a thread): SendGrid's signed event webhook and
one-click unsubscribe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.config import Settings
from pipeline.models import DeliveryStatus, DistributionStatus
from pipeline.runtime import Runtime
from pipeline.store import address_hash, events
from pipeline.web import create_app
from tests.conftest import wait_until
from tests.transport_rig import queue_to_all, with_send
from tests.web_rig import Answer, http, public_key_b64, signed_post
from tools.fake_smtp import free_port


@dataclass
class App:
    url: str
    runtime: Runtime
    key: ec.EllipticCurvePrivateKey

    def post_events(
        self, items: list[dict[str, Any]], *, key: Any = None, age: float = 0, tampered: bytes | None = None
    ) -> Answer:
        """Post `items` signed as SendGrid would (by `key`, `age` seconds ago); `tampered` is sent instead of
        the signed body."""
        return signed_post(f"{self.url}/webhooks/sendgrid", items, key or self.key, age, tampered)


def _serve(runtime: Runtime) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "the app to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    key = ec.generate_private_key(ec.SECP256R1())
    signed = settings.model_copy(
        update={"sendgrid": settings.sendgrid.model_copy(update={"webhook_public_key": public_key_b64(key)})}
    )
    runtime = Runtime.open(with_send(signed, batch_size=1))
    for url in _serve(runtime):
        yield App(url, runtime, key)
    runtime.close()


def _sent(app: App, project: Path) -> dict[str, int]:
    """Send the release to the four contacts through the outbox; their delivery ids by address."""
    dist_id = queue_to_all(app.runtime, project)
    app.runtime.dispatcher().dispatch(dist_id)
    return {str(d["address"]): int(d["id"]) for d in app.runtime.store.deliveries_of(dist_id)}


def _event(kind: str, address: str, delivery: int, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "email": address,
        "event": kind,
        "timestamp": 1_780_000_000 + n,
        "sg_event_id": f"evt-{kind}-{n}",
        "sg_message_id": f"msg{delivery}.filter0001",
        "delivery_id": str(delivery),
        **extra,
    }


def _statuses(runtime: Runtime) -> dict[str, str]:
    (dist,) = runtime.store.distributions()
    return {str(d["address"]): str(d["status"]) for d in runtime.store.deliveries_of(dist.id)}


def _event_rows(runtime: Runtime) -> int:
    with runtime.store.engine.begin() as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())


def test_a_signed_batch_is_applied_once_even_when_posted_twice(app: App, project: Path) -> None:
    ids = _sent(app, project)
    store = app.runtime.store
    # One delivery is in doubt, as after a connection that dropped once SendGrid had the request.
    with store.engine.begin() as db:
        db.execute(sa.text("UPDATE deliveries SET status = 'in_doubt' WHERE id = :id"), {"id": ids["dev@example.com"]})
    batch = [
        _event("delivered", "ana@example.com", ids["ana@example.com"], 1),
        _event("open", "ana@example.com", ids["ana@example.com"], 2),
        _event("delivered", "ana@example.com", ids["ana@example.com"], 3),  # late: does not undo "opened"
        _event("bounce", "bo@example.test", ids["bo@example.test"], 4, type="bounce", reason="550 no such user"),
        _event("spamreport", "chloe@example.com", ids["chloe@example.com"], 5),
        _event("processed", "dev@example.com", ids["dev@example.com"], 6),
    ]
    first = app.post_events(batch)
    assert first.status == 200, first.body
    assert first.json() == {"received": 6, "new": 6, "duplicates": 0, "resolved_in_doubt": 1, "suppressed": 2}
    expected = {
        "ana@example.com": DeliveryStatus.OPENED,
        "bo@example.test": DeliveryStatus.BOUNCED,
        "chloe@example.com": DeliveryStatus.COMPLAINED,
        "dev@example.com": DeliveryStatus.ACCEPTED,  # settled by the event carrying its delivery id
    }
    assert _statuses(app.runtime) == expected
    assert store.suppressed_hashes() == {address_hash("bo@example.test"), address_hash("chloe@example.com")}
    again = app.post_events(batch)
    assert again.json() == {"received": 6, "new": 0, "duplicates": 6, "resolved_in_doubt": 0, "suppressed": 0}
    assert _event_rows(app.runtime) == 6 and _statuses(app.runtime) == expected


def test_forged_tampered_stale_or_unsigned_posts_are_refused_and_change_nothing(app: App, project: Path) -> None:
    ids = _sent(app, project)
    batch = [_event("bounce", "ana@example.com", ids["ana@example.com"], 1, type="bounce")]
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = app.post_events(batch, key=other_key)
    tampered = app.post_events(batch, tampered=json.dumps(batch).replace("ana@", "bo@").encode())
    stale = app.post_events(batch, age=3600)
    unsigned = http("POST", f"{app.url}/webhooks/sendgrid", json.dumps(batch).encode())
    assert [r.status for r in (forged, tampered, stale, unsigned)] == [401, 401, 401, 401]
    assert "signature does not match" in forged.json()["error"]
    assert "outside the accepted window" in stale.json()["error"]
    assert _event_rows(app.runtime) == 0 and app.runtime.store.suppressed_hashes() == set()
    assert set(_statuses(app.runtime).values()) == {DeliveryStatus.ACCEPTED}
    # A body that is not an array of events is refused once it is proven to come from SendGrid.
    not_a_list = app.post_events({"not": "a list"})  # type: ignore[arg-type]
    assert not_a_list.status == 400 and "JSON array" in not_a_list.json()["error"]


def test_soft_bounces_suppress_only_after_the_configured_count(app: App, project: Path) -> None:
    ids = _sent(app, project)
    blocked = [
        _event("bounce", "ana@example.com", ids["ana@example.com"], n, type="blocked", reason="mailbox full")
        for n in (1, 2)
    ]
    assert app.post_events(blocked).json()["suppressed"] == 0
    assert app.runtime.store.suppressed_hashes() == set()
    third = [_event("bounce", "ana@example.com", ids["ana@example.com"], 3, type="blocked")]
    assert app.post_events(third).json()["suppressed"] == 1  # tracking.soft_bounce_limit is 3
    assert app.runtime.store.suppressed_hashes() == {address_hash("ana@example.com")}


def test_an_event_for_another_address_cannot_move_a_delivery(app: App, project: Path) -> None:
    ids = _sent(app, project)
    wrong = [_event("click", "eve@example.org", ids["ana@example.com"], 1)]
    assert app.post_events(wrong).status == 200
    assert _statuses(app.runtime)["ana@example.com"] == DeliveryStatus.ACCEPTED


def test_one_click_unsubscribe(app: App, project: Path) -> None:
    links = app.runtime.links
    token = links.token("ana@example.com")
    page = http("GET", f"{app.url}/unsubscribe/{token}")
    assert page.status == 200 and '<form method="post"' in page.body and "Acme Instruments" in page.body
    assert app.runtime.store.suppressed_hashes() == set()  # looking is not unsubscribing
    done = http("POST", f"{app.url}/unsubscribe/{token}", b"List-Unsubscribe=One-Click")
    assert done.status == 200 and "You are unsubscribed" in done.body
    assert app.runtime.store.suppressed_hashes() == {address_hash("ana@example.com")}
    assert http("POST", f"{app.url}/unsubscribe/{token}", b"List-Unsubscribe=One-Click").status == 200  # again: fine
    # A damaged token, or one made for another address with its tail swapped, does nothing.
    bo = links.token("bo@example.test")
    spliced = bo.rsplit(".", 1)[0] + "." + token.rsplit(".", 1)[1]
    for bad in (token[:-3] + "abc", spliced, "nonsense"):
        answer = http("POST", f"{app.url}/unsubscribe/{bad}", b"List-Unsubscribe=One-Click")
        assert answer.status == 404 and "not valid" in answer.body
    assert app.runtime.store.suppressed_hashes() == {address_hash("ana@example.com")}


def test_links_signed_with_the_previous_secret_still_work(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.unsubscribe import UnsubscribeLinks

    old = UnsubscribeLinks(settings.site.base_url, ["the-old-secret"])
    token = old.token("ana@example.com")
    monkeypatch.setenv("PIPELINE_SECRET", "the-new-secret")
    monkeypatch.setenv("PIPELINE_PREVIOUS_SECRETS", "an-older-one, the-old-secret")
    runtime = Runtime.open(settings)
    assert runtime.links.token("ana@example.com") != token  # the new secret signs new links
    for url in _serve(runtime):
        assert http("POST", f"{url}/unsubscribe/{token}", b"List-Unsubscribe=One-Click").status == 200
    assert runtime.store.suppressed_hashes() == {address_hash("ana@example.com")}
    monkeypatch.setenv("PIPELINE_PREVIOUS_SECRETS", "")  # once the old secret is retired, its links stop
    assert Runtime.open(settings).links.address_hash_of(token) is None
    runtime.close()


def test_an_unsubscribe_stops_the_next_batch_of_a_running_distribution(app: App, project: Path) -> None:
    dist_id = queue_to_all(app.runtime, project)
    unsubscribed: list[str] = []

    def after_batch(done: int, total: int) -> None:
        if not unsubscribed:  # the first journalist to get it clicks "unsubscribe" in another one's copy
            token = app.runtime.links.token("dev@example.com")
            assert http("POST", f"{app.url}/unsubscribe/{token}", b"List-Unsubscribe=One-Click").status == 200
            unsubscribed.append("dev@example.com")

    report = app.runtime.dispatcher().dispatch(dist_id, after_batch)
    assert report.accepted == 3 and report.status is DistributionStatus.SENT
    assert _statuses(app.runtime)["dev@example.com"] == DeliveryStatus.SUPPRESSED


def test_webhook_without_a_configured_key_is_refused(settings: Settings) -> None:
    runtime = Runtime.open(settings)
    for url in _serve(runtime):
        answer = http("POST", f"{url}/webhooks/sendgrid", b"[]", {"X-Twilio-Email-Event-Webhook-Signature": "x"})
        assert answer.status == 503 and "webhook_public_key" in answer.json()["error"]
    runtime.close()


def test_report_shows_rates_and_warns_near_the_complaint_ceiling(app: App, project: Path) -> None:
    from tests.conftest import run_cli

    ids = _sent(app, project)
    batch = [_event("delivered", a, i, n) for n, (a, i) in enumerate(ids.items())]
    batch.append(_event("spamreport", "chloe@example.com", ids["chloe@example.com"], 10))
    batch.append(_event("click", "ana@example.com", ids["ana@example.com"], 11, url="https://acme.example.com"))
    assert app.post_events(batch).status == 200
    (dist,) = app.runtime.store.distributions()
    shown = run_cli(project, "report", str(dist.id))
    assert "delivered" in shown.output and "4" in shown.output and "25.0%" in shown.output
    assert "complaint rate 25.0%" in shown.output and "0.3%" in shown.output
    as_json = json.loads(run_cli(project, "report", str(dist.id), "--json").output)
    assert as_json["engagement"]["delivered"] == 4 and as_json["engagement"]["complained"] == 1
    assert as_json["engagement"]["clicked"] == 1


def _release(title: str, category: str) -> str:
    return (
        f"---\ntitle: {title}\ndate: 2026-03-0{len(title) % 9 + 1}\ncategories: [{category}]\n---\n"
        f"SPRINGFIELD, Ontario — Acme Instruments announced {title.lower()} today.\n"
    )


def test_the_page_offers_to_stop_only_one_category(tmp_path: Path) -> None:
    from email import message_from_bytes
    from email.policy import default

    from pipeline.config import load_settings
    from tests.conftest import run_cli, write_project

    project = write_project(tmp_path, {"a.md": _release("Acme Ships a Thermometer", "Technology")})
    assert run_cli(project, "run", "--once").exit_code == 0
    settings = load_settings(project)
    sent = next(p for p in settings.outbox_dir.rglob("*.eml") if p.name.startswith("ana@"))
    header = str(message_from_bytes(sent.read_bytes(), policy=default)["List-Unsubscribe"])
    link = header.split(",")[0].strip("<> ")
    runtime = Runtime.open(settings)
    for url in _serve(runtime):
        local = link.replace(settings.site.base_url, url)
        page = http("GET", local)
        assert page.status == 200 and 'value="category:Technology"' in page.body
        narrowed = http(
            "POST", local, b"scope=category%3ATechnology", {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert narrowed.status == 200 and "releases about Technology any more" in narrowed.body
    assert runtime.store.suppressed_hashes() == set()  # only one category stops
    assert runtime.store.opted_out(["technology"]) == {address_hash("ana@example.com")}
    runtime.close()
    (tmp_path / "releases" / "b.md").write_text(_release("Acme Ships a Barometer Too", "Technology"), encoding="utf-8")
    (tmp_path / "releases" / "c.md").write_text(_release("Acme Reports Its Results", "Business"), encoding="utf-8")
    assert run_cli(project, "run", "--once").exit_code == 0
    ana_folders = {p.parent.name for p in settings.outbox_dir.rglob("ana@*.eml")}
    assert len(ana_folders) == 2 and not any("barometer" in f for f in ana_folders)
    assert any("results" in f for f in ana_folders)
    assert len(list(settings.outbox_dir.rglob("bo@*.eml"))) == 3  # others get everything
