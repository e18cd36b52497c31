"""Dates and times as printed in releases, in several languages, and the zones wires abbreviate."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

# Month names and common abbreviations: English, French, German, Spanish, Swedish, Italian, Dutch, Portuguese.
_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        "january jan janvier janv januar jän enero ene januari gennaio genn janeiro",
        "february feb février fevrier févr fevr februar febrero februari febbraio febr fevereiro fev",
        "march mar mars märz marz marzo maart março",
        "april apr avril avr abril aprile",
        "may mai mayo maj maggio mei maio",
        "june jun juin juni junio giugno junho",
        "july jul juillet juil juli julio luglio julho",
        "august aug août aout august agosto augusti ago",
        "september sep sept septembre septiembre setiembre settembre set setembro",
        "october oct octobre oktober okt octubre ottobre ott outubro out",
        "november nov novembre noviembre novembro",
        "december dec décembre decembre déc dezember dez diciembre dic dicembre december dezembro",
    ],
    start=1,
):
    for _name in _names.split():
        _MONTHS.setdefault(_name, _number)

_MONTH_RE = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
_WEEKDAYS = (
    r"(?:mon|tues|tue|wed|wednes|thu|thur|thurs|fri|sat|satur|sun)(?:day)?|lundi|mardi|mercredi|jeudi|vendredi"
    r"|samedi|dimanche|montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|lunes|martes|miércoles"
    r"|jueves|viernes|sábado|domingo|måndag|tisdag|onsdag|torsdag|fredag|lördag|söndag"
)

# Month-first (English): "March 23, 2021", "Mar. 23 2021", "Tuesday, March 23, 2021", "March 23".
_MDY = re.compile(
    rf"(?:(?:{_WEEKDAYS})\.?,?\s+)?(?P<month>{_MONTH_RE})\.?,?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?"
    rf"(?:,?\s+(?P<year>(?:19|20)\d\d))?\b",
    re.IGNORECASE,
)
# Day-first: "23 March 2021", "le 4 oct. 2026", "4. Oktober 2026", "4 de octubre de 2026", "den 4 oktober 2026".
_DMY = re.compile(
    rf"(?:(?:{_WEEKDAYS})\.?,?\s+)?(?:(?:le|den|el|am)\s+)?(?P<day>\d{{1,2}})(?:er|st|nd|rd|th|\.)?\s+(?:de\s+)?"
    rf"(?P<month>{_MONTH_RE})\.?(?:,?\s+(?:de\s+)?(?P<year>(?:19|20)\d\d))?\b",
    re.IGNORECASE,
)
_ISO = re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<month>\d\d)-(?P<day>\d\d)\b")

# Zones wires print after a time. North-American abbreviations are resolved to the IANA zone, so DST follows
# the date rather than the letters (a release saying "9:00 EST" in July means Eastern time).
ZONE_ABBREVIATIONS: dict[str, str] = {
    "ET": "America/New_York",
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "HNE": "America/Toronto",
    "HAE": "America/Toronto",
    "HE": "America/Toronto",
    "CT": "America/Chicago",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "MT": "America/Denver",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "PT": "America/Los_Angeles",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "HNP": "America/Vancouver",
    "HAP": "America/Vancouver",
    "AT": "America/Halifax",
    "AST": "America/Halifax",
    "ADT": "America/Halifax",
    "GMT": "Europe/London",
    "BST": "Europe/London",
    "UK": "Europe/London",
    "CET": "Europe/Paris",
    "CEST": "Europe/Paris",
    "MEZ": "Europe/Berlin",
    "MESZ": "Europe/Berlin",
    "EET": "Europe/Helsinki",
    "EEST": "Europe/Helsinki",
    "JST": "Asia/Tokyo",
    "AEST": "Australia/Sydney",
    "AEDT": "Australia/Sydney",
    "IST": "Asia/Kolkata",
    "UTC": "UTC",
    "Z": "UTC",
}
_ZONE_RE = "|".join(sorted(ZONE_ABBREVIATIONS, key=len, reverse=True))
_TIME = re.compile(
    rf"(?P<hour>\d{{1,2}})(?:(?::|h|\.)\s?(?P<minute>\d\d)|\s?h(?!\w))?\s*"
    rf"(?P<ampm>a\.?\s?m\.?|p\.?\s?m\.?)?\s*(?:\(?(?P<zone>{_ZONE_RE})\)?(?![A-Za-z]))?",
    re.IGNORECASE,
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def month_number(name: str) -> int | None:
    """The month (1-12) a month name or abbreviation in any supported language stands for."""
    return _MONTHS.get(name.lower().rstrip("."))


def find_date(text: str, default_year: int | None = None) -> tuple[date, re.Match[str]] | None:
    """The first date printed in `text` (any supported language), with the match that found it."""
    text = _fold(text)
    best: tuple[date, re.Match[str]] | None = None
    for pattern in (_ISO, _MDY, _DMY):
        for match in pattern.finditer(text):
            found = _to_date(match, default_year)
            if found is not None:
                if best is None or match.start() < best[1].start():
                    best = (found, match)
                break
    return best


def _to_date(match: re.Match[str], default_year: int | None) -> date | None:
    month_text = match.group("month")
    month = int(month_text) if month_text.isdigit() else month_number(month_text)
    year_text = match.group("year")
    year = int(year_text) if year_text else default_year
    if month is None or year is None:
        return None
    try:
        return date(year, month, int(match.group("day")))
    except ValueError:
        return None


def parse_date(text: str) -> date | None:
    """A whole string that is a date (ISO or written), else None."""
    text = text.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    found = find_date(text)
    return found[0] if found else None


def zone_named(name: str) -> tzinfo | None:
    """An IANA zone or a wire abbreviation (ET, HNE, CET…), else None."""
    if name.upper() in ZONE_ABBREVIATIONS:
        return ZoneInfo(ZONE_ABBREVIATIONS[name.upper()])
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def parse_datetime(text: str, default_zone: tzinfo) -> datetime | None:
    """A date with an optional time and zone, as printed ("09:00 ET, 5 March 2026", "5 mars 2026 à 9 h HNE",
    an ISO datetime). Naive times are read in `default_zone`. Returns an aware datetime, or None."""
    text = _fold(text).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is not None:
        return parsed if parsed.tzinfo else localize(parsed, default_zone)
    found = find_date(text)
    if found is None:
        return None
    day, match = found
    rest = text[: match.start()] + " " + text[match.end() :]
    clock, zone = _find_time(rest)
    tz = zone or default_zone
    return localize(datetime.combine(day, clock or time(0, 0)), tz)


def _find_time(text: str) -> tuple[time | None, tzinfo | None]:
    for match in _TIME.finditer(text):
        minute, ampm, zone = match.group("minute"), match.group("ampm"), match.group("zone")
        if minute is None and ampm is None and "h" not in match.group(0).lower():
            continue  # a bare number is not a time
        hour = int(match.group("hour"))
        if ampm:
            hour = hour % 12 + (12 if ampm.lower().startswith("p") else 0)
        if hour > 23 or int(minute or 0) > 59:
            continue
        return time(hour, int(minute or 0)), (zone_named(zone) if zone else _zone_anywhere(text))
    return None, _zone_anywhere(text)


def _zone_anywhere(text: str) -> tzinfo | None:
    match = re.search(rf"(?<![A-Za-z])({_ZONE_RE})(?![A-Za-z])", text)
    return zone_named(match.group(1)) if match else None


def localize(naive: datetime, zone: tzinfo) -> datetime:
    """Attach a zone; a wall time in the DST gap is moved forward past it, as clocks do."""
    aware = naive.replace(tzinfo=zone)
    round_trip = aware.astimezone(ZoneInfo("UTC")).astimezone(zone)
    if round_trip.replace(tzinfo=None) != naive:  # nonexistent local time (spring forward)
        aware = (naive + timedelta(hours=1)).replace(tzinfo=zone)
    return aware
