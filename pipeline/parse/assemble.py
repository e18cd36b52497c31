"""From a reader's Document (metadata + blocks) to a Release, using the extractors in fields.py."""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from typing import Any

from pipeline.errors import ReleaseParseError
from pipeline.models import Attachment, Boilerplate, MediaContact, Quote, Release
from pipeline.parse import fields
from pipeline.parse.dates import find_date, parse_date, parse_datetime
from pipeline.parse.document import Block, Document

# Front-matter keys and the aliases people use for them.
_META_KEYS: dict[str, tuple[str, ...]] = {
    "headline": ("headline", "title"),
    "subheadline": ("subheadline", "subtitle", "deck"),
    "date": ("date", "published", "pubdate", "published_time", "publishdate", "release_date"),
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
    "url": ("url", "url_source", "source", "link", "canonical_url", "permalink"),
    "media": ("media", "images", "image", "attachments", "attachment", "featured_image", "enclosures"),
    "corrects": ("corrects", "correction_of", "corrects_release"),
    "correction": ("correction", "correction_note"),
    "translation_of": ("translation_of", "translation", "version_of", "translates"),
}
# Keys static-site generators and converters put in front matter; they say nothing about the release.
_SITE_KEYS = {
    "layout",
    "type",
    "draft",
    "weight",
    "aliases",
    "thumbnail",
    "template",
    "menu",
    "toc",
    "comments",
    "sidebar",
    "share",
    "documentclass",
    "papersize",
    "geometry",
    "colorlinks",
    "fontsize",
    "header_includes",
    "output",
    "status",
    "modified",
    "lastmod",
    "id",
    "uuid",
    "redirect_from",
}
_ALIASES = {alias: key for key, aliases in _META_KEYS.items() for alias in aliases}

_MAX_HEADLINE = 250
_DATELINE_SCAN = 15  # blocks (page chrome not counted) searched for the dateline


def assemble(doc: Document, zone: tzinfo) -> Release:
    """Build the Release. Raises ReleaseParseError only for bad front-matter values; the rest goes to problems."""
    meta = _interpret_meta(doc, zone)
    problems = list(doc.problems)
    blocks = [part for b in doc.blocks if b.text.strip() for part in _split_collapsed(b)]

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
    stop = len(blocks)  # where the scan for the dateline ended
    scanned = 0
    for index, block in enumerate(blocks):
        if scanned == _DATELINE_SCAN:
            stop = index
            break
        if _is_chrome(block):  # navigation and breadcrumbs of a page copied with its site around it
            continue
        scanned += 1
        flat = _flat(block.text)
        if fields.is_banner(flat):
            continue
        when, is_embargo = fields.embargo_of(flat, zone)
        if is_embargo:
            if when is None:
                problems.append(f"line {block.line}: embargo line without a readable date: {flat[:80]!r}")
            embargo = embargo or when
            continue
        if fields.is_contacts_heading(_strip_marks(block.text.split("\n")[0])) and not any(
            not _has_contact_info(b.text) for b in pre
        ):
            continue  # "CONTACT:" above the headline: the contact lines after it are kept for the contacts
        if _starts_section(block) or fields.end_marker_of(flat):
            stop = index
            break
        if not block.is_heading and block.kind != "li":
            dateline = fields.find_dateline(flat, default_year) or fields.lead_dateline(block.lead, flat, default_year)
            if dateline is not None:
                if dateline.rest:
                    blocks[index] = replace(block, text=dateline.rest, lead="")
                    stop = index
                else:  # the dateline is a line of its own; the body starts after it
                    stop = index + 1
                break
        pre.append(block)
        pre_index.append(index)
        # The dateline opens the first body paragraph: once a full paragraph has gone by under a headline
        # without one, the release has no dateline (a later "A /B/ C" is prose, not a wire).
        if len(flat) > 300 and _SENTENCE_END.search(flat) and (meta.get("headline") or len(pre) > 1):
            stop = index + 1
            break

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
            found = find_date(_flat(block.text)) if len(_flat(block.text)) < 60 else None
            if found:
                release_date = found[0]
                break
    body = tuple(sections["body"])
    if not body:
        problems.append("no body paragraphs found")
    quotes = tuple(fields.find_quotes(body, sections["quoted"]))
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
        media=tuple(meta.get("media") or ()),
        corrects=meta.get("corrects"),
        correction=meta.get("correction"),
        translation_of=meta.get("translation_of"),
        problems=tuple(problems),
    )


