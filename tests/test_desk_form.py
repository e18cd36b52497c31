"""The desk's release form both ways, fed anything a person can type (hypothesis): never a traceback, either a
clear FormError naming the field or a document the parser reads back to the same fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.desk.compose import document_of, form_of
from pipeline.errors import FormError, ReleaseParseError
from pipeline.models import Release
from pipeline.parse import parse_release

WORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=80)
FORM = st.fixed_dictionaries(
    {
        "headline": WORDS,
        "subheadline": WORDS,
        "date": st.one_of(st.just(""), st.dates().map(str), WORDS),
        "dateline": WORDS,
        "language": st.sampled_from(["", "en", "fr"]),
        "categories": WORDS,
        "embargo": st.one_of(st.just(""), st.just("2026-03-10T09:00"), WORDS),
        "embargo_tz": st.sampled_from(["America/Toronto", "Europe/Paris", "", "Mars/Base"]),
        "body": st.text(max_size=400),
        "about": st.text(max_size=200),
        "contacts": st.text(max_size=200),
    }
)


def _read(tmp_path: Path, text: str) -> Release:
    path = tmp_path / "release.md"
    path.write_text(text, encoding="utf-8")
    return parse_release(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=FORM)
def test_any_form_is_a_clear_error_or_a_release_the_parser_reads(tmp_path: Path, form: dict[str, str]) -> None:
    try:
        text = document_of(form)
    except FormError as exc:
        assert exc.field in {"headline", "body", "date", "embargo"} and str(exc)
        return
    try:
        release = _read(tmp_path, text)
    except ReleaseParseError as exc:  # a clear error about the document, never a traceback
        assert "release.md" in str(exc)
        return
    assert release.headline == " ".join(form["headline"].split())


def test_a_written_release_reads_back_field_by_field(tmp_path: Path) -> None:
    form = {
        "headline": "Acme Opens a Lab in Halifax",
        "subheadline": "Forty engineers will build quantum sensors",
        "date": "2026-03-10",
        "dateline": "HALIFAX, Nova Scotia",
        "language": "en",
        "categories": "research, hiring",
        "embargo": "2026-03-10T09:00",
        "embargo_tz": "America/Toronto",
        "body": 'Acme Instruments opened a lab.\n\n"Halifax has the talent we need," said Dana Whitfield, CEO of Acme.',
        "about": "About Acme Instruments\nAcme builds measuring tools.",
        "contacts": "Riley Stone\nriley.stone@acme.example.com\n+1 555-010-0199",
    }
    release = _read(tmp_path, document_of(form))
    assert release.headline == "Acme Opens a Lab in Halifax"
    assert release.subheadline == "Forty engineers will build quantum sensors"
    assert release.dateline == "HALIFAX, Nova Scotia" and str(release.date) == "2026-03-10"
    assert release.embargo is not None and release.embargo.isoformat() == "2026-03-10T09:00:00-04:00"
    assert release.categories == ("research", "hiring")
    assert [q.speaker for q in release.quotes] == ["Dana Whitfield"]
    assert [(a.name, a.text) for a in release.about] == [("Acme Instruments", "Acme builds measuring tools.")]
    assert [(c.name, c.email, c.phone) for c in release.contacts] == [
        ("Riley Stone", "riley.stone@acme.example.com", "+1 555-010-0199")
    ]
    # And back into the form, unchanged: editing a release and saving it untouched changes nothing.
    again = form_of(release, "America/Toronto")
    assert _read(tmp_path, document_of(again)).content_hash == release.content_hash


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"headline": "  "}, "headline"),
        ({"body": "\n\n"}, "body"),
        ({"date": "10/03/2026"}, "date"),
        ({"embargo": "tomorrow"}, "embargo"),
        ({"embargo_tz": "Mars/Base"}, "embargo"),
    ],
)
def test_an_unusable_field_is_named(change: dict[str, str], field: str) -> None:
    form = {"headline": "A headline", "body": "A paragraph.", "embargo": "2026-03-10T09:00", "embargo_tz": "UTC"}
    with pytest.raises(FormError) as caught:
        document_of(form | change)
    assert caught.value.field == field
