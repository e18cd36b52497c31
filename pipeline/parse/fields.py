"""Shared extractors: from a reader's blocks to the fields of a Release.

The order of a wire release is stable across wires and languages: banners and embargo line, headline,
subheadline, dateline opening the first body paragraph, body with quotes, then sections ("About X", media
contacts, forward-looking statements) and an end marker. Each extractor finds one of these; anything it cannot
settle is recorded in `problems` rather than guessed silently.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

import py3langid

from pipeline.models import MediaContact, Quote
from pipeline.parse.dates import find_date, month_number, parse_datetime

# --- section headings ------------------------------------------------------------------------------------

_ABOUT = re.compile(
    r"^(?:about|[àa] propos (?:de la |de l['’]|des |du |de |d['’])|à propos|über|uber|acerca de|sobre|om|"
    r"informazioni su|over|"
    r"о компании|о)\s*[’']?\s*(?P<name>[^\n:]{1,90}?)\s*(?::|\.)?\s*$",
    re.IGNORECASE,
)
_ABOUT_INLINE = re.compile(
    r"^(?:about|[àa] propos (?:de la |de l['’]|des |du |de |d['’])|über|acerca de|sobre|om)\s*[’']?\s*"
    r"(?P<name>[^\n:]{1,90}?)"
    r"\s*(?::|\s[–—-]\s)\s*(?P<text>\S.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CONTACTS = re.compile(
    r"^(?:(?:media|press|investor|news|journalist|editorial|pr)\s+)?(?:contacts?|inquiries|enquiries|relations)"
    r"(?:\s+(?:info(?:rmation)?|details))?\s*(?:for\s+[^:\n]{1,60})?\s*:?\s*$"
    r"|^(?:contacts?\s+(?:presse|médias?|medias?)|pressekontakt|medienkontakt|kontakt|contacto(?:\s+de\s+prensa)?|"
    r"presskontakt|renseignements|pour (?:plus d['’]information|de plus amples renseignements)[^:\n]*|"
    r"for (?:further|more|additional) information[^:\n]{0,60}|source)\s*:?\s*$",
    re.IGNORECASE,
)
_CONTACTS_INLINE = re.compile(
    r"^(?:(?:media|press|investor(?:\s+relations)?|company|pr)\s+)?(?:contacts?|inquiries|enquiries)"
    r"(?:\s+[A-Z][^:\n]{0,50})?\s*:\s*(?P<text>\S.*)$"
    r"|^(?:for (?:further|more) information|pour plus d['’]information|renseignements|contacts?\s+(?:presse|médias?)|"
    r"pressekontakt|medienkontakt|kontakt|contacto(?:\s+de\s+prensa)?|presskontakt)[^:\n]{0,60}:\s*(?P<text2>\S.*)$",
    re.IGNORECASE | re.DOTALL,
)
_FLS = re.compile(
    r"^(?:(?:cautionary|special)\s+(?:note|statement|language)\s+(?:regarding|concerning|about|on)\s+)?"
    r"(?:forward[-\s‑]looking\s+(?:statements?|information)|safe\s+harbou?r(?:\s+statement)?|"
    r"cautionary\s+(?:note|statement|language)|déclarations?\s+prospectives?|énoncés?\s+prospectifs?|"
    r"informations?\s+prospectives?|mise en garde[^\n]{0,60}|zukunftsgerichtete\s+aussagen|"
    r"declaraciones\s+prospectivas|framåtblickande\s+uttalanden)\b[^\n]{0,80}?[:.]?\s*$",
    re.IGNORECASE,
)
_END_MARKER = re.compile(r"^\s*(?P<marker>#\s?#\s?#|-\s?30\s?-|–30–|—30—)\s*$")
_SOURCE_LINE = re.compile(r"^SOURCE[:\s]+\S")
_BANNER = re.compile(
    r"^\W*(?:for\s+immediate\s+release|immediate\s+release|press\s+release|news\s+release|media\s+release|"
    r"for\s+release|communiqué(?:\s+de\s+presse)?|pour\s+diffusion\s+immédiate|pressemitteilung|"
    r"pressmeddelande|comunicado(?:\s+de\s+prensa)?|nota\s+de\s+prensa|news|press|media\s+advisory|"
    r"for\s+distribution|public\s+release)\b[\s\W]*$",
    re.IGNORECASE,
)
_EMBARGO = re.compile(
    r"^\W*(?:embargo(?:ed)?\s*(?:until|till|to|:)?|under\s+embargo\s+until|not\s+for\s+(?:release|publication)"
    r"\s+(?:before|until)|hold\s+for\s+release(?:\s+until)?|release\s+(?:date|time)\s*:|"
    r"sous\s+embargo\s+jusqu['’]\s*(?:au|à|a)?|embargo\s+jusqu['’]\s*(?:au|à)?|sperrfrist(?:\s+bis)?|"
    r"embargo\s+hasta(?:\s+el)?)\s*[:\-–]?\s*(?P<when>.+)$",
    re.IGNORECASE,
)
_META_DATE = re.compile(r"^\s*date[:\s]\s*(?P<date>\d{4}-\d\d-\d\d)\s*", re.IGNORECASE)

# --- dateline ----------------------------------------------------------------------------------------------

_DASH = r"(?:--|—|–|‒|―|\s-\s)"
_DATELINE = re.compile(
    rf"^(?P<prefix>[^\n]{{0,200}}?)\s*(?:"
    rf"(?:--|—|–|-)?\s*\((?P<wire1>[^()\n]{{2,60}})\)\s*(?:{_DASH}|:|-)\s*"
    rf"|/\s*(?P<wire2>[^/\n]{{2,45}}?)\s*/\s*(?:{_DASH}|:|-)?\s*"
    rf"|\s*{_DASH}\s*"
    rf")(?P<rest>\S.*)$",
    re.DOTALL,
)
_LEADING_DATE_THEN_DASH = re.compile(
    rf"^\s*(?P<date>[^/\n]{{4,40}}?)\s*(?:/|{_DASH}|-|\.\s|:\s)\s*(?P<rest>\S.*)$", re.DOTALL
)


# What may follow the date inside a dateline: a time and a zone ("@ 6:00 AM Pacific", "at 9 a.m. ET").
_TIME_TAIL = re.compile(
    r"(?:@|at|à)?\s*\d{1,2}(?:[:.h]\d\d)?\s*(?:[ap]\.?\s?m\.?)?\s*(?:[A-Za-z]{1,12}(?:\s+time)?)?",
    re.IGNORECASE,
)
_WIRE_AFTER_PLACE = re.compile(r"\s*\(([^()]{2,40})\)$")


# "Annapolis, MD", "Tampa, Fla.": a city and a state or province abbreviation.
_CITY_STATE = re.compile(r"[A-Z][\w.'-]+(?:\s+[A-Z][\w.'-]+){0,2},\s+(?:[A-Z]{2}|[A-Z][a-z]{1,5}\.)")
_WIRE_SEGMENT = re.compile(
    r"^(?P<wire>[A-Z0-9][\w.&'-]*(?:\s+[A-Z0-9][\w.&'-]*){0,3})\s*(?:\([^()\n]{0,80}\))?\s*(?:--|—|–|-)\s+"
)
_WIRE_WORD = re.compile(r"wire|newswire|press\s*release|\bPR\b|news", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Dateline:
    place: str | None
    wire: str | None
    date: date | None
    rest: str


# "MADISON, WIS. (PRWEB) NOVEMBER 03, 2016" with no dash after it: PRWeb's own shape, often a line of its own.
_PLACE_WIRE_DATE = re.compile(
    r"^(?P<place>[^()\n]{2,80}?)\s*\((?P<wire>[A-Z][^()\n]{1,40})\)\s+(?P<after>\S.*)$", re.DOTALL
)


def find_dateline(text: str, default_year: int | None = None) -> Dateline | None:
    """The dateline opening a body paragraph, or None when the paragraph does not start with one."""
    return _dashed_dateline(text, default_year) or _wire_then_date(text, default_year)


def _wire_then_date(text: str, default_year: int | None) -> Dateline | None:
    """ "CITY, ST (WIRE) Month DD, YYYY" followed by the text or by nothing, without a dash."""
    match = _PLACE_WIRE_DATE.match(text)
    if not match or len(match.group("wire").split()) > 4 or ":" in match.group("wire"):  # not "(NASDAQ: X)"
        return None
    place = match.group("place").strip(" ,")
    after = match.group("after")
    found = find_date(after[:60], default_year)
    if found is None or not re.fullmatch(r"(?:[A-Za-z]{3,9}\.?,?\s*)?", after[: found[1].start()]):
        return None  # the date must come first (after a weekday at most), not "(Acme) said on May 3"
    words = place.replace(",", " ").split()
    if not _looks_like_place(place) or not all(w[:1].isupper() for w in words):
        return None
    rest = after[found[1].end() :].lstrip(" ,.:;–—-\u00a0")
    return Dateline(place, match.group("wire").strip(), found[0], rest.strip())


def _dashed_dateline(text: str, default_year: int | None) -> Dateline | None:
    match = _DATELINE.match(text)
    if not match:
        return None
    prefix = match.group("prefix").strip().rstrip(",;").strip()
    wire = (match.group("wire1") or match.group("wire2") or "").strip() or None
    if wire and (len(wire.split()) > 6 or not re.search(r"[A-Za-z]", wire) or "http" in wire):
        return None
    # "/PRNewswire/" or "/24-7PressRelease/", not prose such as "the existing/old/previous image"
    if wire and match.group("wire2") and not (wire[0].isupper() or wire[0].isdigit()):
        return None
    rest = match.group("rest")
    found = find_date(prefix, default_year)
    wire_date = find_date(wire, default_year) if match.group("wire1") and wire else None
    if wire and wire_date is not None:  # "(Newsfile Corp. - October 4, 2026)": the wire and the date
        wire = wire[: wire_date[1].start()].strip(" -–—,") or None
    when: date | None = None
    place = prefix
    if found is not None:
        when, date_match = found
        place = prefix[: date_match.start()]
        tail = prefix[date_match.end() :].strip(" ,")
        if tail and not _TIME_TAIL.fullmatch(tail):
            return None
    elif wire_date is not None:
        when = wire_date[0]
    else:
        # The date may follow the first separator: "CITY, ST / ACCESSWIRE / March 23, 2021 / Text",
        # "Boston, MA – March 3, 2026 – Text".
        after = _LEADING_DATE_THEN_DASH.match(rest)
        if after:
            late = find_date(after.group("date"), default_year)
            if late is not None and late[1].start() < 12:
                when, rest = late[0], after.group("rest")
    place = re.sub(r"[\s,;(–—-]+$", "", place).strip()
    place = place.lstrip("([ ")
    in_parentheses = _WIRE_AFTER_PLACE.search(place)
    if in_parentheses and wire is None:  # "Boerne, TX (Newsworthy.ai) Monday Aug 26, 2024 — …"
        wire, place = in_parentheses.group(1).strip(), place[: in_parentheses.start()].strip(" ,")
    if place and not _looks_like_place(place):
        return None
    if not place and when is None and wire is None:
        return None
    if not wire and when is None and not (place and (_mostly_upper(place) or _CITY_STATE.fullmatch(place))):
        return None
    if wire is None:  # "TAMPA, Fla., February 10, 2026 – PRISM MediaWire (Press Release Service) – AtlasClear…"
        named = _WIRE_SEGMENT.match(rest)
        if named and _WIRE_WORD.search(named.group("wire")):
            wire, rest = named.group("wire"), rest[named.end() :]
    return Dateline(place or None, wire, when, rest.strip())


def lead_dateline(lead: str, text: str, default_year: int | None = None) -> Dateline | None:
    """A dateline set in bold or italics at the start of a paragraph, with no dash after it:
    "**WALPOLE, MA** The Tor Project…", "_Cambridge, MA_. The Jupyter…", "*Amsterdam, 1 February 2018*"."""
    lead = lead.strip()
    if not lead or len(lead) > 90 or not text.startswith(lead):
        return None
    rest = text[len(lead) :].lstrip(" .:,;–—-\u00a0").strip()
    core = lead.rstrip(" .:,;–—-")
    wire = None
    bracketed = _WIRE_AFTER_PLACE.search(core)
    if bracketed:
        wire, core = bracketed.group(1).strip(), core[: bracketed.start()].strip(" ,")
    found = find_date(core, default_year)
    when: date | None = None
    place = core
    if found is not None:
        when, date_match = found
        tail = core[date_match.end() :].strip(" ,.")
        if tail and not _TIME_TAIL.fullmatch(tail):
            return None
        place = re.sub(r"[\s,;(–—-]+$", "", core[: date_match.start()]).strip()
    if not place or not _looks_like_place(place):
        return None
    # Without a date, only "CITY, Region" in a few capitalised words is read as a place.
    parts = [part.strip() for part in place.split(",")]
    shaped = len(parts) in (2, 3) and all(
        part and len(part.split()) <= 3 and all(w[:1].isupper() for w in part.split()) for part in parts
    )
    if when is None and not (shaped or _mostly_upper(place)):
        return None
    return Dateline(place, wire, when, rest)


def _looks_like_place(text: str) -> bool:
    words = text.split()
    if len(words) > 9 or len(text) > 90 or not text[0].isupper():
        return False
    if re.search(r"[\"“”«»!?]|\b(?:is|are|was|has|have|will|today|announced|the)\b", text):
        return False
    return not re.search(r"\.\s+[A-Z][a-z]+\s+[a-z]", text)


def _mostly_upper(text: str) -> bool:
    letters = [c for c in text.split(",")[0] if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) / len(letters) > 0.8


# --- quotes ------------------------------------------------------------------------------------------------

_QUOTE_CHARS = re.compile(r"[\"“”„«»]")
_ATTRIBUTION = re.compile(
    r"\b(?:said|says|added|adds|explained|explains|commented|comments|noted|notes|stated|states|continued|"
    r"continues|remarked|remarks|emphasi[sz]ed|emphasi[sz]es|concluded|concludes|shared|observed|observes|"
    r"stating|saying|adding|expresses|declared|according\s+to|announced|highlighted|pointed\s+out|expressed|believes|acknowledged|"
    r"a\s+(?:déclaré|dit|expliqué|ajouté|souligné|affirmé|indiqué|précisé|commenté|conclu|estimé|rappelé)|"
    r"dit|déclare|explique|ajoute|souligne|affirme|indique|précise|estime|commente|rappelle|selon|"
    r"sagt|sagte|erklärt|erklärte|betont|betonte|ergänzt|so|dijo|afirmó|explicó|señaló|comentó|añadió|"
    r"säger|sa|berättar|förklarar)\b",
    re.IGNORECASE,
)
_TITLE_WORDS = {
    "ceo",
    "cto",
    "cfo",
    "coo",
    "cmo",
    "cio",
    "president",
    "vice",
    "vp",
    "chief",
    "executive",
    "officer",
    "director",
    "founder",
    "co-founder",
    "cofounder",
    "chair",
    "chairman",
    "chairwoman",
    "chairperson",
    "head",
    "manager",
    "senior",
    "general",
    "secretary",
    "minister",
    "professor",
    "prof",
    "dr",
    "dr.",
    "mr",
    "mr.",
    "mrs",
    "mrs.",
    "ms",
    "ms.",
    "executive director",
    "partner",
    "managing",
    "lead",
    "principal",
    "dean",
    "mayor",
    "governor",
    "senator",
    "leader",
    "owner",
    "delegate",
    "spokesperson",
    "spokesman",
    "spokeswoman",
    "analyst",
    "engineer",
    "scientist",
    "researcher",
    "editor",
    "member",
    "board",
    "global",
    "group",
    "technology",
    "product",
    "marketing",
    "operating",
    "financial",
    "commercial",
    "research",
    "development",
    "sales",
    "business",
    "operations",
    "strategy",
    "communications",
    "associate",
    "assistant",
    "deputy",
    "acting",
    "interim",
    "sr",
    "sr.",
    "jr",
    "jr.",
    "directeur",
    "directrice",
    "présidente",
    "président",
    "fondateur",
    "fondatrice",
    "général",
    "générale",
    "geschäftsführer",
    "vorstand",
    "gründer",
}
_NAME_TOKEN = re.compile(r"^[A-ZÀ-ÖØ-ÞŁŚŻŹĆŃ][a-zà-öø-ÿłśżźćńA-Z'’.-]*$")
_PARTICLES = {"de", "da", "van", "von", "der", "del", "la", "le", "du", "di", "bin", "ben", "y", "st.", "mc"}
_CAMEL = re.compile(r"[a-zà-ÿ][A-ZÀ-Þ]")
_NAME_PREFIX = re.compile(r"^(?:Mc|Mac|O'|O’|D'|D’|De|Di|Da|Du|La|Le|Van|Von|Fitz)[A-ZÀ-Þ][a-zà-ÿ]+$")
_POSSESSIVE = re.compile(r"['’]s$")


def _pair_quotes(text: str) -> list[tuple[int, int]]:
    """Spans between successive quote characters; wires mix straight and curly quotes in one paragraph.
    A quotation left open at the end of the paragraph runs to its end."""
    positions = [m.start() for m in _QUOTE_CHARS.finditer(text)]
    if len(positions) % 2:
        positions.append(len(text))
    return [(positions[i] + 1, positions[i + 1]) for i in range(0, len(positions) - 1, 2)]


def _is_title(span: str) -> bool:
    """A quoted name or title ("Birds of a Feather", “Two Thriving Ecosystems”), not a quotation."""
    words = [w for w in span.split() if len(w) > 3]
    if not words or re.search(r"[.!?,;]\W*$", span.strip()):
        return False
    return sum(w[0].isupper() for w in words) >= 0.7 * len(words)


def _is_quotation(span: str) -> bool:
    """Spoken words rather than a quoted term: four words or more, or a short sentence that ends with its own
    punctuation (“We are delighted,” said …)."""
    words = len(span.split())
    if _is_title(span):
        return False
    return words >= 4 or (words >= 2 and bool(re.search(r"[,.!?…]$", span.strip())))


def find_quote(paragraph: str) -> Quote | None:
    """A quotation with an attribution in one paragraph; split quotes around one attribution count once."""
    spans = [(a, b) for a, b in _pair_quotes(paragraph) if _is_quotation(paragraph[a:b])]
    if not spans or sum(len(paragraph[a:b].split()) for a, b in spans) < 4:
        return None
    outside = []
    previous = 0
    for start, end in spans:
        outside.append(paragraph[previous : start - 1])
        previous = end + 1
    outside.append(paragraph[previous:])
    remainder = " ⁂ ".join(outside)
    verb = _ATTRIBUTION.search(remainder)
    colon_intro = re.search(r"([A-ZÀ-Þ][\w'’.-]+(?:\s+[\w'’.-]+){0,8})\s*[:,]\s*$", outside[0]) if outside[0] else None
    if verb is None and colon_intro is None:
        return None
    text = " ".join(paragraph[a:b].strip().strip(",").strip() for a, b in spans)
    return Quote(speaker=_speaker(remainder, verb), text=re.sub(r"\s+", " ", text).strip())


def find_quotes(paragraphs: Sequence[str], quoted: Sequence[bool] = ()) -> list[Quote]:
    """The quotations of a body, in order. Besides quotes attributed inside their paragraph this finds a
    quotation running over several paragraphs, one set as a block quote, and one whose attribution stands in
    the next paragraph ("-- Jane Roe, CEO") or is announced by the previous one ("She said:")."""
    paras = list(paragraphs)
    marked = list(quoted) + [False] * (len(paras) - len(quoted))
    quotes: list[Quote] = []
    index = 0
    while index < len(paras):
        paragraph = paras[index]
        found = find_quote(paragraph)
        if found is not None:
            quotes.append(found)
            index += 1
            continue
        if not (_opens_quote(paragraph) or marked[index]):
            index += 1
            continue
        # Join the paragraphs a quotation runs over (its marks balance at its last paragraph).
        last, text = index, paragraph
        while len(_QUOTE_CHARS.findall(text)) % 2 and last + 1 < len(paras) and last - index < 5:
            last += 1
            text = f"{text} {paras[last]}"
        found = find_quote(text)
        if found is not None:
            quotes.append(found)
            index = last + 1
            continue
        words = _quoted_words(text) if _QUOTE_CHARS.search(text) else text
        if len(words.split()) < 4:
            index += 1
            continue
        speaker: str | None = None
        following = paras[last + 1] if last + 1 < len(paras) else ""
        attribution = _leading_speaker(following)
        if attribution is not None:
            speaker, remainder = attribution
            if remainder and _opens_quote(remainder):  # "Jane Roe, CEO. “Next quotation…”"
                paras[last + 1] = remainder
        elif index and paras[index - 1].rstrip().endswith(":"):
            speaker = _name_in(paras[index - 1])
        else:
            index = last + 1
            continue
        quotes.append(Quote(speaker=speaker, text=re.sub(r"\s+", " ", words).strip()))
        index = last + 1
    return quotes


def _opens_quote(text: str) -> bool:
    return bool(re.match(r"^\W{0,3}[\"“„«]", text.lstrip()))


def _quoted_words(text: str) -> str:
    spans = _pair_quotes(text)
    if not spans and _QUOTE_CHARS.search(text):  # one mark only: the text after it
        return text[_QUOTE_CHARS.search(text).end() :]  # type: ignore[union-attr]
    return " ".join(text[a:b].strip().strip(",").strip() for a, b in spans)


_LEADING_NAME = re.compile(r"^\s*(?P<dash>\\?(?:--|—|–|-|―)\s*)?(?P<name>[^,.;:()–—\n]{3,60}?)\s*(?P<sep>,|–|—|\.|$)")


def _leading_speaker(text: str) -> tuple[str, str] | None:
    """(speaker, the text after the attribution) for a paragraph opening with one: "-- Casey Roe, CEO of X",
    "Jane Roe, President of X. “…”", or a short "Jane Roe, Chair of X."."""
    match = _LEADING_NAME.match(text)
    if not match or _QUOTE_CHARS.match(text.lstrip()):
        return None
    name = match.group("name").strip()
    if not _is_person_name(name):
        return None
    after = text[match.end() :].lstrip()
    title_follows = match.group("sep") == "," and after.split(" ", 1)[0].lower().strip(",.") in _TITLE_WORDS
    if not (match.group("dash") or len(text) < 150 or title_follows):
        return None
    sentence_end = re.search(r"[.!?](?:\s|$)", text)
    quote_at = _QUOTE_CHARS.search(text)
    remainder = ""
    if quote_at and (sentence_end is None or quote_at.start() > sentence_end.start()):
        remainder = text[quote_at.start() :]
    return name, remainder


# Where an attribution clause ends: a comma, or a full stop that does not close "Dr." or "Mr.".
_HONORIFICS = ("Dr", "Mr", "Mrs", "Ms", "Mx", "Prof", "Pr", "Sr", "Jr", "St", "Hon", "Rev", "Mme", "Mlle")
_CLAUSE_END = re.compile("".join(rf"(?<!\b{h})" for h in _HONORIFICS) + r"[.;⁂](?:\s|$)|,")


def _speaker(remainder: str, verb: re.Match[str] | None) -> str | None:
    """The person attributed: the name after the verb ("said Jane Doe, CEO") or before it ("Doe said")."""
    if verb is not None:
        after = _CLAUSE_END.split(remainder[verb.end() :], maxsplit=1)[0]
        name = _name_from_right(after.split())
        if name:
            return name
        before = re.split(r"[.;⁂](?:\s|$)", remainder[: verb.start()])[-1]
        # None when no name stands beside the verb: reported as a problem rather than guessed.
        return _name_in(before, nearest_last=True)
    first = remainder.split("⁂")[0]
    return _name_in(first)


def _name_in(text: str, nearest_last: bool = False) -> str | None:
    """The first person's name among the comma-separated clauses; with `nearest_last`, the one nearest the
    end ("Glacier's CEO, Maya Chen, said")."""
    clauses = [c for c in re.split(r",", text) if c.strip()]
    for clause in reversed(clauses) if nearest_last else clauses:
        name = _name_from_right(clause.split())
        if name:
            return name
    return None


def _name_from_right(tokens: Sequence[str]) -> str | None:
    """The trailing run of capitalised tokens that is a person's name, titles and organisations dropped."""
    tokens = [t.strip('“”"«»()[]:') for t in tokens if t.strip('“”"«»()[]:')]
    # The capitalised runs, cut at lowercase words that are not particles. The first run that holds a full
    # name wins ("said Acme CEO and Chief Privacy Officer Travis Good"), else the first run's single name.
    # A run after "of", "at" or "from" names where the person works ("co-founder of Quillfeather").
    runs: list[list[str]] = [[]]
    after_preposition = [False]
    previous = ""
    for token in tokens:
        if _NAME_TOKEN.match(token) or (runs[-1] and token.lower() in _PARTICLES):
            if not runs[-1]:
                after_preposition[-1] = previous.lower() in _ORG_PREPOSITIONS
            runs[-1].append(token)
        elif runs[-1]:
            runs.append([])
            after_preposition.append(False)
        previous = token
    candidates = [run for run, org in zip(runs, after_preposition, strict=True) if run and not org]
    names = [name for name in (_name_of_run(run) for run in candidates) if name]
    return next((name for name in names if " " in name), names[0] if names else None)


