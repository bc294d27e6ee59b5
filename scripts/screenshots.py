#!/usr/bin/env python3
"""`make screenshots`: picture the pages listed in tests/browser/shots.py into docs/screenshots/.

Serves the current code for real (gunicorn, worker, an SMTP catcher, a fresh database with the
films loaded) and photographs each entry with Debian's Chromium.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import chromium  # noqa: E402
from tests.browser.actions import signed_in_state  # noqa: E402
from tests.browser.shots import SHOT_ADMIN, SHOTS  # noqa: E402
from tests.browser.stack import LiveStack  # noqa: E402
from tests.smtp_server import ScriptedSMTPServer  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    """Take every screenshot; return the exit status."""
    missing = chromium.missing_tools(axe=False)
    if missing:
        print("cannot take screenshots, missing: " + "; ".join(missing), file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the SMTP catcher's every command
    smtp = ScriptedSMTPServer().start()
    try:
        with (
            tempfile.TemporaryDirectory() as workdir,
            LiveStack(Path(workdir), smtp) as stack,
            sync_playwright() as driver,
        ):
            browser = chromium.launch(driver)
            admin = signed_in_state(browser, stack, *SHOT_ADMIN)
            for shot in SHOTS:
                context = chromium.new_context(
                    browser, stack.url, shot.viewport, storage_state=admin if shot.admin else None
                )
                page = context.new_page()
                shot.visit(page, stack)
                target = OUT / f"{shot.name}.png"
                page.screenshot(path=target, full_page=shot.full_page)
                context.close()
                print(f"saved {target.relative_to(ROOT)}")
            browser.close()
    finally:
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
