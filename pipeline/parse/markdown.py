"""Markdown (.md): YAML front matter, Pelican-style `Key: value` headers or pandoc `%` lines, then CommonMark."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
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
    "url",
    "url source",
    "source",
    "published time",
    "published",
}
_HEADER_END = {"markdown content", "content"}


_LEADING_COMMENT = re.compile(r"\A(?:\s*<!--.*?-->)+\s*\n", re.DOTALL)
_DIFF_FENCE = re.compile(r"\A[ \t]*\+(?:---|\+\+\+)[ \t]*\n")


def _undiff(text: str) -> str:
    """Front matter pasted from a diff (`+---`, ` +title: …`): drop the `+` prefix up to the closing fence."""
    lines = text.split("\n")
    out = []
    for number, line in enumerate(lines):
        stripped = re.sub(r"^[ \t]*\+", "", line, count=1)
        out.append(stripped)
        if number > 0 and stripped.strip() in ("---", "+++"):
            return "\n".join(out + lines[number + 1 :])
    return text


def split_front_matter(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int], str, int]:
    """(metadata, line of each key, markdown body, line the body starts on).

    Reads YAML (`---`) and TOML (`+++`) front matter, pandoc `%` title blocks and `Key: value` headers
    (Pelican, and web-to-Markdown captures with `Title:` / `URL Source:` / `Published Time:`). Leading HTML
    comments and blank lines are skipped; front matter pasted from a diff (`+---`) is read too."""
    skipped = 0
    comment = _LEADING_COMMENT.match(text)
    if comment:
        skipped = text[: comment.end()].count("\n")
        text = text[comment.end() :]
    blank = re.match(r"\A(?:[ \t]*\n)+", text)
    if blank:
        skipped += blank.group(0).count("\n")
        text = text[blank.end() :]
    if _DIFF_FENCE.match(text):
        text = _undiff(text)
    meta, lines, body, first_line = _front_matter(path, text, skipped)
    return meta, lines, body, first_line + skipped


def _front_matter(path: Path, text: str, skipped: int) -> tuple[dict[str, Any], dict[str, int], str, int]:
    fence = text[:4]
    if fence in ("---\n", "+++\n"):
        closing = r"^(?:---|\.\.\.)\s*$" if fence == "---\n" else r"^\+\+\+\s*$"
        end = re.search(closing, text[4:], re.MULTILINE)
        if end is None:
            raise ReleaseParseError(
                path, f"front matter opened with {fence.strip()!r} is never closed", line=1 + skipped
            )
        raw = text[4 : 4 + end.start()]
        data, lines = _yaml(path, raw, skipped) if fence == "---\n" else _toml(path, raw, skipped)
        body_start = 4 + end.end()
        first_line = text[:body_start].count("\n") + 1
        return data, lines, text[body_start:], first_line
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
        return meta, {k: i + 1 + skipped for i, k in enumerate(keys)}, "\n".join(head[count:]), count + 1
    return _key_value_headers(text, skipped)


def _yaml(path: Path, raw: str, skipped: int) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        data = yaml.safe_load(raw)
        tree = yaml.compose(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = (mark.line + 2 if mark is not None else 1) + skipped
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ReleaseParseError(path, f"front matter is not valid YAML: {problem}", line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReleaseParseError(path, "front matter must be a mapping of keys to values", line=2 + skipped)
    lines = {}
    if isinstance(tree, yaml.MappingNode):
        lines = {str(k.value): k.start_mark.line + 2 + skipped for k, _ in tree.value if isinstance(k, yaml.ScalarNode)}
    return {str(k): v for k, v in data.items()}, lines


def _toml(path: Path, raw: str, skipped: int) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) + 1 + skipped if found else 1 + skipped
        raise ReleaseParseError(path, f"front matter is not valid TOML: {exc}", line=line) from None
    lines: dict[str, int] = {}
    for number, line_text in enumerate(raw.split("\n"), start=2 + skipped):
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line_text)
        if key:
            lines.setdefault(key.group(1), number)
    return {str(k): v for k, v in data.items()}, lines


def _key_value_headers(text: str, skipped: int) -> tuple[dict[str, Any], dict[str, int], str, int]:
    """`Key: value` lines at the top, known keys only; blank lines between them are allowed, and a
    `Markdown Content:` line (web captures) ends them."""
    meta: dict[str, Any] = {}
    lines: dict[str, int] = {}
    head = text.split("\n")
    end = 0
    for number, line in enumerate(head):
        if not line.strip():
            continue
        match = _PELICAN_KEY.match(line)
        key = match.group("key").strip().lower() if match else ""
        if key in _HEADER_END:
            return meta, lines, "\n".join(head[number + 1 :]), number + 2
        if not match or key not in _PELICAN_KEYS:
            break
        meta[key] = match.group("value").strip()
        lines[key] = number + 1 + skipped
        end = number + 1
    if not meta:
        return {}, {}, text, 1
    return meta, lines, "\n".join(head[end:]), end + 1


@dataclass(slots=True)
class _Inline:
    text: str
    bold: bool
    lead: str
    link_only: bool


_RAW_LINK = re.compile(r"\[[^\]]*\]\([^)]*\)")
_STRAY_EMPHASIS = re.compile(r"^([_*]{1,3})(?=\S)(.*?)\s*\1$", re.DOTALL)


def _inline_text(token: Token) -> _Inline:
    """Rendered text of an inline token (markup removed), whether it is wholly bold, the emphasised span
    opening it, and whether it is all link text."""
    parts: list[str] = []
    bold_depth = emphasis_depth = link_depth = 0
    bold_chars = link_chars = 0
    lead: list[str] | None = None  # collecting while the opening emphasis is open
    lead_done = False
    glued = False  # an emphasis mark stood right before the next text
    for child in token.children or []:
        kind = child.type
        if kind in ("strong_open", "em_open", "strong_close", "em_close"):
            glued = True
        if kind in ("strong_open", "em_open"):
            if kind == "strong_open":
                bold_depth += 1
            emphasis_depth += 1
            if lead is None and not lead_done and not "".join(parts).strip():
                lead = []
        elif kind in ("strong_close", "em_close"):
            if kind == "strong_close":
                bold_depth -= 1
            emphasis_depth -= 1
            if lead is not None and emphasis_depth == 0 and not lead_done:
                lead_done = True
        elif kind == "link_open":
            link_depth += 1
        elif kind == "link_close":
            link_depth -= 1
        elif kind in ("text", "code_inline", "html_inline"):
            content = child.content if kind != "html_inline" else ""
            if glued and parts and parts[-1][-1:].isalnum() and content[:1].isalnum():
                content = " " + content  # "said**Jane Roe**": the emphasis stood for a space
            glued = False
            parts.append(content)
            if bold_depth:
                bold_chars += len(content.strip())
            if link_depth:
                link_chars += len(content.strip())
            if lead is not None and not lead_done:
                lead.append(content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
            if lead is not None and not lead_done:
                lead.append(" ")
    text = "".join(parts).strip()
    # Link syntax CommonMark left as text (a URL broken across lines) is still a link.
    link_chars += sum(len(re.sub(r"\s", "", m.group(0))) for m in _RAW_LINK.finditer(text))
    stray = _STRAY_EMPHASIS.match(text)
    if stray:  # emphasis CommonMark did not close ("_text _") is still markup, not text
        text = stray.group(2).strip()
    letters = len(re.sub(r"\s", "", text))
    return _Inline(
        text=text,
        bold=bool(text) and bold_chars >= letters * 0.9,
        lead=re.sub(r"\s+", " ", "".join(lead or [])).strip() if lead_done else "",
        link_only=bool(text) and link_chars >= letters * 0.9,
    )


def blocks_of(markdown: str, first_line: int) -> list[Block]:
    # A bare "###" line is a wire end marker, not an empty heading.
    tokens = _MD.parse(re.sub(r"(?m)^[ \t]*(#[ \t]?#[ \t]?#)[ \t]*$", r"\\\1", markdown))
    blocks: list[Block] = []
    heading_level = 0
    in_list = in_quote = 0
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            heading_level = int(token.tag[1])
        elif token.type == "heading_close":
            heading_level = 0
        elif token.type == "blockquote_open":
            in_quote += 1
        elif token.type == "blockquote_close":
            in_quote -= 1
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            in_list += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            in_list -= 1
        elif token.type == "inline":
            inline = _inline_text(token)
            if not inline.text:
                continue
            line = first_line + token.map[0] if token.map else None
            if heading_level:
                blocks.append(
                    Block(inline.text.replace("\n", " "), line, heading_level, "h", link_only=inline.link_only)
                )
            else:
                kind = "li" if in_list else "quote" if in_quote else "p"
                blocks.append(Block(inline.text, line, 0, kind, inline.bold, inline.lead, inline.link_only))
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
