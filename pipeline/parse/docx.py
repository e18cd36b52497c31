"""Word documents (.docx): converted to HTML by mammoth, keeping headings, bold, links and lists.

Word's "Title" and "Subtitle" styles become the headline and subheadline headings; the document's own title
property is used only when the text has no title or first-level heading. The converted HTML is then read like
any article fragment.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import tzinfo
from pathlib import Path
from typing import Any

import lxml.etree
import mammoth

from pipeline.errors import ReleaseParseError
from pipeline.models import Release
from pipeline.parse.assemble import assemble
from pipeline.parse.html import fragment_document
from pipeline.parse.text import read_bytes

SUFFIXES = (".docx",)

_STYLE_MAP = """
p[style-name='Title'] => h1:fresh
p[style-name='Subtitle'] => h2:fresh
p[style-name='Heading 1'] => h1:fresh
p[style-name='Heading 2'] => h2:fresh
p[style-name='Heading 3'] => h3:fresh
p[style-name='Heading 4'] => h4:fresh
p[style-name='Quote'] => blockquote > p:fresh
p[style-name='Intense Quote'] => blockquote > p:fresh
"""
_MAX_UNPACKED = 50 * 1024 * 1024  # a zip that unpacks beyond this is not a press release (or is a zip bomb)
_CORE = "docProps/core.xml"
_DC = "{http://purl.org/dc/elements/1.1/}"


def read(path: Path, zone: tzinfo) -> Release:
    data = read_bytes(path)
    archive = _open(path, data)
    meta: dict[str, Any] = {}
    title = _core_title(archive)
    try:
        result = mammoth.convert_to_html(io.BytesIO(data), style_map=_STYLE_MAP)
    except Exception as exc:  # mammoth raises whatever its zip and XML readers raise on a broken file
        raise ReleaseParseError(path, f"not a readable Word document: {exc}") from None
    markup = str(result.value)
    if title and not re.search(r"<h1[ >]", markup):
        meta["headline"] = title
    document = fragment_document(path, markup, meta)
    document.problems.extend(_problems(result.messages))
    return assemble(document, zone)


def _open(path: Path, data: bytes) -> zipfile.ZipFile:
    """The document as a zip, refusing what is not a Word file and what unpacks to an absurd size."""
    if not data:
        raise ReleaseParseError(path, "the file is empty")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ReleaseParseError(path, "not a Word document (.docx files are zip archives; this one is not)") from None
    if "word/document.xml" not in names:
        raise ReleaseParseError(path, "not a Word document: the archive has no word/document.xml")
    if unpacked > _MAX_UNPACKED:
        raise ReleaseParseError(path, f"the document unpacks to {unpacked // 1024 // 1024} MB; refused")
    return archive


def _core_title(archive: zipfile.ZipFile) -> str | None:
    """The title set in the document's properties, if any (File → Properties in Word)."""
    try:
        root = lxml.etree.fromstring(archive.read(_CORE), parser=lxml.etree.XMLParser(resolve_entities=False))
    except (KeyError, zipfile.BadZipFile, lxml.etree.LxmlError, OSError, ValueError, EOFError):
        return None
    title = root.findtext(f"{_DC}title")
    return title.strip() if title and title.strip() else None


def _problems(messages: list[Any]) -> list[str]:
    """mammoth's warnings worth a person's attention (an unknown paragraph style is not one)."""
    out = []
    for message in messages:
        text = str(getattr(message, "message", message))
        if not text.startswith("Unrecognised paragraph style") and not text.startswith("Unrecognised run style"):
            out.append(f"Word conversion: {text}")
    return out