_ORG_PREPOSITIONS = {"of", "at", "from", "for", "with", "chez", "bei", "de", "du", "des"}


def _name_of_run(run: Sequence[str]) -> str | None:
    """The person's name at the end of one capitalised run, or None when the run names a firm or a thing."""
    picked: list[str] = []
    acronym_before = False
    for token in reversed(run):
        low = token.lower().rstrip(",")
        acronym = token.isupper() and len(token) > 1
        camel = _CAMEL.search(token) and not _NAME_PREFIX.match(token)  # "AtlasClear", but "MacLeod"
        if low in _TITLE_WORDS or acronym or camel or _POSSESSIVE.search(token):
            if picked:
                acronym_before = bool(acronym)
                break
            continue
        picked.insert(0, token)
        if len(picked) == 4:
            break
    while picked and (picked[0].lower() in _PARTICLES or picked[0].rstrip(".") in _HONORIFICS):
        picked.pop(0)
    if not picked:
        return None
    name = " ".join(picked).rstrip(".,")
    if _NOT_NAME.search(name):  # "Adobecity Legal Consulting", "Acme Communications"
        return None
    if len(picked) == 1 and (
        len(name) < 3 or month_number(name) is not None or name.lower() in _NOT_SPEAKER or acronym_before
    ):
        return None  # "October", "However", "CB Insights", "HITRUST CSF Certification"
    return name


