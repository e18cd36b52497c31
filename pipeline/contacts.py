"""Contacts: CSV import (good rows kept, bad rows reported by line), validation, audiences."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from pipeline.config import AudienceSettings, Settings
from pipeline.errors import ContactImportError, NotFoundError
from pipeline.models import ConsentBasis, Contact
from pipeline.parse.text import decode, read_bytes

COLUMNS = (
    "email",
    "name",
    "outlet",
    "beats",
    "regions",
    "language",
    "consent_basis",
    "consent_source",
    "consent_date",
)
MAX_CONTACTS_BYTES = 200 * 1024 * 1024  # about three million rows
_ALIASES = {
    "e-mail": "email",
    "email address": "email",
    "e-mail address": "email",
    "mail": "email",
    "full name": "name",
    "contact": "name",
    "contact name": "name",
    "publication": "outlet",
    "media outlet": "outlet",
    "organization": "outlet",
    "organisation": "outlet",
    "beat": "beats",
    "topics": "beats",
    "region": "regions",
    "lang": "language",
    "consent": "consent_basis",
}


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


def normalize_address(raw: str) -> str:
    """A syntactically valid address, lower-cased; raises ValueError with the validator's reason."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(";") if part.strip())


def _contact(row: Mapping[str, str]) -> Contact:
    def get(key: str) -> str:
        return (row.get(key) or "").strip()

    email = get("email")
    if not email:
        raise ValueError("email is empty")
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
        email=normalize_address(email),
        name=get("name") or None,
        outlet=get("outlet") or None,
        beats=_list(get("beats")),
        regions=_list(get("regions")),
        language=language,
        consent_basis=basis,
        consent_source=get("consent_source") or None,
        consent_date=consent_date,
    )


def read_contacts(path: Path) -> ContactFile:
    """Read a contacts CSV. Raises ContactImportError only when nothing can be imported (unreadable file,
    no email column); each bad row is reported in `rejected` with its line number."""
    try:
        text = decode(path, read_bytes(path, MAX_CONTACTS_BYTES, "contact files"))
    except Exception as exc:  # a ReleaseParseError from the shared decoder, re-worded for contacts
        raise ContactImportError(path, str(getattr(exc, "detail", exc))) from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ContactImportError(path, "file is empty; expected a header row with an 'email' column") from None
    except csv.Error as exc:
        raise ContactImportError(path, f"not a CSV file: {exc}", line=1) from None
    columns = [_ALIASES.get(h.strip().lower(), h.strip().lower().replace(" ", "_")) for h in header]
    if "email" not in columns:
        raise ContactImportError(
            path, f"no 'email' column (found: {', '.join(h for h in header if h) or 'none'})", line=1
        )
    result = ContactFile()
    by_email: dict[str, int] = {}
    line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.rejected.append(Rejected(reader.line_num, f"malformed CSV: {exc}"))
            continue
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(columns):
            result.rejected.append(Rejected(line, f"{len(values)} fields but the header has {len(columns)}"))
            continue
        try:
            contact = _contact(dict(zip(columns, values, strict=False)))
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
    )


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
