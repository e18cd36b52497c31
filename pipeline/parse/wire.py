"""Wire-style plain text (.txt): paragraphs separated by blank lines, or one paragraph per line."""

from __future__ import annotations

import re
from datetime import tzinfo
from pathlib import Path

from pipeline.models import Release
from pipeline.parse import html
from pipeline.parse.assemble import assemble
from pipeline.parse.document import Block, Document
from pipeline.parse.text import read_text

SUFFIXES = (".txt", ".text", "")


def blocks_of(text: str, first_line: int = 1) -> list[Block]:
    """Paragraphs with their first line number. Lines inside a paragraph stay separated by newlines."""
    lines = text.split("\n")
    has_blank = any(not line.strip() for line in lines[1:-1])
    blocks: list[Block] = []
    current: list[str] = []
    start = first_line
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            if current:
                blocks.append(Block("\n".join(current), start))
                current = []
            continue
        if not has_blank:
            blocks.append(Block(line.strip(), number))
            continue
        if not current:
            start = number
        current.append(line.strip())
    if current:
        blocks.append(Block("\n".join(current), start))
    return blocks


_PRE = re.compile(r"^\s*<pre[^>]*>[ \t]*\n?|\n?[ \t]*</pre>\s*$", re.IGNORECASE)


def read(path: Path, zone: tzinfo) -> Release:
    text = read_text(path)
    if re.match(r"\s*(?:<!doctype\s+html|<html[\s>])", text, re.IGNORECASE):  # a web page saved as .txt
        return html.read(path, zone)
    # Plain text kept inside <pre>…</pre> (copied from a web page): the tags are not part of the release.
    opening = _PRE.match(text)
    first_line = 1 + (opening.group(0).count("\n") if opening else 0)
    text = _PRE.sub("", text)
    return assemble(Document(path=path, blocks=blocks_of(text, first_line)), zone)