# Capitalised words that stand alone at the start of a sentence but are not surnames.
_NOT_SPEAKER = {
    "however",
    "today",
    "additionally",
    "also",
    "meanwhile",
    "moreover",
    "furthermore",
    "finally",
    "currently",
    "recently",
    "together",
    "the",
    "this",
    "that",
    "these",
    "those",
    "our",
    "we",
    "they",
    "he",
    "she",
    "it",
    "its",
    "their",
    "his",
    "her",
    "company",
    "management",
}


# --- contacts ----------------------------------------------------------------------------------------------

EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_OBFUSCATED = re.compile(
    r"(?P<user>[A-Za-z0-9._%+-]+)\s*[\[(<{]\s*(?:at|@)\s*[\])>}]\s*(?P<domain>[A-Za-z0-9-]+"
    r"(?:\s*(?:[\[(<{]\s*(?:dot|\.)\s*[\])>}]|\.)\s*[A-Za-z0-9-]+)+)",
    re.IGNORECASE,
)
PHONE = re.compile(r"(?<![\w.])(?:\+|00)?\(?\d[\d\s().\-‑–/]{6,}\d(?:\s*(?:x|ext\.?|poste)\s*\d{1,5})?(?![\w])")
_NOT_NAME = re.compile(
    r"\b(?:inc|ltd|llc|corp|corporation|company|gmbh|ag|sa|plc|group|communications|agency|media|relations|"
    r"contact|contacts|phone|tel|telephone|email|e-mail|mobile|cell|fax|office|website|web|www|http|press|"
    r"public|investor|investors|marketing|partners|pr|team|department|university|foundation|association|"
    r"council|network|institute|ministry|services|solutions|technologies|international|news|newsroom|"
    r"holdings|bank|capital|ventures|labs|systems|industries|limited|llp|co|agence|société|consulting|legal)\b",
    re.IGNORECASE,
)


