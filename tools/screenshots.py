"""Screenshots of the rendered email (desktop and 375 px wide) and of a newsroom page, with headless Chromium.

    .venv/bin/python tools/screenshots.py [--chromium /usr/bin/chromium] [--out var/screenshots]

Renders the project's sample releases through `pipeline run --once` in a scratch copy of the project (outbox
transport, static site), then points Debian's Chromium at the files. Needs the `chromium` package."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def shoot(chromium: str, url: str, target: Path, width: int, height: int, profile: Path) -> None:
    subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={target}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    print(f"{target} ({width}x{height})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "screenshots")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        sys.exit(f"chromium not found at {args.chromium} (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "project"
        work.mkdir()
        for name in ("config.yaml", "releases", "contacts"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
        pipeline = str(Path(sys.executable).parent / "pipeline")
        subprocess.run([pipeline, "run", "--once"], cwd=work, check=True, capture_output=True)
        releases = sorted(p for p in (work / "releases").iterdir() if p.suffix in (".txt", ".md", ".docx", ".html"))
        preview = work / "var" / "preview"
        subprocess.run([pipeline, "preview", str(releases[0]), "--out", str(preview)], cwd=work, check=True)
        profile = Path(scratch) / "chromium-profile"
        email_url = (preview / "email.html").as_uri()
        shoot(args.chromium, email_url, args.out / "email-desktop.png", 1024, 1600, profile)
        shoot(args.chromium, email_url, args.out / "email-375.png", 375, 1800, profile)
        pages = sorted((work / "public" / "releases").glob("*/index.html"))
        if pages:
            shoot(args.chromium, pages[0].as_uri(), args.out / "newsroom-page.png", 1024, 1400, profile)
        shoot(
            args.chromium,
            (work / "public" / "index.html").as_uri(),
            args.out / "newsroom-index.png",
            1024,
            900,
            profile,
        )


if __name__ == "__main__":
    main()
