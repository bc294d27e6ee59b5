"""The pictures of the README: one entry per screenshot, shared by `make screenshots` and the tests.

Add a page by adding one ``Shot``: a file name, a viewport, and how to get there. ``visit`` may
drive the site (subscribe, sign in, ...) and may read mail from ``stack.smtp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from playwright.sync_api import Page

from .checks import DESKTOP, PHONE
from .stack import LiveStack


@dataclass(frozen=True)
class Shot:
    """One screenshot: where it is saved, at what size, and how the page gets there."""

    name: str
    viewport: dict[str, int]
    visit: Callable[[Page, LiveStack], None]
    full_page: bool = True  # False: only the first screen, as a phone first shows it


def goto(path: str) -> Callable[[Page, LiveStack], None]:
    """A visit that just opens ``path``."""

    def visit(page: Page, stack: LiveStack) -> None:
        response = page.goto(path)
        assert response is not None and response.ok, f"{path} answered {response}"

    return visit


SHOTS: list[Shot] = [
    Shot("landing-desktop", DESKTOP, goto("/")),
    Shot("landing-phone", PHONE, goto("/"), full_page=False),
    Shot("film-desktop", DESKTOP, goto("/films/the-red-chapel"), full_page=False),
]