_NOT_PHONE = re.compile(r"^\(?(?:19|20)\d\d(?:[-–/.]\d{1,2}[-–/.]\d{1,2}(?!\d)|\s*[-–]\s*(?:19|20)\d\d(?!\d))")


def _is_phone(text: str) -> bool:
    """Seven or more digits that do not start as a date (2010-03-25) or a span of years (1958-2010)."""
    return sum(c.isdigit() for c in text) >= 7 and not _NOT_PHONE.match(text.strip())


def deobfuscate(text: str) -> str:
    """`jane [at] example [dot] com` → `jane@example.com`."""

    def fix(match: re.Match[str]) -> str:
        domain = re.sub(r"\s*(?:[\[(<{]\s*(?:dot|\.)\s*[\])>}]|\.)\s*", ".", match.group("domain"), flags=re.I)
        return f"{match.group('user')}@{domain}"

    return _OBFUSCATED.sub(fix, text)


def is_person(text: str) -> bool:
    """Whether the text is a person's name (two to five capitalised words, no company words)."""
    return _is_person_name(text)


def _is_person_name(text: str) -> bool:
    text = text.strip().rstrip(",")
    words = text.split()
    if not 2 <= len(words) <= 5 or any(ch.isdigit() for ch in text) or "@" in text or _NOT_NAME.search(text):
        return False
    return all(_NAME_TOKEN.match(w) or w.lower() in _PARTICLES for w in words)