_SECTION_OPENER = (
    r"(?:about|à propos d|über|acerca de|(?:media\s+|press\s+)?contacts?|related\s+links?|"
    r"forward[-\s]looking\s+statements|for\s+(?:more|further)\s+information)\b[^:\n]{0,80}:"
)
_COLLAPSED_SECTION = re.compile(rf"\s{{2,}}(?={_SECTION_OPENER})", re.IGNORECASE)
# "…since 2020. Contact Acme: Jane Roe - Director: jane@…": a contact line run into the paragraph before it.
_INLINE_CONTACTS = re.compile(r"(?<=[.!?])\s+(?=(?:Media |Press )?Contacts? [A-Z][^:.\n]{0,60}:)")
_COLLAPSED_BREAK = re.compile(rf"(?<=[.!?:\"”)])\s{{2,}}(?=[A-Z\"“-])|\s{{2,}}(?={_SECTION_OPENER})", re.IGNORECASE)


def _split_collapsed(block: Block) -> list[Block]:
    """A long paragraph whose breaks were collapsed to runs of spaces (archive copies of wire releases) is
    split there again; a short one only where a section such as "About X:" starts inside it."""
    text = block.text
    if block.kind == "h" or "\n" in text:
        return [block]
    parts = [text]
    if "  " in text:
        parts = (_COLLAPSED_BREAK if len(text) > 1000 else _COLLAPSED_SECTION).split(text)
    parts = [piece.strip() for part in parts for piece in _INLINE_CONTACTS.split(part) if piece.strip()]
    return [replace(block, text=part, lead=block.lead if n == 0 else "") for n, part in enumerate(parts)]


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
    # A heading before the dateline is the headline; short lines above it are labels ("Information letter").
    labels_end = 0
    if headline is None:
        for number, piece in enumerate(pieces):
            flat = _flat(piece.block.text)
            if piece.block.is_heading and not _is_label(piece):
                labels_end = number
                break
            if not (_is_label(piece) or _has_contact_info(flat) or _is_date_only(flat)):
                break
    rest: list[_Piece] = []
    for number, piece in enumerate(pieces):
        block = piece.block
        flat = _flat(block.text)
        if _is_date_only(flat) or re.match(r"^(?:!\[|https?://)", flat) or _dated_heading(block, flat):
            continue
        if _has_contact_info(flat):
            rest.append(piece)
        elif number < labels_end:
            continue
        elif headline is None and len(flat) <= _MAX_HEADLINE and block.kind != "li":
            headline = flat
        elif headline is not None and _norm(flat) == _norm(headline):
            continue
        elif (
            subheadline is None
            and not rest
            and len(flat) <= 400
            and block.kind != "li"
            # A plain paragraph is a subheadline only when short and not a finished sentence.
            and (block.is_heading or block.bold or (len(flat) <= 300 and not _SENTENCE_END.search(flat)))
        ):
            subheadline = flat
        else:
            rest.append(piece)
    return headline, subheadline, rest


def _is_label(piece: _Piece) -> bool:
    """A short line that is not a sentence: a kicker or label above a headline, or a heading used as one."""
    flat = _flat(piece.block.text)
    return len(flat) <= 60 and not _SENTENCE_END.search(flat) and piece.block.kind != "li"


def _dated_heading(block: Block, flat: str) -> bool:
    """A heading that opens with a date ("05 Jan 2022 - Important note"): it dates the text, it is not a title."""
    if not block.is_heading:
        return False
    found = find_date(flat[:40])
    return found is not None and found[1].start() == 0


_SENTENCE_END = re.compile(r"[.!?][\"”»’')]?$")


_CONTINUES = re.compile(
    r"\b(?:a|an|the|of|to|for|and|or|but|in|on|at|by|with|from|as|into|than|that|its|their|our|de|la|le|les|"
    r"des|du|et|à|en|pour|und|der|die|das|für|y|el|los|las|och|för|av)$",
    re.IGNORECASE,
)


def _wrapped(lines: list[str]) -> bool:
    """Whether the lines are one paragraph wrapped at a fixed width: a line goes on in lower case, or a line
    ends on a word that cannot end a title ("…the Environment but" / "Left Important Unfinished Business")."""
    return any(nxt[:1].islower() for nxt in lines[1:]) or any(_CONTINUES.search(line.rstrip()) for line in lines[:-1])


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


def _is_chrome(block: Block) -> bool:
    return block.link_only and len(block.text) < 300 and not _has_contact_info(block.text)


