"""The web desk end to end: `pipeline serve --worker` as a real process, driven by Debian's headless Chromium
through Playwright. Screenshots of each screen go to $PIPELINE_SCREENSHOTS when it is set."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.config import load_settings
from pipeline.parse import parse_release
from pipeline.runtime import Runtime
from tests.conftest import CONFIG, SEED, WIRE_RELEASE, run_cli, wait_until, write_project
from tests.web_rig import http, public_key_b64, signed_post
from tools.fake_smtp import free_port

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("Debian's chromium is not installed: .ci/run installs it (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

FLAGS = [  # a closed network: no background connections, no first-run screens
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
PAGES = ["/", "/releases", "/releases/new", "/queue", "/calendar", "/contacts", "/suppressions", "/releases/1"]


@dataclass
class Desk:
    url: str
    config: Path
    root: Path
    key: ec.EllipticCurvePrivateKey
    shots: Path | None

    def shot(self, page: Page, name: str) -> None:
        if self.shots is not None:
            page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {"PIPELINE_SECRET": "desk-test-secret"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config), "serve", "--port", str(port), "--worker"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(config.parent / "serve.log").open("wb"),
    )


def _desk(tmp_path: Path, extra_config: str = "") -> Iterator[Desk]:
    key = ec.generate_private_key(ec.SECP256R1())
    config_text = CONFIG.replace(
        "  max_lateness: 2h\n", "  max_lateness: 2h\n  sweep_interval: 1s\n  leader_lease: 3s\n"
    )
    config_text = config_text.replace("outbox:\n", f"sendgrid:\n  webhook_public_key: {public_key_b64(key)}\noutbox:\n")
    config = write_project(tmp_path, {}, config=config_text + extra_config)
    assert run_cli(config, "users", "add", "riley", "--role", "editor", input=PASSWORD + "\n").exit_code == 0
    added = run_cli(
        config, "users", "add", "dana", "--role", "approver", "--email", "dana@acme.example.com", input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    port = free_port()
    server = _start(config, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _listening(url, server), 30, "pipeline serve to listen")
        shots = Path(os.environ["PIPELINE_SCREENSHOTS"]) if os.environ.get("PIPELINE_SCREENSHOTS") else None
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
        yield Desk(url, config, tmp_path, key, shots)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)


def _listening(url: str, server: subprocess.Popen[bytes]) -> bool:
    assert server.poll() is None, "pipeline serve exited; see serve.log in the test's folder"
    try:
        return http("GET", f"{url}/healthz").status == 200
    except urllib.error.URLError:
        return False


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    yield from _desk(tmp_path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def sign_in(page: Page, desk: Desk, name: str = "riley") -> None:
    page.goto(f"{desk.url}/desk/")
    expect(page).to_have_url(re.compile(r"/desk/login"))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Good to see you, {name}")


def test_every_page_needs_sign_in_and_a_wrong_password_is_refused(desk: Desk, page: Page) -> None:
    for path in PAGES:
        page.goto(f"{desk.url}/desk{path}")
        expect(page).to_have_url(re.compile(r"/desk/login\?next="))
    assert http("POST", f"{desk.url}/desk/releases/write", b"headline=x").status == 401
    assert "Sign in to the desk" in http("GET", f"{desk.url}/desk/distributions/1/progress.json").body
    page.goto(f"{desk.url}/desk/queue")
    page.get_by_label("Name").fill("riley")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    desk.shot(page, "01-sign-in-refused")
    page.get_by_label("Name").fill("riley")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{desk.url}/desk/queue")  # back where they were going
    expect(page.get_by_role("heading", level=1)).to_have_text("Queue")


def test_a_form_posted_without_the_csrf_token_is_refused(desk: Desk, page: Page) -> None:
    sign_in(page, desk)
    form: dict[str, str | float | bool] = {"headline": "Forged Release", "body": "Someone else's words."}
    refused = page.request.post(f"{desk.url}/desk/releases/write", form=form, max_redirects=0)
    assert refused.status == 403 and "CSRF" in refused.text()
    wrong = page.request.post(f"{desk.url}/desk/releases/write", form=form | {"csrf_token": "guess"}, max_redirects=0)
    assert wrong.status == 403
    page.goto(f"{desk.url}/desk/releases")
    expect(page.get_by_text("Forged Release")).to_have_count(0)  # nothing was stored
    # The same form with the session's token goes through.
    page.goto(f"{desk.url}/desk/releases/new")
    token = page.locator("form[action$='/releases/write'] input[name='csrf_token']").input_value()
    accepted = page.request.post(f"{desk.url}/desk/releases/write", form=form | {"csrf_token": token}, max_redirects=0)
    assert accepted.status == 303
    page.goto(f"{desk.url}/desk/releases")
    expect(page.get_by_role("link", name="Forged Release")).to_be_visible()


def test_upload_preview_queue_and_watch_it_send(desk: Desk, page: Page) -> None:
    runtime = Runtime.open(load_settings(desk.config))
    assert run_cli(desk.config, "contacts", "import", str(desk.root / "contacts.csv")).exit_code == 0
    sign_in(page, desk, "dana")
    desk.shot(page, "02-home")
    # Upload a wire release (the seed from the corpus when it is there, else our own wire-style sample).
    document = desk.root / "upload.txt"
    document.write_text(SEED.read_text(encoding="utf-8") if SEED.exists() else WIRE_RELEASE, encoding="utf-8")
    expected = parse_release(document)  # what `pipeline parse` makes of it
    headline = "BIOQuébec and BioForward Wisconsin Sign a Partnership"
    page.get_by_role("link", name="New release").first.click()
    desk.shot(page, "03-new-release")
    page.get_by_label(re.compile("Release document")).set_input_files(str(document))
    page.get_by_role("button", name="Upload and read").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(expected.title)
    expect(field_row(page, "Dateline")).to_contain_text(expected.dateline or "")
    expect(field_row(page, "Date")).to_contain_text(expected.date.isoformat() if expected.date else "")
    if not expected.headline:
        expect(page.get_by_role("heading", name=re.compile("^Not found: headline"))).to_be_visible()
    expect(field_row(page, "Headline")).to_contain_text(
        str(expected.headline or "not found")  # a missing field is marked, not left blank
    )
    for contact in expected.contacts:
        expect(page.locator("main")).to_contain_text(contact.email or contact.name or "")
    for about in expected.about:
        expect(page.get_by_role("heading", name=f"About {about.name}")).to_be_visible()
    desk.shot(page, "04-release-fields")
    # Edit a field and read it again: the draft is replaced, not duplicated.
    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("Headline", exact=True).fill("BIOQuébec and BioForward Wisconsin Sign a Partnership")
    page.get_by_role("button", name="Save and read again").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("BIOQuébec and BioForward Wisconsin Sign a Partnership")
    expect(field_row(page, "Headline")).not_to_contain_text("not found")
    expect(field_row(page, "Dateline")).to_contain_text(expected.dateline or "")
    assert [r.title for r in runtime.store.release_summaries()] == [
        "BIOQuébec and BioForward Wisconsin Sign a Partnership"
    ]
    release_url = page.url

    # Preview: the email in a sandboxed frame at phone width, the plain text, the feed item.
    page.get_by_role("link", name="Preview").click()
    page.get_by_role("tab", name="Email, phone").click()
    phone = page.locator("iframe.frame-phone")
    expect(phone).to_be_visible()
    assert phone.get_attribute("sandbox") == ""
    assert phone.bounding_box()["width"] == pytest.approx(375, abs=2)  # type: ignore[index]
    expect(page.frame_locator("iframe.frame-phone").locator("h1")).to_have_text(headline)
    desk.shot(page, "05-preview-phone")
    page.get_by_role("tab", name="Plain text").focus()
    page.keyboard.press("ArrowRight")  # keyboard moves between tabs
    expect(page.get_by_role("tab", name="Feed item")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-feed pre")).to_contain_text("<item>")
    page.get_by_role("tab", name="Email, desktop").click()
    desk.shot(page, "06-preview-desktop")
    page.get_by_role("button", name="Send a test email to dana@acme.example.com").click()
    expect(page.locator(".flash")).to_contain_text("test email to dana@acme.example.com: accepted")
    (test_copy,) = load_settings(desk.config).outbox_dir.glob("test-*/*.eml")
    message = email.message_from_bytes(test_copy.read_bytes(), policy=email.policy.default)
    assert str(message["Subject"]).strip() == f"[TEST] {headline}"
    assert message["To"].addresses[0].addr_spec == "dana@acme.example.com"
    test_copy.unlink()  # so the outbox below holds only the distribution

    # Queue to an audience for a time a few seconds ahead, in Toronto time.
    page.goto(release_url)
    page.get_by_role("link", name="Queue…").click()
    page.get_by_label(re.compile(r"^tech")).check()
    page.get_by_label(re.compile(r"^all")).uncheck()
    when = (datetime.now(ZoneInfo("America/Toronto")) + timedelta(seconds=8)).replace(microsecond=0)
    page.get_by_label("Send at (local time)").fill(when.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Count recipients").click()
    expect(page.locator("#recipient-count")).to_have_text("2")  # ana and bo cover technology
    expect(page.locator("#queue-when")).to_contain_text(when.strftime("%Y-%m-%d %H:%M"))
    desk.shot(page, "07-queue-confirm")
    page.get_by_role("button", name="Confirm and queue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Distribution")
    expect(page.locator("#dist-status")).to_have_text("scheduled")
    desk.shot(page, "08-distribution-scheduled")
    # The worker inside `pipeline serve --worker` sends it at its time; the page follows without a reload.
    expect(page.locator("#dist-status")).to_have_text("sent", timeout=40_000)
    expect(page.locator('[data-count="accepted"]')).to_have_text("2")
    outbox = load_settings(desk.config).outbox_dir
    assert sorted(p.name.split("-")[0] for p in outbox.rglob("*.eml")) == ["ana@example.com", "bo@example.test"]

    # The provider reports deliveries and opens through the signed webhook; the counts and chart show them.
    dist_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    ledger = {str(d["address"]): int(d["id"]) for d in runtime.store.deliveries_of(dist_id)}
    events = [
        {
            "email": a,
            "event": kind,
            "timestamp": int(datetime.now().timestamp()) + n,
            "sg_event_id": f"e{kind}{n}",
            "delivery_id": str(i),
        }
        for n, (a, i) in enumerate(ledger.items())
        for kind in ("delivered", "open")
    ]
    assert signed_post(f"{desk.url}/webhooks/sendgrid", events, desk.key).status == 200
    page.reload()
    expect(page.locator('[data-engagement="delivered"]')).to_have_text("2")
    expect(page.locator('[data-engagement="opened"]')).to_have_text("2")
    expect(page.locator("svg.chart title")).to_have_text(f"Distribution {dist_id} over time")
    expect(page.locator(".audit")).to_contain_text("dana queued")
    desk.shot(page, "09-distribution-sent")
    page.get_by_role("link", name="Queue", exact=True).click()
    expect(page.locator("tbody tr").first).to_contain_text("sent")
    desk.shot(page, "10-queue")
    page.get_by_role("link", name="Calendar").first.click()
    expect(page.locator(".calendar .event")).to_have_count(1)
    desk.shot(page, "11-calendar")
    runtime.close()


def field_row(page: Page, label: str) -> Locator:
    return page.locator("table.fields tr").filter(has=page.locator("th", has_text=re.compile(f"^{label}$")))


def test_contacts_are_searchable_and_export_as_csv(desk: Desk, page: Page) -> None:
    assert run_cli(desk.config, "contacts", "import", str(desk.root / "contacts.csv")).exit_code == 0
    assert run_cli(desk.config, "contacts", "forget", "dev@example.com", "--yes").exit_code == 0
    sign_in(page, desk)
    page.get_by_role("link", name="Contacts").click()
    expect(page.locator("#contacts-total")).to_have_text("3 contacts")
    page.get_by_label("Search address, name or outlet").fill("gazette")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#contacts-total")).to_contain_text("1 contact matching")
    expect(page.locator("tbody")).to_contain_text("chloe@example.com")
    desk.shot(page, "12-contacts")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Export these")).click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [r["email"] for r in rows] == ["chloe@example.com"]
    page.get_by_role("link", name="Suppressions").click()
    expect(page.locator("tbody")).to_contain_text("(forgotten on request)")
    desk.shot(page, "13-suppressions")


def test_a_second_person_must_approve_when_approval_is_required(tmp_path: Path, browser: Browser) -> None:
    for desk in _desk(tmp_path, "desk:\n  require_approval: true\n"):
        assert run_cli(desk.config, "contacts", "import", str(desk.root / "contacts.csv")).exit_code == 0
        editor = browser.new_context().new_page()
        sign_in(editor, desk, "riley")
        editor.goto(f"{desk.url}/desk/releases/new")
        editor.get_by_label("Headline", exact=True).fill("Acme Opens a Lab in Halifax")
        editor.get_by_label("Dateline", exact=True).fill("HALIFAX, Nova Scotia")
        editor.get_by_label("Body", exact=True).fill(
            "Acme Instruments opened a lab.\n\nForty engineers will work there."
        )
        editor.get_by_role("button", name="Save and read").click()
        expect(field_row(editor, "Dateline")).to_contain_text("HALIFAX, Nova Scotia")
        expect(editor.locator("ol.body li")).to_have_count(2)
        editor.get_by_role("link", name="Queue…").click()
        editor.get_by_role("button", name="Count recipients").click()
        editor.get_by_role("button", name="Confirm and queue").click()
        expect(editor.locator("#dist-status")).to_have_text("held")
        expect(editor.get_by_text("Waiting for an approver other than the person who queued it")).to_be_visible()
        expect(editor.get_by_role("button", name="Approve")).to_have_count(0)
        dist_url = editor.url
        token = editor.locator("input[name='csrf_token']").first.input_value()
        forced = editor.request.post(f"{dist_url}/approve", form={"csrf_token": token}, max_redirects=0)
        assert forced.status == 403  # an editor cannot approve, even by posting the form
        approver = browser.new_context().new_page()
        sign_in(approver, desk, "dana")
        approver.goto(dist_url)
        approver.get_by_role("button", name="Approve").click()
        expect(approver.locator(".flash")).to_contain_text("approved")
        expect(approver.locator("#dist-status")).to_have_text("sent", timeout=40_000)
        expect(approver.locator(".audit")).to_contain_text("dana approve")
        expect(approver.locator(".audit")).to_contain_text("riley queued")
        desk.shot(approver, "14-approved-and-sent")
        editor.context.close()
        approver.context.close()
