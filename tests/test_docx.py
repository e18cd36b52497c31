"""Word documents built with python-docx, read through the real mammoth conversion and the command line."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import ReleaseParseError
from pipeline.parse import parse_release
from tests.conftest import run_cli

docx = pytest.importorskip("docx")
from docx.opc.constants import RELATIONSHIP_TYPE  # noqa: E402
from docx.oxml import OxmlElement  # noqa: E402
from docx.oxml.ns import qn  # noqa: E402


def _link(paragraph: object, url: str, text: str) -> None:
    """A real Word hyperlink (python-docx has no helper for one)."""
    part = paragraph.part  # type: ignore[attr-defined]
    rel = part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), rel)
    run = OxmlElement("w:r")
    label = OxmlElement("w:t")
    label.text = text
    run.append(label)
    link.append(run)
    paragraph._p.append(link)  # type: ignore[attr-defined]


def build_release(path: Path, *, title_property: str | None = None, styled_title: bool = True) -> Path:
    """A release the way a communications officer types it in Word."""
    document = docx.Document()
    if title_property:
        document.core_properties.title = title_property
    if styled_title:
        document.add_paragraph("Northwind Robotics Opens a Research Lab in Halifax", style="Title")
        document.add_paragraph("The lab adds 40 engineering jobs by 2027", style="Subtitle")
    lead = document.add_paragraph()
    lead.add_run("HALIFAX, NS, Oct. 4, 2026 /CNW/").bold = True
    lead.add_run(" - Northwind Robotics Inc. today opened a research lab on the waterfront. Details at ")
    _link(lead, "https://northwind.example.com/lab", "northwind.example.com/lab")
    lead.add_run(".")
    document.add_paragraph("The lab will focus on:")
    document.add_paragraph("warehouse robots that work beside people", style="List Bullet")
    document.add_paragraph("batteries that last a full shift", style="List Bullet")
    document.add_paragraph(
        "“We are delighted,” said Jane Roe, chief executive officer of Northwind Robotics. “Halifax has talent.”"
    )
    document.add_paragraph("Our engineers will share their work openly with universities in the region.", style="Quote")
    document.add_paragraph("— Omar Haddad, Head of Research")
    document.add_heading("About Northwind Robotics", level=2)
    document.add_paragraph("Northwind Robotics builds warehouse robots. Learn more at northwind.example.com.")
    document.add_paragraph("###")
    document.add_paragraph("Media contact:")
    document.add_paragraph("Sam Poe")
    document.add_paragraph("sam.poe [at] northwind [dot] example")
    document.add_paragraph("+1 902 555 0100")
    document.save(str(path))
    return path


def test_word_release_fields(tmp_path: Path) -> None:
    release = parse_release(build_release(tmp_path / "lab.docx"))
    assert release.headline == "Northwind Robotics Opens a Research Lab in Halifax"
    assert release.subheadline == "The lab adds 40 engineering jobs by 2027"
    assert release.dateline == "HALIFAX, NS"
    assert release.wire == "CNW"
    assert release.date == date(2026, 10, 4)
    assert release.language == "en"
    assert release.body[0].startswith("Northwind Robotics Inc. today opened a research lab")
    assert [(q.speaker, q.text[:20]) for q in release.quotes] == [
        ("Jane Roe", "We are delighted Hal"),
        ("Omar Haddad", "Our engineers will s"),
    ]
    assert [a.name for a in release.about] == ["Northwind Robotics"]
    assert release.about[0].text.startswith("Northwind Robotics builds warehouse robots")
    assert release.end_marker == "###"
    contact = release.contacts[0]
    assert (contact.name, contact.email, contact.phone) == (
        "Sam Poe",
        "sam.poe [at] northwind [dot] example",
        "+1 902 555 0100",
    )
    assert release.problems == ()


def test_word_keeps_links_lists_and_bold(tmp_path: Path) -> None:
    release = parse_release(build_release(tmp_path / "lab.docx"))
    body = "\n".join(release.body)
    # The link survives as its address; list items stay separate paragraphs; the bold dateline is not body.
    assert "https://northwind.example.com/lab" in body or "northwind.example.com/lab" in body
    assert "warehouse robots that work beside people" in release.body
    assert "batteries that last a full shift" in release.body
    assert not any(p.startswith("HALIFAX") for p in release.body)


def test_document_title_property_used_only_without_a_heading(tmp_path: Path) -> None:
    untitled = parse_release(build_release(tmp_path / "a.docx", title_property="From Properties", styled_title=False))
    assert untitled.headline == "From Properties"
    titled = parse_release(build_release(tmp_path / "b.docx", title_property="From Properties"))
    assert titled.headline == "Northwind Robotics Opens a Research Lab in Halifax"


def test_parse_json_on_a_word_file(project: Path) -> None:
    path = build_release(project.parent / "releases" / "lab.docx")
    result = run_cli(project, "parse", "--json", str(path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["headline"] == "Northwind Robotics Opens a Research Lab in Halifax"
    assert data["contacts"][0]["name"] == "Sam Poe"
    assert data["problems"] == []


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"HALIFAX, NS /CNW/ - plain text saved as .docx", "not a Word document"),
        (b"", "empty"),
        (_zip({"hello.txt": b"hi"}), "no word/document.xml"),
        (_zip({"word/document.xml": b"<not xml"}), "not a readable Word document"),
    ],
)
def test_files_that_are_not_word_documents(project: Path, content: bytes, reason: str) -> None:
    path = project.parent / "bad.docx"
    path.write_bytes(content)
    with pytest.raises(ReleaseParseError, match=reason) as caught:
        parse_release(path)
    assert "bad.docx" in str(caught.value)
    result = run_cli(project, "parse", str(path))
    assert result.exit_code == 2
    assert "bad.docx" in result.output
    assert "Traceback" not in result.output


def test_truncated_word_file(tmp_path: Path) -> None:
    whole = build_release(tmp_path / "whole.docx").read_bytes()
    cut = tmp_path / "cut.docx"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ReleaseParseError, match=r"cut\.docx"):
        parse_release(cut)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2000), st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=2000))))
def test_any_bytes_as_docx_give_our_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.docx"
    path.write_bytes(data)
    with pytest.raises(ReleaseParseError):
        parse_release(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    paragraphs=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=200),
        max_size=12,
    ),
    styles=st.lists(st.sampled_from(["Normal", "Title", "Subtitle", "Heading 2", "Quote", "List Bullet"]), min_size=12),
)
def test_any_text_in_word_paragraphs_parses_or_gives_our_error(
    tmp_path: Path, paragraphs: list[str], styles: list[str]
) -> None:
    document = docx.Document()
    for text, style in zip(paragraphs, styles, strict=False):
        document.add_paragraph(text, style=style)
    path = tmp_path / "fuzz.docx"
    document.save(str(path))
    try:
        release = parse_release(path)
    except ReleaseParseError as exc:
        assert "fuzz.docx" in str(exc)
    else:
        assert all(isinstance(p, str) and p.strip() for p in release.body)
