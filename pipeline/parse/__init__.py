"""Release documents → Release. One reader per format; adding a format is one module and one line below.

A reader is a module with `SUFFIXES` (lower-case file suffixes) and `read(path, zone) -> Release`, where `zone`
is the time zone naive times in the document are read in. Readers raise only ReleaseParseError.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

from pipeline.errors import ReleaseParseError
from pipeline.models import Release
from pipeline.parse import docx, html, markdown, wire

READERS: tuple[ModuleType, ...] = (markdown, html, docx, wire)


def reader_for(path: Path) -> ModuleType:
    suffix = path.suffix.lower()
    for reader in READERS:
        if suffix in reader.SUFFIXES:
            return reader
    known = ", ".join(sorted({s for r in READERS for s in r.SUFFIXES if s}))
    raise ReleaseParseError(path, f"unsupported file type {suffix!r} (supported: {known})")


def parse_release(path: Path | str, zone: tzinfo | None = None) -> Release:
    """Parse one release document. Raises ReleaseParseError naming the file (and line) on bad input."""
    path = Path(path)
    reader = reader_for(path)
    try:
        release: Release = reader.read(path, zone or ZoneInfo("UTC"))
    except ReleaseParseError:
        raise
    except (ValueError, LookupError, TypeError, RecursionError) as exc:  # a bug must not become a traceback
        raise ReleaseParseError(path, f"cannot parse: {exc}") from exc
    return release


def release_files(folder: Path) -> list[Path]:
    """The release documents in a folder (not recursive), in name order; READMEs and hidden files skipped."""
    suffixes = {s for r in READERS for s in r.SUFFIXES if s}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not p.name.startswith((".", "_"))
        and p.stem.upper() != "README"
    )