_SPELLED = re.compile(r"\b[A-Za-z0-9._%+-]+\s+(?:at|AT)\s+[A-Za-z0-9-]+(?:\s+(?:dot|DOT)\s+[A-Za-z0-9-]+)+\b")
_GLUED_LABEL = re.compile(r"(?<=[a-z.)])(?=(?:E-?mail|Tel|Phone|Mobile|Cell|Fax)\s*:)")
_FIELD_LABEL = re.compile(
    r"^(?:e-?mail|courriel|phone|tel(?:ephone|éphone)?|t|p|m|mobile|cell|office|direct|ph|o)\s*[.:]\s*",
    re.IGNORECASE,
)


def _address_in(segment: str, spelled: bool) -> re.Match[str] | None:
    """An e-mail address as printed: plain, obfuscated ("jane [at] example [dot] com") or, inside a contacts
    section, spelled out ("press at example dot org")."""
    return EMAIL.search(segment) or _OBFUSCATED.search(segment) or (_SPELLED.search(segment) if spelled else None)


def _contact_name(candidate: str) -> str | None:
    """A person's name opening a segment: "Jane Roe", "Jane Roe, CEO", "Jane Roe - Managing Director"."""
    candidate = re.sub(r"^[^:]{1,40}:\s*", "", candidate.strip(" ,:-<("))  # "Investor Relations: Kim Park"
    for part in (candidate, *re.split(r"\s+[-–—]\s+|,\s*", candidate)[:1]):
        if part and _is_person_name(part):
            return part.strip().rstrip(",")
    return None


