"""The intermediate form every reader produces: metadata plus a list of text blocks with line numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_BYTES = 5 * 1024 * 1024  # a press release over 5 MB is not a press release


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph, heading or list item as rendered text (markup removed).

    `level` is 1–6 for headings and 0 otherwise; `line` is the 1-based line in the source, where known.
    `lead` is the text of an emphasised (bold or italic) span opening the block, where the format marks one:
    wires set the dateline that way ("**WALPOLE, MA** The Tor Project…"). `link_only` marks a block that is
    all link text (navigation, breadcrumbs), which is page chrome rather than a headline or a section.
    """

    text: str
    line: int | None = None
    level: int = 0
    kind: str = "p"  # "p", "h", "li", "quote"
    bold: bool = False
    lead: str = ""
    link_only: bool = False

    @property
    def is_heading(self) -> bool:
        return self.kind == "h"


@dataclass(slots=True)
class Document:
    """What a reader hands to the field extractors."""

    path: Path
    blocks: list[Block]
    meta: dict[str, Any] = field(default_factory=dict)
    meta_lines: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
