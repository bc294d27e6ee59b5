"""Debian's Chromium driven by Playwright: never a downloaded browser build."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Playwright

from .checks import AXE_FILE, DESKTOP

CHROMIUM = Path(os.environ.get("MAILER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing_tools(*, axe: bool = True) -> list[str]:
    """What the browser tests need and this machine lacks, with how to install it."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if axe and not AXE_FILE.exists():
        missing.append(f"axe-core at {AXE_FILE} (npm ci --prefix tests/browser)")
    return missing


def launch(playwright: Playwright) -> Browser:
    """Start headless Chromium from its system path."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def new_context(
    browser: Browser,
    base_url: str,
    viewport: dict[str, int] | None = None,
    *,
    bypass_csp: bool = False,
    storage_state: dict[str, Any] | None = None,
) -> BrowserContext:
    """A fresh profile on ``base_url``.

    The site's CSP is enforced by default, so a page that needs inline script or style shows up
    as a console error; ``bypass_csp=True`` lets axe-core be injected, and makes any script that
    escapes into a page run (and so be caught) whatever the CSP says. ``storage_state`` carries
    cookies over, e.g. a signed-in admin's session.
    """
    return browser.new_context(
        base_url=base_url,
        viewport=viewport or DESKTOP,  # type: ignore[arg-type]
        bypass_csp=bypass_csp,
        locale="en-GB",
        timezone_id="UTC",
        color_scheme="light",
        reduced_motion="reduce",
        storage_state=storage_state,  # type: ignore[arg-type]
    )