def _is_org_line(segment: str) -> bool:
    """A short line naming who to contact when no person is named ("Tor Press Team", "Acme Holdings, Inc.")."""
    return (
        0 < len(segment) <= 50
        and segment[:1].isupper()
        and ":" not in segment
        and "@" not in segment
        and not any(ch.isdigit() for ch in segment)
        and not is_contacts_heading(segment)
        and not re.search(r"[.!?]\s", segment)
    )


def find_contacts(lines: Sequence[str], spelled: bool = True) -> list[MediaContact]:
    """Media contacts from a contacts section: names with the emails and phones that follow them.

    Addresses are kept as printed (an obfuscated one stays obfuscated: the sender chose not to publish it
    plainly). With no person named, the line naming the team or company stands as the name."""
    contacts: list[MediaContact] = []
    name: str | None = None
    org: str | None = None
    email: str | None = None
    phone: str | None = None
    fallback: str | None = None

    def flush() -> None:
        nonlocal name, org, email, phone, fallback
        if email or phone:
            contacts.append(MediaContact(name=name or fallback, email=email, phone=phone, organization=org))
        name = org = email = phone = fallback = None

    for raw in lines:
        raw = _GLUED_LABEL.sub("\n", raw)
        for segment in re.split(r"\s*(?:[|;•·]|,\s(?=\S+@)|\n|\s{3,}|,\s(?=\+?\(?\d))\s*", raw):
            segment = _FIELD_LABEL.sub("", segment.strip().strip(","))
            if not segment:
                continue
            found_email = _address_in(segment, spelled)
            found_phone = None if found_email else PHONE.search(segment)
            if found_email:
                if email:
                    flush()
                email = found_email.group(0).rstrip(".")
                candidate = _contact_name(segment[: found_email.start()])
                if candidate and name is None:
                    name = candidate
            elif found_phone and _is_phone(found_phone.group(0)):
                if phone:
                    flush()
                phone = found_phone.group(0).strip()
                candidate = _contact_name(segment[: found_phone.start()])
                if candidate and name is None:
                    name = candidate
            elif (person := _contact_name(segment)) and not (
                name is not None and org is None and not email and not phone
            ):
                if name is not None or email or phone:
                    flush()
                name = person
            elif name is not None and org is None and len(segment) < 80 and not email and not phone:
                org = segment
            elif _is_org_line(segment) and (name is None or email or phone):
                if email or phone:
                    flush()
                fallback = segment
    flush()
    return contacts


