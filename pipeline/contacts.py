"""Contacts: CSV and Excel import (good rows kept, bad rows reported by line), validation, audiences."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from email_validator import EmailNotValidError, validate_email

from pipeline.config import AudienceSettings, Settings
from pipeline.errors import ContactImportError, NotFoundError
from pipeline.models import ConsentBasis, Contact
from pipeline.parse.text import decode, read_bytes
from pipeline.store import address_hash

COLUMNS = (
    "email",
    "name",
    "outlet",
    "role",
    "beats",
    "regions",
    "language",
    "tags",
    "consent_basis",
    "consent_source",
    "consent_date",
    "embargo_trusted",
)
MAX_CONTACTS_BYTES = 200 * 1024 * 1024  # about three million rows
# Column names seen in exports of media databases and CRMs, compared without case, spaces, "-" or "_".
_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "emailaddress": "email",
    "mail": "email",
    "workemail": "email",
    "name": "name",
    "fullname": "name",
    "contact": "name",
    "contactname": "name",
    "firstname": "first_name",
    "givenname": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "outlet": "outlet",
    "publication": "outlet",
    "mediaoutlet": "outlet",
    "media": "outlet",
    "organization": "outlet",
    "organisation": "outlet",
    "company": "outlet",
    "role": "role",
    "title": "role",
    "jobtitle": "role",
    "position": "role",
    "beat": "beats",
    "beats": "beats",
    "topic": "beats",
    "topics": "beats",
    "region": "regions",
    "regions": "regions",
    "location": "regions",
    "territory": "regions",
    "language": "language",
    "lang": "language",
    "preferredlanguage": "language",
    "tag": "tags",
    "tags": "tags",
    "list": "tags",
    "lists": "tags",
    "consent": "consent_basis",
    "consentbasis": "consent_basis",
    "lawfulbasis": "consent_basis",
    "consentsource": "consent_source",
    "consentdate": "consent_date",
    "embargo": "embargo_trusted",
    "embargotrusted": "embargo_trusted",
    "embargoedpreviews": "embargo_trusted",
    "acceptsembargoes": "embargo_trusted",
}
_TRUE = {"yes", "y", "true", "1", "x", "oui"}
_FORMULA_STARTS = ("=", "+", "-", "@")
HEADER_SEARCH_ROWS = 10  # a title or notes above the header row are skipped, this far down
_FALSE = {"", "no", "n", "false", "0", "non"}


def column_key(header: str) -> str:
    """A header as matched against the aliases: `E-mail Address` and `email_address` are the same."""
    squashed = "".join(ch for ch in header.strip().lower() if ch.isalnum() or ch == "-")
    return _ALIASES.get(squashed, _ALIASES.get(squashed.replace("-", ""), header.strip().lower().replace(" ", "_")))


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass(slots=True)
class ContactFile:
    """What a contacts file holds: valid contacts (duplicates merged, last row wins) and rejected rows."""

    contacts: list[Contact] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    merged: int = 0


def normalize_address(raw: str, check_deliverability: bool = False) -> str:
    """A syntactically valid address, lower-cased; raises ValueError with the validator's reason. With
    `check_deliverability` the domain must also resolve to a mail server (a DNS lookup)."""
    try:
        result = validate_email(
            raw.strip(), check_deliverability=check_deliverability, test_environment=not check_deliverability
        )
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(";") if part.strip())


def _contact(row: Mapping[str, str], check_deliverability: bool = False) -> Contact:
    def get(key: str) -> str:
        value = (row.get(key) or "").strip()
        return value[1:] if value[:1] == "'" and value[1:2] in _FORMULA_STARTS else value  # see write_contacts

    email = get("email")
    if not email:
        raise ValueError("email is empty")
    trusted_text = get("embargo_trusted").lower()
    if trusted_text not in _TRUE | _FALSE:
        raise ValueError(f"embargo_trusted {get('embargo_trusted')!r} is not yes or no")
    name = get("name") or " ".join(part for part in (get("first_name"), get("last_name")) if part)
    language = get("language").lower() or None
    if language is not None and (len(language) != 2 or not language.isalpha()):
        raise ValueError(f"language {language!r} is not an ISO 639-1 code such as 'en' or 'fr'")
    basis_text = get("consent_basis").lower()
    try:
        basis = ConsentBasis(basis_text) if basis_text else None
    except ValueError:
        allowed = ", ".join(b.value for b in ConsentBasis)
        raise ValueError(f"consent_basis {basis_text!r} is not one of {allowed}") from None
    consent_date = None
    if get("consent_date"):
        try:
            consent_date = date.fromisoformat(get("consent_date"))
        except ValueError:
            raise ValueError(f"consent_date {get('consent_date')!r} is not a date (YYYY-MM-DD)") from None
    return Contact(
        email=normalize_address(email, check_deliverability),
        name=name or None,
        outlet=get("outlet") or None,
        role=get("role") or None,
        tags=_list(get("tags")),
        embargo_trusted=trusted_text in _TRUE,
        beats=_list(get("beats")),
        regions=_list(get("regions")),
        language=language,
        consent_basis=basis,
        consent_source=get("consent_source") or None,
        consent_date=consent_date,
    )


def read_contacts(path: Path, check_deliverability: bool = False) -> ContactFile:
    """Read a contacts file: CSV (any common encoding) or Excel .xlsx (first sheet). Raises
    ContactImportError only when nothing can be imported (unreadable file, no email column); each bad row
    is reported in `rejected` with its line (the spreadsheet's row number for .xlsx)."""
    rows = _xlsx_rows(path) if path.suffix.lower() in (".xlsx", ".xlsm") else _csv_rows(path)
    first: tuple[int, list[str]] | None = None
    columns: list[str] = []
    for line, header in rows:  # the header is the first row naming an email column (titles may sit above)
        if isinstance(header, str) or not any(h.strip() for h in header):
            continue
        first = first or (line, header)
        columns = [column_key(h) for h in header]
        if "email" in columns or line >= HEADER_SEARCH_ROWS:
            break
    if first is None:
        raise ContactImportError(path, "file is empty; expected a header row with an 'email' column") from None
    if "email" not in columns:
        found = ", ".join(h for h in first[1] if h) or "none"
        raise ContactImportError(path, f"no 'email' column (found: {found})", line=first[0])
    result = ContactFile()
    by_email: dict[str, int] = {}
    for line, values in rows:
        if isinstance(values, str):  # the reader could not make fields of this line
            result.rejected.append(Rejected(line, values))
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(columns) and any(v.strip() for v in values[len(columns) :]):
            result.rejected.append(Rejected(line, f"{len(values)} fields but the header has {len(columns)}"))
            continue
        try:
            fields: dict[str, str] = {}
            for column, value in zip(columns, values, strict=False):
                if value.strip() or column not in fields:  # two columns for one field: the filled one wins
                    fields[column] = value
            contact = _contact(fields, check_deliverability)
        except ValueError as exc:
            result.rejected.append(Rejected(line, str(exc)))
            continue
        if contact.email in by_email:
            result.contacts[by_email[contact.email]] = contact
            result.merged += 1
        else:
            by_email[contact.email] = len(result.contacts)
            result.contacts.append(contact)
    return result


Row = tuple[int, "list[str] | str"]  # (line, fields), or (line, why the line is unreadable)


def _csv_rows(path: Path) -> Iterator[Row]:
    try:
        text = decode(path, read_bytes(path, MAX_CONTACTS_BYTES, "contact files"))
    except Exception as exc:  # a ReleaseParseError from the shared decoder, re-worded for contacts
        raise ContactImportError(path, str(getattr(exc, "detail", exc))) from exc
    delimiter = _delimiter(text.split("\n", HEADER_SEARCH_ROWS)[:HEADER_SEARCH_ROWS])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, f"malformed CSV: {exc}"
            continue
        yield reader.line_num, values


def _delimiter(lines: list[str]) -> str:
    """Comma, semicolon (spreadsheets in much of Europe) or tab: the one that makes an email column of a
    header line among the first lines; comma when none does (the error then names the columns found)."""
    for line in lines:
        for candidate in (",", ";", "\t"):
            fields = next(csv.reader([line], delimiter=candidate), [])
            if len(fields) > 1 and "email" in {column_key(f) for f in fields}:
                return candidate
    return ","


def _xlsx_rows(path: Path) -> Iterator[Row]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        if path.stat().st_size > MAX_CONTACTS_BYTES:
            raise ContactImportError(path, f"file is over {MAX_CONTACTS_BYTES // 1024 // 1024} MB; split it")
        book = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise ContactImportError(path, "file not found") from None
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ContactImportError(path, f"not an Excel .xlsx workbook ({exc})") from None
    number = 0
    try:
        sheet = book.worksheets[0]
        if hasattr(sheet, "reset_dimensions"):
            sheet.reset_dimensions()  # the stored size of the sheet may be wrong; read what is there
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(value) for value in row]
    except ContactImportError:
        raise
    except Exception as exc:  # a damaged sheet stops the read; nothing has been imported yet
        raise ContactImportError(path, f"the workbook is damaged after row {number}: {exc}") from exc
    finally:
        book.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _matches(values: Iterable[str | None], wanted: tuple[str, ...]) -> bool:
    if not wanted:
        return True
    have = {v.strip().casefold() for v in values if v}
    return any(w.casefold() in have for w in wanted)


