"""HTML pages (.html): the article found with readability, page chrome, scripts and styles dropped.

The headline comes from the page's <h1> or its Open Graph title, the date from article metadata or a <time>
element; the article's block elements (headings, paragraphs, list items, quotes) become blocks.
"""

from __future__ import annotations

import re
from datetime import date, tzinfo
from pathlib import Path
from typing import Any

import lxml.etree
import lxml.html
from readability import Document as Readability

from pipeline.errors import ReleaseParseError
from pipeline.models import Release
from pipeline.parse.assemble import assemble
from pipeline.parse.dates import parse_date
from pipeline.parse.document import Block, Document
from pipeline.parse.text import read_text

SUFFIXES = (".html", ".htm", ".xhtml")
_BR = "\ue000"  # a private-use character standing for <br> while whitespace is collapsed
_PARSER = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True)

_BLOCK_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "blockquote", "pre", "dt", "dd", "td", "div")
_DROP = ("script", "style", "noscript", "template", "svg", "iframe", "form", "button", "nav", "footer", "aside")
_DATE_META = (
    "article:published_time",
    "og:published_time",
    "datePublished",
    "date",
    "dc.date",
    "DC.date.issued",
    "pubdate",
    "publish_date",
)


def _text(element: Any) -> str:
    return re.sub(r"\s+", " ", element.text_content()).strip()


def _clean(root: Any) -> None:
    for bad in root.xpath("|".join(f"//{tag}" for tag in _DROP)):
        bad.drop_tree()


def _headline(root: Any) -> str | None:
    for h1 in root.iter("h1"):
        text = _text(h1)
        if text:
            return text
    for prop in ("og:title", "twitter:title"):
        found = root.xpath(f'//meta[@property="{prop}" or @name="{prop}"]/@content')
        if found and found[0].strip():
            return str(found[0]).strip()
    title = root.findtext(".//title")
    if title and title.strip():
        return re.split(r"\s+[|–—-]\s+[^|–—-]+$", title.strip())[0]
    return None


def _published(root: Any) -> date | None:
    """The publication date from article metadata, else the first <time datetime>."""
    for name in _DATE_META:
        for value in root.xpath(f'//meta[@property="{name}" or @name="{name}" or @itemprop="{name}"]/@content')[:1]:
            if found := parse_date(str(value)):
                return found
    for element in (root, root.find("body"), *root.iter("article", "main")):
        for name, value in element.attrib.items() if element is not None else ():
            if "date" in name.lower() and (found := parse_date(str(value))):  # <html newsdate="2017-09-13">
                return found
    for value in root.xpath("//time/@datetime"):
        if found := parse_date(str(value)):
            return found
    return None


def _blocks(content: Any) -> list[Block]:
    blocks: list[Block] = []
    for element in content.iter(*_BLOCK_TAGS):
        # A container of other blocks is read through its children; a <div> holding its own text is a block.
        has_blocks = any(child.tag in _BLOCK_TAGS for child in element.iterdescendants())
        if has_blocks and (element.tag != "div" or not (element.text or "").strip()):
            continue
        text = _text(element)
        if not text:
            continue
        tag = element.tag
        letters = len(re.sub(r"\s", "", text))
        bold = sum(len(re.sub(r"\s", "", _text(b))) for b in element.iter("strong", "b")) >= 0.9 * letters
        link_only = sum(len(re.sub(r"\s", "", _text(a))) for a in element.iter("a")) >= 0.9 * letters
        if tag[0] == "h" and tag[1:].isdigit():
            blocks.append(Block(text, element.sourceline, int(tag[1]), "h", link_only=link_only))
            continue
        quoted = tag == "blockquote" or any(parent.tag == "blockquote" for parent in element.iterancestors())
        kind = "li" if tag == "li" else "quote" if quoted else "p"
        blocks.append(Block(_with_breaks(element), element.sourceline, 0, kind, bold, _lead(element), link_only))
    return blocks


def _lead(element: Any) -> str:
    """The text of a bold or italic element opening the block ("<strong>London — 7 December 2021.</strong> …")."""
    if (element.text or "").strip() or not len(element):
        return ""
    first = element[0]
    while first.tag in ("strong", "b", "em", "i", "span") and first.tag == "span" and len(first):
        first = first[0]
    return _text(first) if first.tag in ("strong", "b", "em", "i") else ""


def _with_breaks(element: Any) -> str:
    """Text with <br> kept as line breaks (contact blocks rely on them) and source line wrapping undone."""
    for br in element.iter("br"):
        br.tail = _BR + (br.tail or "")
    lines = re.sub(r"\s+", " ", element.text_content()).split(_BR)
    return "\n".join(line.strip() for line in lines if line.strip())


def fragment_document(path: Path, markup: str, meta: dict[str, Any] | None = None) -> Document:
    """A Document from clean HTML (a feed entry's content, a Word file converted by mammoth): no page chrome
    to find, so the markup's block elements are read directly. Scripts and styles are still dropped."""
    try:
        content = lxml.html.fragment_fromstring(markup or "<p></p>", create_parent="div")
    except (lxml.etree.ParserError, ValueError) as exc:
        raise ReleaseParseError(path, f"not readable as HTML: {exc}") from None
    _clean(content)
    return Document(path=path, blocks=_blocks(content), meta=dict(meta or {}))


_TEMPLATE_TAG = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.DOTALL)


def read(path: Path, zone: tzinfo) -> Release:
    # A page kept as a Django/Jinja template ("{% extends … %}") is read without its template tags.
    text = _TEMPLATE_TAG.sub(" ", read_text(path))
    if not text.strip():
        raise ReleaseParseError(path, "the page is empty")
    try:
        root = lxml.html.document_fromstring(text.encode("utf-8"), parser=_PARSER)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise ReleaseParseError(path, f"not readable as HTML: {exc}") from None
    _clean(root)
    meta: dict[str, Any] = {}
    headline = _headline(root)
    if headline:
        meta["headline"] = headline
    published = _published(root)
    if published:
        meta["date"] = published
    try:
        article = Readability(lxml.html.tostring(root, encoding="unicode")).summary(html_partial=True)
        content = lxml.html.fragment_fromstring(article, create_parent="div")
    except Exception:  # readability gives up on pages without an article: fall back to the whole body
        content = root.find("body") if root.find("body") is not None else root
    return assemble(Document(path=path, blocks=_blocks(content), meta=meta), zone)
