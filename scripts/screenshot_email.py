#!/usr/bin/env python3
"""Render the sample investor email and screenshot it with headless Chromium.

Usage (from the repository root, after ``apt-get install chromium`` or with any Chrome)::

    .venv/bin/python scripts/screenshot_email.py [--out docs/email.png] [--test-data]

Not part of the test suite: it makes the README's picture. It renders the same made-up month
as the snapshot tests (``bot.mail.sample``) and never touches the network: Chromium runs with
background networking, sync and component updates off, on a throwaway profile, and the page
is a local file with no remote resources.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bot.mail.render import render  # noqa: E402
from bot.mail.sample import sample_report  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit: str | None) -> str:
    """The Chromium executable: ``--browser``, ``$CHROMIUM``, or the first one on PATH."""
    for candidate in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if candidate and (path := shutil.which(candidate)):
            return path
    raise SystemExit("no Chromium found: apt-get install chromium, or pass --browser PATH")


def screenshot(html: str, *, out: Path, browser: str, width: int, height: int) -> None:
    """Write ``html`` to a temporary file and have headless Chromium save a PNG of it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="revbot-shot-") as tmp:
        page = Path(tmp) / "email.html"
        page.write_text(html, encoding="utf-8")
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--screenshot={out.resolve()}",
            f"--window-size={width},{height}",
            page.as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0 or not out.exists():
            raise SystemExit(
                f"chromium failed ({result.returncode}): {result.stderr.strip()[-500:]}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "email.png")
    parser.add_argument("--html", type=Path, help="also keep the rendered HTML here")
    parser.add_argument("--test-data", action="store_true", help="show the TEST DATA banner")
    parser.add_argument("--not-reconciled", action="store_true")
    parser.add_argument("--browser", help="Chromium executable")
    parser.add_argument("--width", type=int, default=700)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args()

    report = sample_report(livemode=not args.test_data, reconciled=not args.not_reconciled)
    email = render(report)
    if args.html:
        args.html.write_text(email.html, encoding="utf-8")
    screenshot(
        email.html,
        out=args.out,
        browser=find_browser(args.browser),
        width=args.width,
        height=args.height,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