def in_audience(contact: Contact, audience: AudienceSettings) -> bool:
    """A contact matches when every filter given matches one of its values (filters are ANDed, values ORed)."""
    return (
        _matches(contact.beats, audience.beats)
        and _matches(contact.regions, audience.regions)
        and _matches([contact.language], audience.languages)
        and _matches([contact.outlet], audience.outlets)
        and _matches(contact.tags, audience.tags)
        and (audience.embargo_trusted is None or contact.embargo_trusted == audience.embargo_trusted)
        and (not audience.addresses or contact.email in audience.addresses)
    )


def write_contacts(people: Iterable[Contact], out: TextIO, suppressed: set[str]) -> int:
    """Write contacts as CSV with the import's own columns (plus `suppressed`), so an export imports back."""
    writer = csv.writer(out)
    writer.writerow([*COLUMNS, "suppressed"])
    count = 0
    for person in people:
        writer.writerow(
            [
                person.email,
                _as_text(person.name or ""),
                _as_text(person.outlet or ""),
                _as_text(person.role or ""),
                _as_text("; ".join(person.beats)),
                _as_text("; ".join(person.regions)),
                person.language or "",
                _as_text("; ".join(person.tags)),
                person.consent_basis.value if person.consent_basis else "",
                _as_text(person.consent_source or ""),
                person.consent_date.isoformat() if person.consent_date else "",
                "yes" if person.embargo_trusted else "no",
                "yes" if address_hash(person.email) in suppressed else "no",
            ]
        )
        count += 1
    return count


def _as_text(value: str) -> str:
    """A spreadsheet runs a cell starting with =, +, - or @ as a formula; a leading ' makes it text (and the
    import takes it off again)."""
    return f"'{value}" if value[:1] in _FORMULA_STARTS else value


def is_everyone(audience: AudienceSettings) -> bool:
    """True for an audience without any filter: every contact is in it."""
    return audience.model_copy(update={"description": None}) == AudienceSettings()


def audience(settings: Settings, name: str) -> AudienceSettings:
    try:
        return settings.audiences[name]
    except KeyError:
        known = ", ".join(sorted(settings.audiences)) or "none defined"
        raise NotFoundError(f"no audience named {name!r} in config.yaml (known: {known})") from None


def select(contacts: Iterable[Contact], settings: Settings, names: Iterable[str]) -> list[Contact]:
    """Contacts in any of the named audiences, each once."""
    filters = [audience(settings, name) for name in names]
    return [c for c in contacts if any(in_audience(c, f) for f in filters)]
