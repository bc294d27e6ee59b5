"""What every page must pass, and keyboard moves: axe-core, no sideways scrolling, visible focus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_FILE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")

# The widths pages are judged and pictured at: a common phone, and a desktop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the current page (the context must bypass CSP) and return violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_FILE))
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        raise AssertionError("axe-core could not be injected: use a context with bypass_csp=True")
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return list(result["violations"])


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the current page."""
    blocking = [v for v in axe_violations(page) if v.get("impact") in BLOCKING_IMPACTS]
    summary = [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in blocking
    ]
    assert not blocking, f"axe-core on {page.url}:\n{json.dumps(summary, indent=2)}"


def assert_no_horizontal_overflow(page: Page) -> None:
    """The page does not scroll sideways; name the widest elements if it does."""
    widths = page.evaluate(
        """() => {
            const limit = window.innerWidth;
            const wide = [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > limit + 0.5)
              .slice(0, 5)
              .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                        + ' ' + Math.round(e.getBoundingClientRect().right) + 'px');
            return {scroll: document.scrollingElement.scrollWidth, inner: limit, wide};
        }"""
    )
    assert widths["scroll"] <= widths["inner"], f"{page.url} scrolls sideways: {widths}"


def focused_description(page: Page) -> str:
    """A short description of the focused element, for messages."""
    return str(
        page.evaluate(
            "() => { const e = document.activeElement; "
            "return e ? e.outerHTML.slice(0, 120) : 'nothing'; }"
        )
    )


def tab_to(page: Page, selector: str, max_presses: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has focus, as a keyboard user does."""
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"Tab never reached {selector!r}; focus is on {focused_description(page)}")


def assert_focus_visible(page: Page) -> None:
    """The focused element shows a focus ring (an outline or a box shadow)."""
    style = page.evaluate(
        """() => {
            const s = getComputedStyle(document.activeElement);
            return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), shadow: s.boxShadow};
        }"""
    )
    visible = (style["style"] != "none" and style["width"] > 0) or style["shadow"] != "none"
    assert visible, f"no visible focus on {focused_description(page)}: {style}"
