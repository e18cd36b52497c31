"""The parser through parse_release: the seed, the project's own formats, bad input, and arbitrary input."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import ReleaseParseError
from pipeline.parse import parse_release
from tests.conftest import ROOT, SEED, WIRE_RELEASE, needs_corpus

TORONTO = ZoneInfo("America/Toronto")


@needs_corpus
def test_seed_release_fields() -> None:
    release = parse_release(SEED)
    assert release.date == date(2021, 3, 23)
    assert release.dateline == "BROMONT, Québec"
    assert release.wire == "BUSINESS WIRE"
    assert release.headline is None
    assert release.language == "en"
    assert release.body[0].startswith("BIOQuébec, Québec's largest network")
    assert [a.name for a in release.about] == ["BIOQuébec", "BioForward Wisconsin"]
    assert [q.speaker for q in release.quotes] == ["Martine Hébert", "Anie Perrault", "Lisa Johnson"]
    # The split quote is one quotation; the event title in curly quotes is not a quotation.
    assert "I am pleased that Martine Hébert" in release.quotes[2].text
    assert not any("Two Thriving" in q.text for q in release.quotes)
    assert all("About" not in p[:6] for p in release.body)


def test_wire_release_fields(tmp_path: Path) -> None:
    path = tmp_path / "acme.txt"
    path.write_text(WIRE_RELEASE, encoding="utf-8")
    release = parse_release(path, TORONTO)
    assert release.headline == "Acme Instruments Ships Its First Quantum Thermometer"
    assert release.subheadline == "The sensor reads temperatures to a millionth of a degree"
    assert release.dateline == "SPRINGFIELD, Ontario"
    assert release.wire == "EXAMPLE WIRE"
    assert release.date == date(2026, 3, 3)
    assert release.body[0].startswith("Acme Instruments today shipped")
    assert release.quotes[0].speaker == "Dana Whitfield"
    assert release.about[0].name == "Acme Instruments"
    assert release.end_marker == "###"
    assert release.contacts[0].name == "Riley Stone"
    assert release.contacts[0].email == "riley.stone@acme.example.com"
    assert release.contacts[0].phone == "+1 555-010-0199"


def test_markdown_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "launch.md"
    path.write_text(
        "---\nheadline: Acme Opens a Lab\nsubheadline: In Springfield\ndate: 2026-05-04\n"
        "embargo: 2026-05-04 09:00\naudiences: [tech, french]\ncategories: funding\nlanguage: en\n---\n\n"
        "SPRINGFIELD, Ontario, May 4, 2026 /EXAMPLE WIRE/ -- Acme opened a lab.\n\n"
        "« Nous sommes ravis d'ouvrir ce laboratoire aujourd'hui », a déclaré Marie Tremblay.\n\n"
        "## About Acme\n\nAcme makes things.\n\n-30-\n",
        encoding="utf-8",
    )
    release = parse_release(path, TORONTO)
    assert release.headline == "Acme Opens a Lab"
    assert release.subheadline == "In Springfield"
    assert release.embargo == datetime(2026, 5, 4, 9, 0, tzinfo=TORONTO)
    assert release.audiences == ("tech", "french")
    assert release.categories == ("funding",)
    assert release.wire == "EXAMPLE WIRE"
    assert release.body == ("Acme opened a lab.", release.body[1])
    assert release.quotes[0].speaker == "Marie Tremblay"
    assert release.about[0].name == "Acme"
    assert release.end_marker == "-30-"


def test_project_samples_parse_cleanly() -> None:
    from pipeline.parse import release_files

    files = release_files(ROOT / "releases")
    assert len(files) >= 3
    languages = set()
    for path in files:
        release = parse_release(path, TORONTO)
        languages.add(release.language)
        assert release.headline and release.body and release.about and release.contacts, path
        assert not release.problems, (path, release.problems)
    assert {"en", "fr"} <= languages
    assert any(parse_release(p, TORONTO).embargo for p in files)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("broken.md", "---\nheadline: [unclosed\n---\nbody\n", "broken.md:2: front matter is not valid YAML"),
        ("never.md", "---\nheadline: x\nbody\n", "never.md:1: front matter opened with '---' is never closed"),
        ("date.md", "---\ndate: someday\n---\nText.\n", "date.md:2: front matter 'date'"),
        ("scan.pdf", "%PDF-1.4", "unsupported file type '.pdf'"),
    ],
)
def test_bad_documents_name_file_and_line(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReleaseParseError) as caught:
        parse_release(path)
    assert fragment in str(caught.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ReleaseParseError, match=r"missing\.txt: file not found"):
        parse_release(tmp_path / "missing.txt")
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    with pytest.raises(ReleaseParseError, match="binary"):
        parse_release(binary)


def test_latin1_file_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("MONTRÉAL, Québec--(EXAMPLE WIRE)--Le communiqué est arrivé à l'été.\r\n".encode("latin-1"))
    release = parse_release(path)
    assert release.dateline == "MONTRÉAL, Québec"
    assert release.body[0].startswith("Le communiqué")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".txt", ".md", ".html"]))
def test_any_bytes_give_a_release_or_our_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        release = parse_release(path)
    except ReleaseParseError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(release.body, tuple)


_WIRE_LINES = st.sampled_from(
    [
        "FOR IMMEDIATE RELEASE",
        "###",
        "-30-",
        "About Acme",
        "Media contact:",
        "EMBARGOED UNTIL 09:00 ET, 5 March 2026",
        "TORONTO, March 3, 2026 /PRNewswire/ -- Text.",
        '"Quote here is long enough," said Jane Doe.',
        "« Une citation assez longue ici », a déclaré Marie Roy.",
        "jane [at] example [dot] com",
        "+1 555 010 0199",
        "---",
        "title: x",
        "# Heading",
        "",
        "   ",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.one_of(_WIRE_LINES, st.text(max_size=120)), max_size=40),
    suffix=st.sampled_from([".txt", ".md", ".html"]),
)
def test_release_shaped_text_never_crashes(tmp_path: Path, lines: list[str], suffix: str) -> None:
    path = tmp_path / f"shaped{suffix}"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        release = parse_release(path)
    except ReleaseParseError:
        return
    assert all(isinstance(p, str) and p for p in release.body)
    assert release.to_json().keys() >= {"headline", "body", "quotes", "about", "contacts", "end_marker"}


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("SAN FRANCISCO, April, 12, 2016", date(2016, 4, 12)),
        ("Tuesday, March 3, 2026", date(2026, 3, 3)),
        ("le 4 oct. 2026", date(2026, 10, 4)),
        ("4. Oktober 2026", date(2026, 10, 4)),
        ("5 de marzo de 2026", date(2026, 3, 5)),
        ("den 4 oktober 2026", date(2026, 10, 4)),
        ("2026-03-05", date(2026, 3, 5)),
    ],
)
def test_dates_in_several_languages(text: str, when: date) -> None:
    from pipeline.parse.dates import find_date

    found = find_date(text)
    assert found is not None and found[0] == when


@pytest.mark.parametrize(
    ("first_paragraph", "place", "wire", "when"),
    [
        ("BROMONT, Québec--(BUSINESS WIRE)--Text follows.", "BROMONT, Québec", "BUSINESS WIRE", None),
        ("NEW YORK & LONDON--(BUSINESS WIRE)--Text follows.", "NEW YORK & LONDON", "BUSINESS WIRE", None),
        ("TORONTO, March 3, 2026 /PRNewswire/ -- Text follows.", "TORONTO", "PRNewswire", date(2026, 3, 3)),
        ("MONTRÉAL, le 4 oct. 2026 /CNW Telbec/ - Le texte suit.", "MONTRÉAL", "CNW Telbec", date(2026, 10, 4)),
        (
            "OSLO, Norway, March 3, 2026 (GLOBE NEWSWIRE) -- Text follows.",
            "OSLO, Norway",
            "GLOBE NEWSWIRE",
            date(2026, 3, 3),
        ),
        ("Boston, MA – March 3, 2026 – Text follows.", "Boston, MA", None, date(2026, 3, 3)),
        ("The company said – in a statement – that it grew.", None, None, None),
        (
            "Boerne, TX (Example Wire) Monday Aug 26, 2024 @ 6:00 AM Pacific — Text follows.",
            "Boerne, TX",
            "Example Wire",
            date(2024, 8, 26),
        ),
    ],
)
def test_dateline_shapes(first_paragraph: str, place: str | None, wire: str | None, when: date | None) -> None:
    from pipeline.parse.fields import find_dateline

    found = find_dateline(first_paragraph, 2026)
    if place is None:
        assert found is None
        return
    assert found is not None
    assert (found.place, found.wire, found.date) == (place, wire, when)
    assert found.rest.startswith(("Text follows.", "Le texte suit."))


def test_html_page_article_without_chrome_or_scripts(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<!doctype html><html lang=en><head><title>Acme Opens a Lab | Acme</title>"
        "<meta property='article:published_time' content='2026-04-02T10:00:00Z'>"
        "<style>p { color: red }</style><script>var leaked = 'SCRIPT';</script></head><body>"
        "<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        "<article><h1>Acme Opens a Lab</h1>"
        "<p>SPRINGFIELD, Ontario – April 2, 2026 – Acme opened a laboratory for quantum sensors today, "
        "its largest investment in research so far.</p>"
        "<p>&ldquo;This lab brings our researchers and customers under one roof,&rdquo; said Dana Whitfield, "
        "chief executive officer.</p><h2>About Acme</h2><p>Acme builds measuring tools.</p>"
        "<p><strong>Media contact:</strong><br>Riley Stone<br>riley@acme.example.com</p></article>"
        "<footer>Copyright Acme</footer><script>document.write('SCRIPT2')</script></body></html>",
        encoding="utf-8",
    )
    release = parse_release(path)
    text = " ".join([*release.body, *(a.text for a in release.about)])
    assert "SCRIPT" not in text and "color: red" not in text and "Copyright" not in text and "Home" not in text
    assert release.headline == "Acme Opens a Lab"
    assert release.date == date(2026, 4, 2)
    assert release.dateline == "SPRINGFIELD, Ontario"
    assert release.body[0].startswith("Acme opened a laboratory")
    assert release.quotes[0].speaker == "Dana Whitfield"
    assert release.about[0].name == "Acme"
    assert release.contacts[0].email == "riley@acme.example.com"


def test_contacts_with_obfuscated_addresses_and_no_dates_as_phones() -> None:
    from pipeline.parse.fields import find_contacts

    found = find_contacts(
        [
            "Issued 2010-03-25 (1958-2010 archive)",
            "Jane Roe",
            "Example Media Relations",
            "jane.roe [at] example [dot] com",
            "Tel: (902) 555-0142",
            "Sam Poe, sam@example.test, +1 555 010 0199",
            "Press Team",
            "press at example dot org",
        ]
    )
    # Obfuscated addresses are kept as printed: the sender chose not to publish them plainly.
    assert [(c.name, c.email, c.phone) for c in found] == [
        ("Jane Roe", "jane.roe [at] example [dot] com", "(902) 555-0142"),
        ("Sam Poe", "sam@example.test", "+1 555 010 0199"),
        ("Press Team", "press at example dot org", None),
    ]
    assert found[0].organization == "Example Media Relations"


def test_hard_wrapped_headline_and_paragraph_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.txt"
    path.write_text(
        "Acme Instruments Ships Its First Quantum Thermometer to Three\n"
        "university laboratories in Ontario\n\n"
        "Dana Whitfield, formerly head of research at Example Labs and chief\n"
        "engineer at Example Works, has been appointed chief executive.\n\n"
        "November 27, 2021\n\nThe rest of the release follows here.\n",
        encoding="utf-8",
    )
    release = parse_release(path)
    assert (
        release.headline
        == "Acme Instruments Ships Its First Quantum Thermometer to Three university laboratories in Ontario"
    )
    assert release.body[0].startswith("Dana Whitfield, formerly head of research")


def test_banner_then_headline_without_dateline(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text(
        "FOR IMMEDIATE RELEASE\n\nAcme Opens a Lab\n\n"
        "Acme opened a lab in Springfield today, its largest yet.\n\nThe lab employs forty people.\n",
        encoding="utf-8",
    )
    release = parse_release(path)
    assert release.headline == "Acme Opens a Lab"
    assert release.body == (
        "Acme opened a lab in Springfield today, its largest yet.",
        "The lab employs forty people.",
    )
