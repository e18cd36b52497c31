"""Golden documents: each file in tests/golden/ beside the JSON of what the parser must find in it.

The expected JSON is written by hand and holds only the fields it states. Besides the `parse --json` keys
(compared exactly) it may use: `body_starts` (the start of each body paragraph, in order), `about_names`,
`contact_emails`, `forward_looking_statements_starts`, and quotes given with `text_starts` instead of `text`.
Word documents are built by tests/test_docx.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.parse import parse_release

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p for p in GOLDEN.iterdir() if p.suffix != ".json")
TORONTO = ZoneInfo("America/Toronto")


def _differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def check(label: str, want: Any, have: Any) -> None:
        if want != have:
            out.append(f"{label}:\n    expected {want!r}\n    got      {have!r}")

    for key, want in expected.items():
        if key == "body_starts":
            check("body paragraph count (at least)", True, len(got["body"]) >= len(want))
            for index, start in enumerate(want):
                have = got["body"][index] if index < len(got["body"]) else None
                check(f"body[{index}] starts", start, have[: len(start)] if have else None)
        elif key == "about_names":
            check("about names", want, [a["name"] for a in got["about"]])
        elif key == "contact_emails":
            check("contact emails", want, [c.get("email") for c in got["contacts"]])
        elif key == "forward_looking_statements_starts":
            have = got["forward_looking_statements"] or ""
            check("forward_looking_statements starts", want, have[: len(want)])
        elif key == "quotes":
            check("quote count", len(want), len(got["quotes"]))
            for index, (quote, have) in enumerate(zip(want, got["quotes"], strict=False)):
                check(f"quotes[{index}].speaker", quote["speaker"], have["speaker"])
                if "text" in quote:
                    check(f"quotes[{index}].text", quote["text"], have["text"])
                else:
                    check(
                        f"quotes[{index}].text starts", quote["text_starts"], have["text"][: len(quote["text_starts"])]
                    )
        else:
            check(key, want, got.get(key, "<missing>"))
    return out


@pytest.mark.parametrize("document", CASES, ids=[p.name for p in CASES])
def test_golden_document(document: Path) -> None:
    expected = json.loads(document.with_suffix(".json").read_text(encoding="utf-8"))
    got = parse_release(document, TORONTO).to_json()
    problems = _differences(expected, got)
    assert not problems, f"{document.name}:\n  " + "\n  ".join(problems)


def test_every_golden_document_has_its_expectation() -> None:
    assert len(CASES) >= 15
    assert all(p.with_suffix(".json").exists() for p in CASES)
