"""Contacts: CSV import keeps good rows and reports bad ones by line; audiences select by filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.contacts import read_contacts, select
from pipeline.errors import ContactImportError
from pipeline.runtime import Runtime


def test_good_rows_kept_bad_rows_reported(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "E-mail,Name,Publication,Beats,Language,consent_basis\n"
        "ok@example.com,Ok Person,Daily,tech;science,en,express\n"
        "not-an-address,Bad,Daily,,en,\n"
        "lang@example.com,Lang,Daily,,english,\n"
        "basis@example.com,Basis,Daily,,en,because\n"
        "\n"
        "OK@Example.com,Ok Again,Weekly,tech,en,express\n",
        encoding="utf-8",
    )
    found = read_contacts(path)
    assert [c.email for c in found.contacts] == ["ok@example.com"]
    assert found.contacts[0].outlet == "Weekly"  # the duplicate row merged, last wins
    assert found.merged == 1
    assert [(r.line, r.reason.split(" ")[0]) for r in found.rejected] == [
        (3, "An"),
        (4, "language"),
        (5, "consent_basis"),
    ]


def test_file_without_email_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("name,outlet\nA,B\n", encoding="utf-8")
    with pytest.raises(ContactImportError, match=r"list.csv:1: no 'email' column"):
        read_contacts(path)


def test_audiences_filter_and_store_round_trip(runtime: Runtime, settings: Settings, project: Path) -> None:
    found = read_contacts(project.parent / "contacts.csv")
    assert runtime.store.save_contacts(found.contacts) == (4, 0, 0)
    assert runtime.store.save_contacts(found.contacts) == (0, 0, 0)
    people = list(runtime.store.contacts())
    assert {c.email for c in select(people, settings, ["tech"])} == {"ana@example.com", "bo@example.test"}
    assert {c.email for c in select(people, settings, ["french"])} == {"chloe@example.com"}
    assert len(select(people, settings, ["all"])) == 4
    runtime.store.suppress("ana@example.com", "unsubscribed", keep_address=False)
    assert runtime.store.save_contacts(found.contacts) == (0, 0, 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.lists(
            st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=30),
            min_size=1,
            max_size=6,
        ),
        max_size=20,
    )
)
def test_any_csv_rows_are_imported_or_reported(tmp_path: Path, rows: list[list[str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "beats", "language"])
    writer.writerows(rows)
    path = tmp_path / "fuzz.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    found = read_contacts(path)
    non_blank = [r for r in rows if any(v.strip() for v in r)]
    assert len(found.contacts) + found.merged + len(found.rejected) >= len(non_blank) - sum(
        1 for r in non_blank if "\n" in "".join(r) or "\r" in "".join(r)
    )
