"""From a reader's Document (metadata + blocks) to a Release, using the extractors in fields.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from typing import Any

from pipeline.errors import ReleaseParseError
from pipeline.models import Boilerplate, MediaContact, Quote, Release
from pipeline.parse import fields
from pipeline.parse.dates import find_date, parse_date, parse_datetime
from pipeline.parse.document import Block, Document

# Front-matter keys and the aliases people use for them.
_META_KEYS: dict[str, tuple[str, ...]] = {
    "headline": ("headline", "title"),
    "subheadline": ("subheadline", "subtitle", "deck"),
    "date": ("date", "published", "pubdate"),
    "embargo": ("embargo", "embargoed_until", "embargo_until"),
    "language": ("language", "lang", "locale"),
    "audiences": ("audiences", "audience", "to"),
    "send_at": ("send_at", "send", "send_time"),
    "categories": ("categories", "category", "tags"),
    "organization": ("organization", "organisation", "org", "company", "author", "authors"),
    "dateline": ("dateline", "location"),
    "wire": ("wire",),
    "slug": ("slug",),
    "summary": ("summary", "description", "excerpt"),
}
_ALIASES = {alias: key for key, aliases in _META_KEYS.items() for alias in aliases}

_MAX_HEADLINE = 250


def assemble(doc: Document, zone: tzinfo) -> Release:
    """Build the Release. Raises ReleaseParseError only for bad front-matter values; the rest goes to problems."""
    meta = _interpret_meta(doc, zone)
    problems = list(doc.problems)
    blocks = [b for b in doc.blocks if b.text.strip()]

    leading_date: date | None = None
    if blocks:
        text, leading_date = fields.strip_meta_date(blocks[0].text)
        if leading_date is not None:
            blocks[0] = replace(blocks[0], text=text.strip())
            blocks = [b for b in blocks if b.text]
    default_year = (meta.get("date") or leading_date or date.today()).year

    embargo: datetime | None = meta.get("embargo")
    dateline: fields.Dateline | None = None
    pre: list[Block] = []  # blocks before the dateline: banners and embargo lines left out
    pre_index: list[int] = []  # where each of them stands in `blocks`
    stop = min(len(blocks), 15)  # where the scan for the dateline ended
    for index, block in enumerate(blocks[:15]):
        flat = _flat(block.text)
        if fields.is_banner(flat):
            continue
        when, is_embargo = fields.embargo_of(flat, zone)
        if is_embargo:
            if when is None:
                problems.append(f"line {block.line}: embargo line without a readable date: {flat[:80]!r}")
            embargo = embargo or when
            continue
        if _starts_section(block) or fields.end_marker_of(flat):
            stop = index
            break
        if not block.is_heading:
            dateline = fields.find_dateline(flat, default_year)
            if dateline is not None:
                blocks[index] = replace(block, text=dateline.rest)
                stop = index
                break
        pre.append(block)
        pre_index.append(index)

    headline, subheadline, pre_rest = _headline(pre, meta)
    body_start = stop
    if dateline is None:
        # No dateline: the body begins with the first block not used as headline, banner or date.
        first_unused = next((p for p in pre_rest if not _has_contact_info(p.block.text)), None)
        if first_unused is not None:
            body_start = pre_index[first_unused.origin]
            source = blocks[body_start]
            blocks[body_start] = replace(source, text="\n".join(source.text.split("\n")[first_unused.offset :]))
        elif pre:
            body_start = pre_index[-1] + 1
    top_contacts = [p.block for p in pre_rest if _has_contact_info(p.block.text)]
    sections = _sections(blocks[body_start:], problems)

    release_date: date | None = meta.get("date") or leading_date or (dateline.date if dateline else None)
    if release_date is None:
        for block in pre:
            found = find_date(_flat(block.text))
            if found and len(_flat(block.text)) < 60:
                release_date = found[0]
                break
    body = tuple(sections["body"])
    if not body:
        problems.append("no body paragraphs found")
    quotes = tuple(q for q in (fields.find_quote(p) for p in body) if q is not None)
    for quote in quotes:
        if quote.speaker is None:
            problems.append(f"quote without a speaker: {quote.text[:60]!r}…")
    contact_lines = [line for b in top_contacts for line in b.text.split("\n")] + sections["contacts"]
    contacts = tuple(_dedupe_contacts(fields.find_contacts(contact_lines)))
    language = (
        meta.get("language")
        or fields.detect_language(" ".join([headline or "", *body[:6]]))
        or fields.detect_language(" ".join(b.text for b in blocks[:40]))
    )
    if language is None:
        problems.append("language could not be detected; set `language` in the front matter")
    return Release(
        headline=headline,
        subheadline=subheadline,
        date=release_date,
        dateline=meta.get("dateline") or (dateline.place if dateline else None),
        wire=meta.get("wire") or (dateline.wire if dateline else None),
        language=language,
        embargo=embargo,
        body=body,
        quotes=quotes,
        about=tuple(Boilerplate(name, " ".join(texts).strip()) for name, texts in sections["about"]),
        contacts=contacts,
        forward_looking_statements=" ".join(sections["fls"]).strip() or None,
        end_marker=sections["end_marker"][0] if sections["end_marker"] else None,
        source=str(doc.path),
        audiences=tuple(meta.get("audiences") or ()),
        send_at=meta.get("send_at"),
        categories=tuple(meta.get("categories") or ()),
        organization=meta.get("organization"),
        problems=tuple(problems),
    )


def _flat(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text).strip()


@dataclass(frozen=True, slots=True)
class _Piece:
    """A line or block before the dateline, remembering where it came from."""

    block: Block
    origin: int  # index of the source block in the list given to _headline
    offset: int  # line within the source block (0 when the block was not split)


def _headline(pre: list[Block], meta: dict[str, Any]) -> tuple[str | None, str | None, list[_Piece]]:
    """Headline and subheadline from front matter or the blocks before the dateline; the unused rest is returned."""
    headline, subheadline = meta.get("headline"), meta.get("subheadline")
    pieces: list[_Piece] = []
    for origin, block in enumerate(pre):
        lines = block.text.split("\n")
        if len(lines) > 1 and all(len(line) < 200 for line in lines) and not block.is_heading and not _wrapped(lines):
            pieces += [
                _Piece(replace(block, text=line.strip()), origin, n) for n, line in enumerate(lines) if line.strip()
            ]
        else:
            pieces.append(_Piece(block, origin, 0))
    rest: list[_Piece] = []
    for piece in pieces:
        block = piece.block
        flat = _flat(block.text)
        if _is_date_only(flat) or re.match(r"^(?:!\[|https?://)", flat):
            continue
        if _has_contact_info(flat):
            rest.append(piece)
        elif headline is None and len(flat) <= _MAX_HEADLINE:
            headline = flat
        elif headline is not None and _norm(flat) == _norm(headline):
            continue
        elif (
            subheadline is None
            and not rest
            and len(flat) <= 400
            # A plain paragraph is a subheadline only when short and not a finished sentence.
            and (block.is_heading or block.bold or (len(flat) <= 300 and not _SENTENCE_END.search(flat)))
        ):
            subheadline = flat
        else:
            rest.append(piece)
    return headline, subheadline, rest


_SENTENCE_END = re.compile(r"[.!?][\"”»’')]?$")


def _wrapped(lines: list[str]) -> bool:
    """Whether the lines are one paragraph wrapped at a fixed width: some line goes on in lower case."""
    return any(nxt[:1].islower() for nxt in lines[1:])


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().casefold()


def _is_date_only(text: str) -> bool:
    if len(text) > 80:  # a date line is short; skip the date search on paragraphs
        return False
    found = find_date(text)
    return found is not None and len(text) - len(found[1].group(0)) < 25


def _has_contact_info(text: str) -> bool:
    return bool(fields.EMAIL.search(fields.deobfuscate(text))) or (
        bool(fields.PHONE.search(text)) and len(text) < 200 and fields.is_contacts_heading(text.split("\n")[0])
    )


def _about_section_name(block: Block, first: str) -> str | None:
    """The X of an "About X" heading opening `block` (`first` is its first line): a heading, bold, on a line of
    its own or short, and not a sentence."""
    name = fields.about_heading(first)
    if name and (block.is_heading or block.bold or "\n" in block.text or len(first) < 60):
        return None if re.search(r"[.!?]\s", first) else name
    return None


def _starts_section(block: Block) -> bool:
    first = _flat(block.text.split("\n")[0])
    return bool(_about_section_name(block, first)) or fields.is_contacts_heading(first) or fields.is_fls_heading(first)


_ABOUT_COLON = re.compile(r"^(?:about|à propos|über|acerca|sobre|om)\b[^:\n]{1,90}:", re.IGNORECASE)
_FLS_PARAGRAPH = re.compile(
    r"forward[-\s]looking\s+(?:statements|information).{0,200}(?:within\s+the\s+meaning|safe\s+harbou?r|"
    r"private\s+securities\s+litigation|involve\s+(?:known\s+and\s+unknown\s+)?risks)",
    re.IGNORECASE | re.DOTALL,
)


def _sections(blocks: list[Block], problems: list[str]) -> dict[str, Any]:
    """Split the blocks after the dateline into body, About sections, contacts, FLS and the end marker."""
    out: dict[str, Any] = {"body": [], "about": [], "contacts": [], "fls": [], "end_marker": []}
    section = "body"
    for block in blocks:
        lines = block.text.split("\n")
        first = lines[0].strip()
        flat = _flat(block.text)
        if not flat:
            continue
        marker = fields.end_marker_of(flat)
        if marker:
            out["end_marker"].append(marker)
            section = "trailer"
            continue
        if section == "body" and not out["body"] and (fields.is_banner(flat) or _is_date_only(flat)):
            continue
        if fields.is_source_line(flat):
            section = "source"
            continue
        heading_name = _about_section_name(block, _strip_marks(first))
        if heading_name:
            out["about"].append((heading_name, []))
            section = "about"
            rest = _flat("\n".join(lines[1:]))
            if rest:
                out["about"][-1][1].append(rest)
            continue
        inline = fields.about_inline(flat) if not block.is_heading else None
        # "About X: text" starts a section after the body; inside the body only with a colon and a short name,
        # so a sentence such as "About 40 people attended – …" stays in the body.
        if inline is not None and (section != "body" or (len(inline[0].split()) <= 6 and _ABOUT_COLON.match(flat))):
            out["about"].append((inline[0], [inline[1]]))
            section = "about"
            continue
        if fields.is_contacts_heading(_strip_marks(first)):
            section = "contacts"
            out["contacts"].extend(lines[1:])
            continue
        inline_contacts = fields.contacts_inline(flat)
        if inline_contacts is not None and len(flat) < 400:
            section = "contacts"
            out["contacts"].extend([inline_contacts, *lines[1:]] if len(lines) > 1 else [inline_contacts])
            continue
        if fields.is_fls_heading(_strip_marks(first)):
            section = "fls"
            rest = _flat("\n".join(lines[1:]))
            if rest:
                out["fls"].append(rest)
            continue
        if section in ("body", "about") and _FLS_PARAGRAPH.search(flat[:600]):
            section = "fls"
        if section == "body":
            out["body"].append(flat)
        elif section == "about":
            out["about"][-1][1].append(flat)
        elif section == "fls":
            out["fls"].append(flat)
        elif section == "contacts" or _has_contact_info(block.text):
            out["contacts"].extend(lines)
    for name, texts in out["about"]:
        if not texts:
            problems.append(f"'About {name}' section has no text")
    return out


def _strip_marks(text: str) -> str:
    return text.strip().strip("*_#").strip()


def _dedupe_contacts(contacts: list[MediaContact]) -> list[MediaContact]:
    seen: set[tuple[str | None, str | None]] = set()
    kept = []
    for contact in contacts:
        key = ((contact.email or "").lower() or None, contact.phone)
        if key not in seen:
            seen.add(key)
            kept.append(contact)
    return kept


# --- front matter ------------------------------------------------------------------------------------------


def _interpret_meta(doc: Document, zone: tzinfo) -> dict[str, Any]:
    """Front matter → typed values. A key we do not know is a problem; a value we cannot read is an error."""
    out: dict[str, Any] = {}
    for raw_key, value in doc.meta.items():
        key = _ALIASES.get(str(raw_key).strip().lower().replace("-", "_").replace(" ", "_"))
        line = doc.meta_lines.get(str(raw_key))
        if key is None:
            doc.problems.append(f"front matter key {raw_key!r} is not used (line {line})")
            continue
        if value is None or value == "":
            continue
        try:
            out[key] = _meta_value(key, value, zone)
        except ValueError as exc:
            raise ReleaseParseError(doc.path, f"front matter {raw_key!r}: {exc}", line) from None
    return out


def _meta_value(key: str, value: Any, zone: tzinfo) -> Any:
    if key in ("audiences", "categories"):
        items = value if isinstance(value, list) else re.split(r"\s*[,;]\s*", str(value))
        return tuple(str(item).strip() for item in items if str(item).strip())
    if key == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        parsed = parse_date(str(value))
        if parsed is None:
            raise ValueError(f"{value!r} is not a date (use YYYY-MM-DD)")
        return parsed
    if key in ("embargo", "send_at"):
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=zone)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=zone)
        when = parse_datetime(str(value), zone)
        if when is None:
            raise ValueError(f"{value!r} is not a date and time (use e.g. 2026-03-05T09:00:00-05:00)")
        return when
    if key == "language":
        code = str(value).strip().lower().replace("_", "-").split("-")[0]
        if not re.fullmatch(r"[a-z]{2}", code):
            raise ValueError(f"{value!r} is not an ISO 639-1 language code such as 'en' or 'fr'")
        return code
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value).strip()


__all__ = ["MediaContact", "Quote", "assemble"]
