"""Contact files as PR tools export them (CSV in any dialect, Excel), export, erasure, audience filters."""

from __future__ import annotations

import csv
import io
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from openpyxl import Workbook

from pipeline.config import AudienceSettings, Settings, load_settings
from pipeline.contacts import read_contacts, select
from pipeline.errors import ContactImportError
from pipeline.models import Contact
from pipeline.runtime import Runtime
from pipeline.store import Store, address_hash
from tests.conftest import run_cli


def test_an_excel_export_with_its_own_column_names(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        [
            "E-mail Address",
            "First Name",
            "Last Name",
            "Publication",
            "Job Title",
            "Beat",
            "Tags",
            "Embargoed Previews",
            "Consent",
            "Consent Date",
        ]
    )
    sheet.append(
        [
            "Ana@Example.com ",
            "Ana",
            "Lima",
            "Daily Planet",
            "Science editor",
            "science; health",
            "vip",
            "yes",
            "express",
            date(2026, 1, 10),
        ]
    )
    sheet.append(["not-an-address", "Bad", "Row", "", "", "", "", "", "", None])
    sheet.append([None] * 10)  # blank rows are skipped, not rejected
    sheet.append(["bo@example.test", "Bo", None, "Tech Times", None, "technology", None, "no", None, None])
    path = tmp_path / "export.xlsx"
    book.save(path)
    found = read_contacts(path)
    assert [r.line for r in found.rejected] == [3]
    assert "not-an-address" not in str(found.contacts)
    ana, bo = found.contacts
    assert ana == Contact(
        email="ana@example.com",
        name="Ana Lima",
        outlet="Daily Planet",
        role="Science editor",
        beats=("science", "health"),
        tags=("vip",),
        embargo_trusted=True,
        consent_basis=ana.consent_basis,
        consent_date=date(2026, 1, 10),
    )
    assert ana.consent_basis is not None and ana.consent_basis.value == "express"
    assert (bo.name, bo.embargo_trusted) == ("Bo", False)


def test_a_semicolon_csv_with_aliases(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "EMAIL;Full Name;Media Outlet;Region;Lang\nchloe@example.com;Chloé Roy;La Gazette;quebec;FR\n", encoding="utf-8"
    )
    (chloe,) = read_contacts(path).contacts
    assert (chloe.name, chloe.outlet, chloe.regions, chloe.language) == ("Chloé Roy", "La Gazette", ("quebec",), "fr")


def test_a_file_that_is_not_a_workbook_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "list.xlsx"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ContactImportError, match=r"list.xlsx: not an Excel \.xlsx workbook"):
        read_contacts(path)


