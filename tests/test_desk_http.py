"""The desk's rules over plain HTTP (uvicorn on loopback, a cookie jar per person): approval cannot be got
around, sessions end when they should, and odd input is a clear 4xx, never a 500."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn

from pipeline.config import load_settings
from pipeline.desk.compose import document_of, form_of
from pipeline.models import DistributionStatus, Release
from pipeline.runtime import Runtime
from pipeline.web import create_app
from tests.conftest import CONFIG, run_cli, wait_until, write_project
from tools.fake_smtp import free_port

PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    base: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    csrf: str = ""

    def open(self, method: str, path: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, final URL, body); redirects followed; the CSRF token of the page remembered."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method)
        try:
            with opener.open(request, timeout=15) as answer:
                status, url, text = answer.status, answer.url, answer.read().decode()
        except urllib.error.HTTPError as exc:
            status, url, text = exc.code, exc.url, exc.read().decode()
        found = re.search(r'name="csrf_token" value="([^"]+)"', text)
        if found:
            self.csrf = found.group(1)
        return status, url, text

    def post(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        return self.open("POST", path, {"csrf_token": self.csrf, **(data or {})})

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        self.open("GET", "/desk/login")
        status, url, _ = self.post("/desk/login", {"name": name, "password": password, "next": "/desk/"})
        assert status == 200 and url.endswith("/desk/"), (status, url)


@dataclass
class Desk:
    base: str
    config: Path
    runtime: Runtime

    def person(self, name: str) -> Person:
        person = Person(self.base)
        person.sign_in(name)
        return person


def _desk(tmp_path: Path, extra: str = "") -> Iterator[Desk]:
    config = write_project(tmp_path, {}, config=CONFIG + extra)
    for name, role in (("ed", "editor"), ("ann", "approver"), ("bob", "approver")):
        assert run_cli(config, "users", "add", name, "--role", role, input=PASSWORD + "\n").exit_code == 0
    assert run_cli(config, "contacts", "import", str(tmp_path / "contacts.csv")).exit_code == 0
    runtime = Runtime.open(load_settings(config))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "the app to listen")
    try:
        yield Desk(f"http://127.0.0.1:{port}", config, runtime)
    finally:
        server.should_exit = True
        thread.join(5)
        runtime.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    yield from _desk(tmp_path, "desk:\n  require_approval: true\n")


def _write_and_queue(person: Person, headline: str = "Acme Opens a Lab in Halifax", at: str = "") -> int:
    form = {"headline": headline, "body": "Acme opened a lab.", "embargo_tz": "America/Toronto"}
    status, url, _ = person.post("/desk/releases/write", form)
    assert status == 200 and "/desk/releases/" in url, (status, url)
    release_path = urllib.parse.urlparse(url).path
    person.open("GET", f"{release_path}/queue")
    status, url, _ = person.post(f"{release_path}/queue", {"audience": "all", "at": at, "step": "confirm"})
    assert status == 200 and "/desk/distributions/" in url, (status, url)
    return int(url.rstrip("/").rsplit("/", 1)[1])


def test_nobody_gets_around_the_second_approver(desk: Desk) -> None:
    ann, bob, ed = desk.person("ann"), desk.person("bob"), desk.person("ed")
    own = _write_and_queue(ann)
    assert desk.runtime.store.distribution(own).status is DistributionStatus.HELD  # held from the start
    for _ in range(3):  # a long audit trail changes nothing
        ann.open("GET", f"/desk/distributions/{own}")
        ann.post(f"/desk/distributions/{own}/reschedule", {"at": "2030-01-01T09:00", "tz": "UTC"})
    ann.open("GET", f"/desk/distributions/{own}")
    status, _, body = ann.post(f"/desk/distributions/{own}/approve")
    assert status == 400 and "other than the person who queued it" in body
    status, _, body = ann.post(f"/desk/distributions/{own}/release")
    assert status == 400 and "awaiting approval" in body
    assert desk.runtime.store.distribution(own).status is DistributionStatus.HELD
    # The other approver approves; then an editor's edit of the release sends it back for approval.
    bob.open("GET", f"/desk/distributions/{own}")
    assert bob.post(f"/desk/distributions/{own}/approve")[0] == 200
    assert desk.runtime.store.distribution(own).status is DistributionStatus.SCHEDULED
    release_id = desk.runtime.store.distribution(own).release_id
    ed.open("GET", f"/desk/releases/{release_id}/edit")
    edited = {"headline": "Acme Opens a Lab in Halifax", "body": "Text nobody approved.", "embargo_tz": "UTC"}
    assert ed.post(f"/desk/releases/{release_id}/edit", edited)[0] == 200
    after = desk.runtime.store.distribution(own)
    assert after.status is DistributionStatus.HELD and (after.note or "").startswith("awaiting approval again")
    # An editor cannot undo an approver's hold by moving the distribution.
    bob.open("GET", f"/desk/distributions/{own}")
    assert bob.post(f"/desk/distributions/{own}/approve")[0] == 200
    assert bob.post(f"/desk/distributions/{own}/hold")[0] == 200
    ed.open("GET", f"/desk/distributions/{own}")
    status, _, body = ed.post(f"/desk/distributions/{own}/reschedule", {"at": "2030-01-01T09:00", "tz": "UTC"})
    assert status == 400 and "only an approver" in body
    assert desk.runtime.store.distribution(own).status is DistributionStatus.HELD


def test_a_session_ends_on_sign_out_and_on_a_new_password(desk: Desk) -> None:
    ed = desk.person("ed")
    copied = Person(desk.base, jar=http.cookiejar.CookieJar())
    for cookie in ed.jar:
        copied.jar.set_cookie(cookie)
    copied.csrf = ed.csrf
    assert copied.open("GET", "/desk/queue")[1].endswith("/desk/queue")
    ed.post("/desk/logout")
    _, url, _ = copied.open("GET", "/desk/queue")
    assert "/desk/login" in url  # the copy of the cookie died with the sign-out
    assert copied.post("/desk/distributions/1/hold")[0] == 401
    ann = desk.person("ann")
    assert (
        run_cli(desk.config, "users", "add", "ann", "--role", "approver", input="a brand new password\n").exit_code == 0
    )
    assert "/desk/login" in ann.open("GET", "/desk/")[1]


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/desk/contacts?page=%C2%B2", None),
        ("GET", "/desk/calendar?month=9999-12", None),
        ("GET", "/desk/calendar?month=0001-01", None),
        ("GET", "/desk/calendar?month=abc", None),
        ("GET", "/desk/releases/999", None),
        ("GET", "/desk/distributions/999", None),
        (
            "POST",
            "/desk/releases/write",
            {"headline": "X", "body": "Y", "embargo": "2026-03-10T09:00", "embargo_tz": "America"},
        ),
        (
            "POST",
            "/desk/releases/write",
            {"headline": "X", "body": "Y", "embargo": "9999-12-31T23:59", "embargo_tz": "UTC"},
        ),
        (
            "POST",
            "/desk/releases/write",
            {"headline": "X", "body": "Y", "embargo_tz": "x" * 300, "embargo": "2026-03-10T09:00"},
        ),
        ("POST", "/desk/releases/write", {}),
    ],
)
def test_odd_input_is_a_clear_answer_never_a_500(
    desk: Desk, method: str, path: str, data: dict[str, str] | None
) -> None:
    ed = desk.person("ed")
    ed.open("GET", "/desk/releases/new")
    status, _, body = ed.post(path, data) if method == "POST" else ed.open(method, path)
    assert status < 500, body[:500]
    assert "Traceback" not in body


def test_far_times_are_refused_and_the_calendar_survives(desk: Desk) -> None:
    ann = desk.person("ann")
    dist = _write_and_queue(ann)
    ann.open("GET", f"/desk/distributions/{dist}")
    status, _, body = ann.post(f"/desk/distributions/{dist}/reschedule", {"at": "0001-01-01T00:00", "tz": "UTC"})
    assert status == 400 and "1970 to 2999" in body
    assert ann.open("GET", "/desk/calendar")[0] == 200


def test_a_search_for_a_wildcard_finds_only_what_it_says(desk: Desk) -> None:
    ed = desk.person("ed")
    assert 'id="contacts-total">0 contacts' in ed.open("GET", "/desk/contacts?q=_")[2]
    assert 'id="contacts-total">1 contact matching' in ed.open("GET", "/desk/contacts?q=gazette")[2]


def test_a_form_without_a_length_is_refused(desk: Desk) -> None:
    ed = desk.person("ed")
    ed.open("GET", "/desk/releases/new")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(ed.jar))

    def chunks() -> Iterator[bytes]:
        yield f"csrf_token={ed.csrf}&headline=x&body=".encode()
        yield b"y" * 1024

    request = urllib.request.Request(
        desk.base + "/desk/releases/write",
        data=chunks(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=15)
    assert refused.value.code == 411


def test_editing_twice_after_a_correction_keeps_the_second_edit(desk: Desk) -> None:
    ann = desk.person("ann")
    dist = _write_and_queue(ann)
    release_id = desk.runtime.store.distribution(dist).release_id
    for headline, body in (("Acme Opens a Bigger Lab", "First edit."), ("Acme Opens a Lab in Halifax", "Second edit.")):
        ann.open("GET", f"/desk/releases/{release_id}/edit")
        assert (
            ann.post(f"/desk/releases/{release_id}/edit", {"headline": headline, "body": body, "embargo_tz": "UTC"})[0]
            == 200
        )
        stored = desk.runtime.store.release(release_id).release
        assert (stored.headline, stored.body) == (headline, (body,))


def test_an_embargo_in_the_repeated_autumn_hour_survives_an_untouched_edit(tmp_path: Path) -> None:
    """Toronto, 7 November 2027: 01:30 happens twice; the second (EST, 06:30 UTC) must stay the second."""
    from datetime import datetime

    from pipeline.parse import parse_release

    release = Release(
        headline="A Late Embargo", body=("Text.",), embargo=datetime.fromisoformat("2027-11-07T01:30:00-05:00")
    )
    form = form_of(release, "America/Toronto")
    assert form["embargo"] == "2027-11-07T01:30"
    path = tmp_path / "again.md"
    path.write_text(document_of(form), encoding="utf-8")
    again = parse_release(path)
    assert again.embargo is not None and again.embargo == release.embargo