# --- headline, banners and language ------------------------------------------------------------------------


def strip_meta_date(text: str) -> tuple[str, date | None]:
    """The seed's leading `date YYYY-MM-DD` metadata, split from the text it precedes."""
    match = _META_DATE.match(text)
    if not match:
        return text, None
    try:
        return text[match.end() :], date.fromisoformat(match.group("date"))
    except ValueError:
        return text, None


def is_banner(text: str) -> bool:
    return bool(_BANNER.match(text)) and len(text) < 60


def embargo_of(text: str, zone: tzinfo) -> tuple[datetime | None, bool]:
    """(when, is_embargo_line): the embargo a line declares, if it is an embargo line."""
    match = _EMBARGO.match(text) if len(text) < 200 else None
    if not match:
        return None, False
    return parse_datetime(match.group("when"), zone), True


def end_marker_of(text: str) -> str | None:
    match = _END_MARKER.match(text)
    if not match:
        return None
    marker = re.sub(r"\s", "", match.group("marker"))
    return "###" if "#" in marker else "-30-"


def about_heading(text: str) -> str | None:
    match = _ABOUT.match(text) if len(text) <= 100 else None
    if not match:
        return None
    name = match.group("name").strip().strip("*_").strip()
    if re.search(r"\b(?:Inc|Corp|Ltd|Co|Cie|Bhd|Pty|Ltée|S\.A|N\.V|L\.P|plc)$", name) and text.rstrip().endswith("."):
        name += "."  # "About Granite Peak Minerals Corp.": the full stop belongs to the name
    return name if name and not name.endswith((",",)) and len(name.split()) <= 10 else None