def test_twenty_thousand_rows_with_one_percent_bad_import_in_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.csv"
    bad_lines: set[int] = set()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "Name", "Outlet", "Beats", "Language"])
        for i in range(20_000):
            line = i + 2
            if i % 100 == 37:
                bad_lines.add(line)
                kind = i % 3
                row = (
                    [f"broken{i}.example.com", "x", "", "", ""]
                    if kind == 0
                    else (
                        [f"p{i}@example.com", "x", "", "", "english"] if kind == 1 else ["", "No Address", "", "", ""]
                    )
                )
            else:
                row = [f"person{i:05d}@example.com", f"Person {i}", f"Outlet {i % 40}", "technology", "en"]
            writer.writerow(row)
    store = Store.open(f"sqlite:///{tmp_path / 'big.db'}")
    start = time.perf_counter()
    found = read_contacts(path)
    imported, updated, _ = store.save_contacts(found.contacts)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n20,000-row CSV with {len(bad_lines)} bad rows imported in {seconds:.2f} s")
    assert {r.line for r in found.rejected} == bad_lines
    assert imported == 20_000 - len(bad_lines) and updated == 0
    assert sum(1 for _ in store.contacts()) == imported
    store.close()


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.text(max_size=30), min_size=0, max_size=6), max_size=20))
def test_any_csv_is_imported_or_rejected_line_by_line_never_a_crash(
    rows: list[list[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "language", "consent_date", "embargo"])
    for row in rows:
        writer.writerow(row)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        found = read_contacts(path)
    except ContactImportError:
        return  # e.g. a file the decoder refuses: one clear error
    physical_lines = len(buffer.getvalue().splitlines())
    assert all(2 <= r.line <= physical_lines for r in found.rejected)
    assert all("@" in c.email for c in found.contacts)


def test_export_imports_back_the_same(runtime: Runtime, project: Path, tmp_path: Path) -> None:
    rows = read_contacts(project.parent / "contacts.csv").contacts
    runtime.store.save_contacts(rows)
    out = tmp_path / "export.csv"
    result = run_cli(project, "contacts", "export", "--out", str(out))
    assert result.exit_code == 0
    again = read_contacts(out)
    assert again.rejected == [] and sorted(again.contacts, key=lambda c: c.email) == sorted(rows, key=lambda c: c.email)
    stdout = run_cli(project, "contacts", "export", "--audience", "tech").output
    assert stdout.splitlines()[0].startswith("email,name,outlet,role,beats")
    assert len(stdout.splitlines()) == 3  # header + the two technology contacts


def test_forget_erases_the_person_and_keeps_them_unmailable(runtime: Runtime, project: Path) -> None:
    from pipeline.intake import queue_release
    from pipeline.parse import parse_release
    from pipeline.store import utcnow

    runtime.store.save_contacts(read_contacts(project.parent / "contacts.csv").contacts)
    release = parse_release(project.parent / "releases" / "acme.txt", runtime.settings.zone)
    dist_id, _ = queue_release(runtime.store, runtime.settings, release, ("all",), utcnow(), "UTC")
    assert dist_id is not None
    runtime.dispatcher().dispatch(dist_id)
    result = run_cli(project, "contacts", "forget", "Ana@Example.com", "--yes")
    assert result.exit_code == 0 and "1 contact erased, 1 deliveries" in result.output
    assert "ana@example.com" not in {c.email for c in runtime.store.contacts()}
    addresses = {str(d["address"]) for d in runtime.store.deliveries_of(dist_id)}
    assert "ana@example.com" not in addresses and any(a.startswith("forgotten-") for a in addresses)
    assert address_hash("ana@example.com") in runtime.store.suppressed_hashes()
    with runtime.store.engine.begin() as db:
        import sqlalchemy as sa

        from pipeline.store import suppressions

        kept = db.execute(
            sa.select(suppressions.c.address).where(suppressions.c.address_hash == address_hash("ana@example.com"))
        ).scalar_one()
    assert kept is None  # only the hash
    _, _, skipped = runtime.store.save_contacts(read_contacts(project.parent / "contacts.csv").contacts)
    assert skipped == 1 and "ana@example.com" not in {c.email for c in runtime.store.contacts()}


def test_audiences_by_tag_embargo_trust_and_static_list(settings: Settings) -> None:
    people = [
        Contact(email="a@example.com", tags=("vip",), embargo_trusted=True),
        Contact(email="b@example.com", tags=("vip", "local")),
        Contact(email="c@example.com", embargo_trusted=True),
    ]
    audiences = {
        "vips": AudienceSettings(tags=("VIP",)),
        "trusted": AudienceSettings(embargo_trusted=True),
        "trusted_vips": AudienceSettings(tags=("vip",), embargo_trusted=True),
        "hand_picked": AudienceSettings(addresses=("C@example.com", "b@example.com")),
    }
    custom = settings.model_copy(update={"audiences": audiences})

    def members(name: str) -> list[str]:
        return [c.email for c in select(people, custom, [name])]

    assert members("vips") == ["a@example.com", "b@example.com"]
    assert members("trusted") == ["a@example.com", "c@example.com"]
    assert members("trusted_vips") == ["a@example.com"]
    assert members("hand_picked") == ["b@example.com", "c@example.com"]


def test_two_email_columns_keep_the_filled_one_and_export_defuses_formulas(tmp_path: Path, project: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text('Email,Work Email,Name\nana@example.com,,=HYPERLINK("x")\n', encoding="utf-8")
    (ana,) = read_contacts(path).contacts
    assert ana.email == "ana@example.com" and ana.name == '=HYPERLINK("x")'
    runtime = Runtime.open(load_settings(project))
    runtime.store.save_contacts([ana])
    runtime.close()
    exported = run_cli(project, "contacts", "export").output
    assert "'=HYPERLINK" in exported  # a spreadsheet shows it as text instead of running it
    out = tmp_path / "back.csv"
    out.write_text(exported, encoding="utf-8")
    assert read_contacts(out).contacts[0].name == '=HYPERLINK("x")'  # and it imports back as it was


def test_a_workbook_with_a_wrong_dimension_record_and_a_title_row(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Media list — spring 2026"])
    sheet.append(["Name", "E-mail"])
    sheet.append(["Ana Lima", "ana@example.com"])
    path = tmp_path / "list.xlsx"
    book.save(path)
    found = read_contacts(path)
    assert [c.email for c in found.contacts] == ["ana@example.com"] and found.rejected == []
