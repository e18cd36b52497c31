"""Every email a release can produce, parsed back with the standard library's email parser."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.message import build_message
from pipeline.models import Attachment, Boilerplate, MediaContact, Quote, Release
from pipeline.parse import parse_release, release_files
from pipeline.render import MAX_EMAIL_HTML
from pipeline.runtime import Runtime
from tests.conftest import ROOT

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden"

FRENCH = Release(
    headline="Bellerive inaugure un centre de recherche à Laval — « une première »",
    date=date(2026, 11, 4),
    dateline="LAVAL, QC",
    wire="CNW Telbec",
    language="fr",
    embargo=datetime(2026, 11, 5, 11, 0, tzinfo=UTC),
    body=("Laboratoires Bellerive inaugure aujourd'hui un centre de recherche.", "« Un grand jour », a dit Hélène."),
    quotes=(Quote("Hélène Tremblay", "Un grand jour"),),
    about=(Boilerplate("Laboratoires Bellerive", "Bellerive conçoit des vaccins depuis 1998."),),
    contacts=(MediaContact("Marc-André Gagnon", "marc@bellerive.example", "514-555-0188"),),
)


def _message(runtime: Runtime, release: Release, embargoed: bool = False, name: str = "Chloé Roy") -> EmailMessage:
    rendition = runtime.renderer.email(release, release.slug, embargoed_preview=embargoed)
    recipient = runtime.links.recipient(7, "chloe@example.com", name)
    raw = build_message(rendition, recipient, NOW).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    parsed.raw = raw  # type: ignore[attr-defined]
    return parsed


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _sample_releases() -> list[Release]:
    files = release_files(ROOT / "releases") + release_files(GOLDEN)
    return [parse_release(p, ZoneInfo("America/Toronto")) for p in files]


def test_mime_structure_encodings_and_headers(runtime: Runtime) -> None:
    message = _message(runtime, FRENCH)
    raw: bytes = message.raw  # type: ignore[attr-defined]
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")  # headers are 7-bit: non-ASCII is RFC 2047 encoded
    subject = re.search(r"^Subject: (.*(?:\r\n[ \t].*)*)", head, re.MULTILINE)
    assert subject and "=?utf-8?" in subject.group(1).lower()
    assert re.search(r"^To: =\?utf-8\?.*<chloe@example.com>", head, re.MULTILINE | re.IGNORECASE)
    assert message["Subject"] == FRENCH.headline
    assert message["To"].addresses[0].display_name == "Chloé Roy"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    for header in ("Message-ID", "Date", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post", "X-Delivery-Id"):
        assert message[header], header
    assert email.utils.parsedate_to_datetime(message["Date"]) == NOW
    https, mailto = (u.strip(" <>") for u in message["List-Unsubscribe"].split(","))
    assert https.startswith("https://news.acme.example.com/") and mailto.startswith("mailto:unsubscribe@")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_french_release_gets_french_chrome(runtime: Runtime) -> None:
    text, html = _parts(_message(runtime, FRENCH))
    for part in (text, html):
        assert "À propos de Laboratoires Bellerive" in part
        assert "Se désabonner" in part
        assert "Vous recevez ce message" in part
        assert "4 novembre 2026" in part
    assert 'lang="fr"' in html


def test_embargoed_preview_states_the_embargo_in_local_time(runtime: Runtime) -> None:
    english = replace(
        FRENCH, language="en", headline="Bellerive Opens a Lab", embargo=datetime(2026, 3, 5, 14, tzinfo=UTC)
    )
    message = _message(runtime, english, embargoed=True)
    assert message["Subject"] == "EMBARGOED UNTIL 09:00 EST, March 5, 2026: Bellerive Opens a Lab"
    text, html = _parts(message)
    assert "*** EMBARGOED UNTIL 09:00 EST, March 5, 2026 ***" in text
    assert 'class="banner"' in html and "EMBARGOED UNTIL 09:00 EST, March 5, 2026" in html
    french = _message(runtime, FRENCH, embargoed=True)
    assert french["Subject"].startswith("SOUS EMBARGO JUSQU'AU 5 novembre 2026 à 06 h 00 (EST): ")
    assert "EMBARGO" not in _message(runtime, english)["Subject"]  # a normal send after the embargo


def test_html_layout_inlined_css_preheader_and_footer(runtime: Runtime) -> None:
    photo = Attachment("https://cdn.acme.example.com/lab.jpg", "image/jpeg", "The new lab in Laval", 1000)
    _, html = _parts(_message(runtime, replace(FRENCH, media=(photo,))))
    assert re.search(r'<table[^>]*width="600"', html)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL)
    assert styles and all("@media" in block for block in styles)  # only media queries stay in <style>
    assert all(re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", block).strip() == "" for block in styles)
    assert 'style="' in html
    assert re.search(r'<div style="display:\s*none[^"]*">Laboratoires Bellerive inaugure', html)  # preheader
    assert all(re.search(r'alt="[^"]+"', tag) for tag in re.findall(r"<img[^>]*>", html))
    assert 'alt="The new lab in Laval"' in html
    assert "1 Test Road, Springfield" in html and "%unsubscribe_url%" not in html


def test_plain_text_is_written_from_the_release(runtime: Runtime) -> None:
    release = replace(
        FRENCH,
        language="en",
        body=("Acme opened a lab. Details at https://acme.example.com/lab and www.example.com/more " + "x " * 60,),
    )
    text, _ = _parts(_message(runtime, release))
    assert "<" not in text.replace("<https", "")  # no markup
    assert all(len(line) <= 72 for line in text.splitlines() if " " in line.strip())
    assert "[1] https://acme.example.com/lab" in text and "[2] www.example.com/more" in text


@pytest.mark.parametrize("release", _sample_releases(), ids=lambda r: r.slug[:40])
def test_no_email_exceeds_90_kb(runtime: Runtime, release: Release) -> None:
    for embargoed in (False, True):
        rendition = runtime.renderer.email(release, release.slug, embargoed_preview=embargoed)
        assert len(rendition.html.encode()) <= MAX_EMAIL_HTML
        message = _message(runtime, release, embargoed)
        assert len(message.get_body(("html",)).get_content().encode()) <= MAX_EMAIL_HTML  # type: ignore[union-attr]


def test_a_release_too_long_for_email_is_cut_with_a_link(runtime: Runtime) -> None:
    long_release = replace(FRENCH, language="en", body=tuple(f"Paragraph {n}. " + "word " * 120 for n in range(400)))
    rendition = runtime.renderer.email(long_release, long_release.slug)
    assert len(rendition.html.encode()) <= MAX_EMAIL_HTML
    assert "Paragraph 0." in rendition.html and "Paragraph 399." not in rendition.html
    assert "too long for email" in rendition.html
    assert "%unsubscribe_url%" in rendition.html  # the footer and its unsubscribe link survive


def test_preview_command_writes_an_embargoed_preview(project: Path) -> None:
    from tests.conftest import run_cli

    path = project.parent / "releases" / "embargoed.txt"
    path.write_text(
        "EMBARGOED UNTIL 09:00 ET, 5 March 2026\n\nAcme Opens a Lab\n\n"
        "SPRINGFIELD, Ontario--(EXAMPLE WIRE)--Acme opened a lab today in Springfield.\n",
        encoding="utf-8",
    )
    out = project.parent / "preview"
    result = run_cli(project, "preview", str(path), "--out", str(out), "--embargoed")
    assert result.exit_code == 0, result.output
    message = email.message_from_bytes((out / "message.eml").read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "EMBARGOED UNTIL 09:00 EST, March 5, 2026: Acme Opens a Lab"
    plain = run_cli(project, "preview", str(project.parent / "releases" / "acme.txt"), "--embargoed")
    assert plain.exit_code == 2 and "needs a release with an embargo" in plain.output
