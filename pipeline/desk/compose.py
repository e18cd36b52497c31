"""The desk's release form, both ways: a parsed Release → form fields (to edit), and form fields → a Markdown
document with front matter, which goes through the same parser as any file (so the desk and the folder can
never disagree about what a release is)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

import yaml

from pipeline.errors import FormError
from pipeline.models import Release
from pipeline.parse.dates import localize, zone_named

# Every field of the form, as posted (embargo_utc: the exact instant the page showed, see _embargo).
FIELDS = (
    "headline",
    "subheadline",
    "date",
    "dateline",
    "language",
    "categories",
    "embargo",
    "embargo_tz",
    "embargo_utc",
    "body",
    "about",
    "contacts",
)


def form_of(release: Release, zone: str) -> dict[str, str]:
    """The release as the form shows it: plain text, one blank line between paragraphs and blocks."""
    return {
        "embargo_utc": release.embargo.isoformat() if release.embargo else "",
        "headline": release.headline or "",
        "subheadline": release.subheadline or "",
        "date": release.date.isoformat() if release.date else "",
        "dateline": release.dateline or "",
        "language": release.language or "",
        "categories": ", ".join(release.categories),
        "embargo": local_input(release.embargo, ZoneInfo(zone)) if release.embargo else "",
        "embargo_tz": zone,
        "body": "\n\n".join(release.body),
        "about": "\n\n".join(f"About {a.name}\n{a.text}" for a in release.about),
        "contacts": "\n\n".join(
            "\n".join(p for p in (c.name, c.organization, c.email, c.phone) if p) for c in release.contacts
        ),
    }


def _lines(text: str) -> str:
    return re.sub(r"\r\n?", "\n", text).strip()


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", _lines(text)) if b.strip()]


def document_of(form: Mapping[str, str], corrects: str | None = None) -> str:
    """A Markdown release from the form. Raises FormError naming the field that cannot be used."""
    headline = " ".join(_lines(form.get("headline", "")).split())
    if not headline:
        raise FormError("the release needs a headline", field="headline")
    body = _blocks(form.get("body", ""))
    if not body:
        raise FormError("the release needs at least one body paragraph", field="body")
    meta: dict[str, object] = {"title": headline}
    if subheadline := " ".join(_lines(form.get("subheadline", "")).split()):
        meta["subtitle"] = subheadline
    if day := form.get("date", "").strip():
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise FormError(f"date {day!r} is not YYYY-MM-DD", field="date")
        meta["date"] = day
    if embargo := form.get("embargo", "").strip():
        meta["embargo"] = _embargo(embargo, form.get("embargo_tz", "").strip() or "UTC", form.get("embargo_utc", ""))
    if language := form.get("language", "").strip():
        meta["language"] = language
    if categories := [c.strip() for c in form.get("categories", "").split(",") if c.strip()]:
        meta["categories"] = categories
    if corrects:
        meta["corrects"] = corrects
    if dateline := " ".join(_lines(form.get("dateline", "")).split()):
        body[0] = f"{dateline} — {body[0]}"
    parts = ["---", yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip(), "---", "", *_join(body)]
    for section in _blocks(form.get("about", "")):
        first, _, rest = section.partition("\n")
        name = first.strip()
        name = name if name.lower().startswith("about ") else f"About {name}"
        parts += [f"## {name}", "", rest.strip() or name, ""]
    contacts = _blocks(form.get("contacts", ""))
    if contacts:
        parts += ["## Media contacts", ""]
        for block in contacts:
            parts += ["  \n".join(line.strip() for line in block.split("\n") if line.strip()), ""]
    return "\n".join(parts).rstrip() + "\n"


def _embargo(local_text: str, zone_name: str, shown: str) -> str:
    """The embargo as ISO 8601 with its offset; the instant the page showed while it is unchanged (shown_instant)."""
    zone = zone_named(zone_name)
    if zone is None:
        raise FormError(f"unknown time zone {zone_name!r} (e.g. America/Toronto)", field="embargo")
    try:
        local = datetime.fromisoformat(local_text)
    except ValueError as exc:
        raise FormError(f"embargo {local_text!r}: not a date and time", field="embargo") from exc
    if not 1970 <= local.year <= 2999:
        raise FormError(f"embargo {local_text!r}: the year must be between 1970 and 2999", field="embargo")
    exact = shown_instant(local_text, shown, zone)
    if exact is not None:
        return exact.isoformat()
    return (local if local.tzinfo else localize(local, zone)).isoformat()


def local_input(moment: datetime, zone: tzinfo) -> str:
    """A moment as a datetime-local field shows it."""
    return f"{moment.astimezone(zone):%Y-%m-%dT%H:%M}"


def shown_instant(local_text: str, shown: str, zone: tzinfo) -> datetime | None:
    """A datetime-local field cannot tell the two 01:30s of the autumn change apart, so pages also carry the
    exact instant they showed (`shown`, ISO 8601 with offset): that instant, while the field still shows it."""
    try:
        exact = datetime.fromisoformat(shown) if shown else None
    except ValueError:
        return None
    if exact is None or exact.tzinfo is None or local_input(exact, zone) != local_text[:16]:
        return None
    return exact


def _join(paragraphs: list[str]) -> list[str]:
    out = []
    for paragraph in paragraphs:
        out += [paragraph, ""]
    return out