def _starts_section(block: Block) -> bool:
    if _is_chrome(block) or block.kind == "li":
        return False
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
    out: dict[str, Any] = {"body": [], "quoted": [], "about": [], "contacts": [], "fls": [], "end_marker": []}
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
        if _is_chrome(block) and (block.kind in ("li", "h") or len(flat) < 80):
            continue  # navigation links and archive footers ("Original/Source Press Release")
        lead_about = fields.about_heading(block.lead) if block.lead and not block.is_heading else None
        if lead_about and flat.startswith(block.lead):  # "**About Acme**Acme makes…": heading glued to its text
            out["about"].append((lead_about, []))
            section = "about"
            rest = flat[len(block.lead) :].lstrip(" :.-–—")
            if rest:
                out["about"][-1][1].append(rest)
            continue
        heading_name = _about_section_name(block, _strip_marks(first))
        if heading_name and _NOT_ORGANISATION.match(heading_name):
            heading_name = None  # "About the Survey": a section of the body, not a boilerplate
        elif heading_name is None and block.is_heading and section == "about":
            section = "other"  # a heading after a boilerplate ("Get Involved", "Media kit") ends it
            continue
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
        if section == "body" and _is_contact_line(block, flat):
            out["contacts"].extend(lines)
            continue
        if section in ("body", "about") and _FLS_PARAGRAPH.search(flat[:600]):
            section = "fls"
        if section == "body":
            out["body"].append(flat)
            out["quoted"].append(block.kind == "quote")
        elif section == "about":
            out["about"][-1][1].append(flat)
        elif section == "fls":
            out["fls"].append(flat)
        elif section == "contacts" or _has_contact_info(block.text):
            out["contacts"].extend(lines)
    for name, texts in out["about"]:
        if not texts:
            problems.append(f"'About {name}' heading has no text under it; left out")
    out["about"] = [(name, texts) for name, texts in out["about"] if texts]
    return out


_NOT_ORGANISATION = re.compile(
    r"^(?:the|this|our|these)\s+(?:survey|study|report|research|data|methodology|event|conference|program|"
    r"programme|awards?|index|campaign|release|project's\s+\w+|author|authors|findings|results|poll)\s*$",
    re.IGNORECASE,
)
_CONTACT_LINE = re.compile(r"^(?:e-?mail|courriel|contact|tel|phone|téléphone)\s*:", re.IGNORECASE)
_SIGNATURE = re.compile(r"^[-–—\s]*(?P<name>[^<>@,\n]{3,60}?)\s*[<(]?[^<>@\s]+@[^<>\s]+")


def _is_contact_line(block: Block, flat: str) -> bool:
    """A line in the body that is a way to reach someone: "Email: …", or a signature "Jane Roe <jane@…>"."""
    if len(flat) > 200 or not _has_contact_info(flat):
        return False
    signature = _SIGNATURE.match(flat)
    return bool(_CONTACT_LINE.match(flat)) or (signature is not None and fields.is_person(signature.group("name")))


def _strip_marks(text: str) -> str:
    return text.strip().strip("*_#").strip()


def _dedupe_contacts(contacts: list[MediaContact]) -> list[MediaContact]:
    """Drop repeats; two people sharing one press address stay two contacts."""
    kept: list[MediaContact] = []
    for contact in contacts:
        email = (contact.email or "").lower()
        if any(
            (k.email or "").lower() == email
            and k.phone == contact.phone
            and (contact.name is None or (k.name or "").lower() == contact.name.lower())
            for k in kept
        ):
            continue
        kept.append(contact)
    return kept


# --- front matter ------------------------------------------------------------------------------------------


def _interpret_meta(doc: Document, zone: tzinfo) -> dict[str, Any]:
    """Front matter → typed values. A key we do not know is a problem; a value we cannot read is an error."""
    out: dict[str, Any] = {}
    for raw_key, value in doc.meta.items():
        key = _ALIASES.get(str(raw_key).strip().lower().replace("-", "_").replace(" ", "_"))
        line = doc.meta_lines.get(str(raw_key))
        if key is None and str(raw_key).strip().lower().replace("-", "_") in _SITE_KEYS:
            continue
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
    if key == "media":
        return tuple(_attachment(item) for item in (value if isinstance(value, list) else [value]))
    if key == "language":
        code = str(value).strip().lower().replace("_", "-").split("-")[0]
        if not re.fullmatch(r"[a-z]{2}", code):
            raise ValueError(f"{value!r} is not an ISO 639-1 language code such as 'en' or 'fr'")
        return code
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value).strip()


def _attachment(item: Any) -> Attachment:
    """`images: [photo.jpg]` or `images: [{url: …, alt: …, type: …, length: …}]`."""
    if isinstance(item, dict):
        url = str(item.get("url") or item.get("src") or "").strip()
        title = item.get("alt") or item.get("title") or item.get("caption")
        kind, length = item.get("type"), item.get("length") or item.get("size") or 0
    else:
        url, title, kind, length = str(item).strip(), None, None, 0
    if not url:
        raise ValueError("an image or attachment needs a url")
    try:
        size = int(length)
    except (TypeError, ValueError):
        raise ValueError(f"length {length!r} is not a number of bytes") from None
    guessed = mimetypes.guess_type(url.split("?")[0])[0] or "application/octet-stream"
    return Attachment(url=url, type=str(kind or guessed), title=str(title) if title else None, length=size)


__all__ = ["MediaContact", "Quote", "assemble"]