def about_inline(text: str) -> tuple[str, str] | None:
    match = _ABOUT_INLINE.match(text)
    if not match:
        return None
    return match.group("name").strip().strip("*_"), match.group("text").strip()


def is_contacts_heading(text: str) -> bool:
    return len(text) <= 90 and bool(_CONTACTS.match(text))


def contacts_inline(text: str) -> str | None:
    match = _CONTACTS_INLINE.match(text)
    if not match:
        return None
    return match.group("text") or match.group("text2")


def is_fls_heading(text: str) -> bool:
    return len(text) <= 140 and bool(_FLS.match(text))


def is_source_line(text: str) -> bool:
    return bool(_SOURCE_LINE.match(text)) and len(text) < 120


_LANGUAGES = ["en", "fr", "de", "es", "sv", "it", "nl", "pt", "ru", "da", "no", "fi", "pl", "ja", "zh"]


@functools.cache
def _language_model() -> None:
    """Load the language model on first use: it takes a second and ~100 MB, which most commands never need."""
    py3langid.set_languages(_LANGUAGES)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None for too little text."""
    sample = text[:1200]  # enough for a reliable guess; classifying costs time per character
    if len(re.findall(r"\w+", sample)) < 3:
        return None
    _language_model()
    code, _score = py3langid.classify(sample)
    return str(code)
