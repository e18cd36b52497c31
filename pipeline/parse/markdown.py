"""Markdown (.md): YAML front matter, Pelican-style `Key: value` headers or pandoc `%` lines, then CommonMark."""

from __future__ import annotations

import re
from datetime import tzinfo
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from pipeline.errors import ReleaseParseError
from pipeline.models import Release
from pipeline.parse.assemble import assemble
from pipeline.parse.document import Block, Document
from pipeline.parse.text import read_text

SUFFIXES = (".md", ".markdown", ".mdown")

_MD = MarkdownIt("commonmark")
_PELICAN_KEY = re.compile(r"^(?P<key>[A-Za-z][A-Za-z _-]{0,30}):\s*(?P<value>.*)$")
_PELICAN_KEYS = {
    "title",
    "date",
    "author",
    "authors",
    "category",
    "tags",
    "slug",
    "summary",
    "lang",
    "language",
    "subtitle",
    "embargo",
    "audiences",
    "modified",
    "status",
}


def split_front_matter(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int], str, int]:
    """(metadata, line of each key, markdown body, line the body starts on)."""
    if text.startswith("---\n") or text.startswith("---\r"):
        end = re.search(r"^(?:---|\.\.\.)\s*$", text[4:], re.MULTILINE)
        if end is None:
            raise ReleaseParseError(path, "front matter opened with '---' is never closed", line=1)
        raw = text[4 : 4 + end.start()]
        try:
            data = yaml.safe_load(raw)
            tree = yaml.compose(raw)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            line = mark.line + 2 if mark is not None else 1
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ReleaseParseError(path, f"front matter is not valid YAML: {problem}", line=line) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ReleaseParseError(path, "front matter must be a mapping of keys to values", line=2)
        lines = {}
        if isinstance(tree, yaml.MappingNode):
            lines = {str(k.value): k.start_mark.line + 2 for k, _ in tree.value if isinstance(k, yaml.ScalarNode)}
        body_start = 4 + end.end()
        first_line = text[:body_start].count("\n") + 1
        return {str(k): v for k, v in data.items()}, lines, text[body_start:], first_line
    if text.startswith("% "):
        # pandoc title block: % title / % author(s) / % date
        head = text.split("\n")
        meta: dict[str, Any] = {}
        keys = ["title", "author", "date"]
        count = 0
        while count < len(head) and count < 3 and head[count].startswith("%"):
            value = head[count][1:].strip()
            if value:
                meta[keys[count]] = value
            count += 1
        return meta, {k: i + 1 for i, k in enumerate(keys)}, "\n".join(head[count:]), count + 1
    meta, lines = {}, {}
    head = text.split("\n")
    for number, line in enumerate(head):
        match = _PELICAN_KEY.match(line)
        if not line.strip() and meta:
            return meta, lines, "\n".join(head[number + 1 :]), number + 2
        if not match or match.group("key").strip().lower() not in _PELICAN_KEYS:
            break
        meta[match.group("key").strip().lower()] = match.group("value").strip()
        lines[match.group("key").strip().lower()] = number + 1
    return {}, {}, text, 1


def _inline_text(token: Token) -> tuple[str, bool]:
    """Rendered text of an inline token (markup removed) and whether it is wholly bold."""
    parts: list[str] = []
    bold_depth = 0
    bold_chars = 0
    for child in token.children or []:
        if child.type == "strong_open":
            bold_depth += 1
        elif child.type == "strong_close":
            bold_depth -= 1
        elif child.type in ("text", "code_inline", "html_inline"):
            content = child.content if child.type != "html_inline" else ""
            parts.append(content)
            if bold_depth:
                bold_chars += len(content.strip())
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            continue
    text = "".join(parts).strip()
    return text, bool(text) and bold_chars >= len(text.replace("\n", "").replace(" ", "")) * 0.9


def blocks_of(markdown: str, first_line: int) -> list[Block]:
    # A bare "###" line is a wire end marker, not an empty heading.
    tokens = _MD.parse(re.sub(r"(?m)^[ \t]*(#[ \t]?#[ \t]?#)[ \t]*$", r"\\\1", markdown))
    blocks: list[Block] = []
    heading_level = 0
    in_list = 0
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            heading_level = int(token.tag[1])
        elif token.type == "heading_close":
            heading_level = 0
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            in_list += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            in_list -= 1
        elif token.type == "inline":
            text, bold = _inline_text(token)
            if not text:
                continue
            line = first_line + token.map[0] if token.map else None
            if heading_level:
                blocks.append(Block(text.replace("\n", " "), line, heading_level, "h"))
            else:
                blocks.append(Block(text, line, 0, "li" if in_list else "p", bold))
        elif token.type in ("fence", "code_block") and token.content.strip():
            line = first_line + token.map[0] if token.map else None
            blocks.append(Block(token.content.strip(), line))
        elif token.type == "hr" and index + 1 < len(tokens):
            continue
    return blocks


def read(path: Path, zone: tzinfo) -> Release:
    text = read_text(path)
    meta, lines, body, first_line = split_front_matter(path, text)
    return assemble(Document(path=path, blocks=blocks_of(body, first_line), meta=meta, meta_lines=lines), zone)
