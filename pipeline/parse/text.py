"""Reading bytes as text: size limit, encoding detection, line endings."""

from __future__ import annotations

from pathlib import Path

from charset_normalizer import from_bytes

from pipeline.errors import ReleaseParseError
from pipeline.parse.document import MAX_BYTES


def read_bytes(path: Path, limit: int = MAX_BYTES, kind: str = "releases") -> bytes:
    """The file's bytes; refuses missing, unreadable and oversized files with a ReleaseParseError."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ReleaseParseError(path, "is a folder, not a release document")
        if size > limit:
            raise ReleaseParseError(path, f"file is {size // 1024} KB; {kind} over {limit // 1024} KB are refused")
        return path.read_bytes()
    except FileNotFoundError:
        raise ReleaseParseError(path, "file not found") from None
    except PermissionError:
        raise ReleaseParseError(path, "permission denied") from None
    except OSError as exc:
        raise ReleaseParseError(path, f"cannot read: {exc.strerror or exc}") from exc


def decode(path: Path, data: bytes) -> str:
    """UTF-8 (with or without BOM) when valid, else Windows-1252 for Western European text, else the
    encoding charset-normalizer detects.

    Binary data (NUL bytes, or nothing that decodes as text) is refused. Line endings become \\n.
    """
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ReleaseParseError(path, "looks like a binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        western = _western_european(data)
        best = from_bytes(data).best() if western is None else None
        if western is None and best is None:
            line = data[: exc.start].count(b"\n") + 1
            raise ReleaseParseError(
                path, "cannot decode: not UTF-8 and no other text encoding fits", line=line
            ) from None
        text = western if western is not None else str(best)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\x0c", "\n")


_WESTERN_MARKS = set("«»°£€’‘“”–—…•©®™§¢¿¡·\u00a0")


def _western_european(data: bytes) -> str | None:
    """The text as Windows-1252 (a superset of Latin-1) when it reads as a Western European language: every
    non-ASCII character an accented letter or common typography, and accented letters a minority of the
    letters. Statistical detectors misjudge short French or German texts; this is the common case."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    letters = sum(1 for c in text if c.isalpha())
    accented = [c for c in text if ord(c) > 127]
    if not accented or not letters:
        return None
    if not all(c in _WESTERN_MARKS or ("\u00c0" <= c <= "\u00ff" and c.isalpha()) for c in accented):
        return None
    return text if len(accented) <= 0.3 * letters else None


def read_text(path: Path) -> str:
    return decode(path, read_bytes(path))
