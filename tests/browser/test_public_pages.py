"""The public pages in a real browser: content, links, keyboard, accessibility, phone width."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from mailer.paths import FILMS_FILE

from .actions import SUBSCRIBE_BUTTON, SUBSCRIBE_EMAIL, fill_subscribe_form_with_keyboard
from .checks import (
    DESKTOP,
    PHONE,
    assert_accessible,
    assert_focus_visible,
    assert_no_horizontal_overflow,
    tab_to,
)
from .conftest import PageWatch
from .shots import SHOTS, Shot
from .stack import LiveStack

FILMS = json.loads(FILMS_FILE.read_text())
PUBLIC_PAGES = ["/", "/films/the-red-chapel", "/films/camp-14-total-control-zone"]
MISSING_PAGE = "/films/no-such-film"


def test_landing_page_lists_the_nine_films_and_each_link_opens_its_page(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Documentaries about North Korea")
    cards = page.locator(".film-card h3 a")
    expect(cards).to_have_count(9)
    titles = cards.all_inner_texts()
    assert sorted(titles) == sorted(film["title"] for film in FILMS)
    hrefs = [cards.nth(i).get_attribute("href") for i in range(9)]
    for title, href in zip(titles, hrefs, strict=True):
        with page.expect_navigation():
            page.get_by_role("link", name=title, exact=True).click()
        assert page.url.endswith(str(href))
        expect(page.get_by_role("heading", level=1)).to_have_text(title)
        page.go_back()


def test_film_page_shows_the_film(page: Page) -> None:
    response = page.goto("/films/the-red-chapel")
    assert response is not None and response.status == 200
    expect(page).to_have_title("The Red Chapel · Documentaries")
    expect(page.get_by_role("heading", level=1)).to_have_text("The Red Chapel")
    expect(page.locator(".meta")).to_contain_text("Mads Brügger")
    expect(page.get_by_role("link", name="Subscribe")).to_have_attribute("href", "/#subscribe")
    with page.expect_navigation():
        page.get_by_role("link", name="All films").click()
    assert page.url.endswith("/#films")
    expect(page.locator(".film-card")).to_have_count(9)


def test_missing_page_is_a_friendly_404(page: Page, page_watch: PageWatch) -> None:
    # Chromium logs the 404 status of the document itself; that one is expected.
    page_watch.allow(r"status of 404")
    response = page.goto(MISSING_PAGE)
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not Found")
    expect(page.locator("main")).to_contain_text("We could not find that page")
    with page.expect_navigation():
        page.get_by_role("link", name="Go to the home page").click()
    expect(page.locator(".film-card")).to_have_count(9)


def test_keyboard_reaches_the_subscribe_form_with_visible_focus(page: Page) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    assert_focus_visible(page)
    fill_subscribe_form_with_keyboard(page, "keyboard@example.org")
    expect(page.locator(SUBSCRIBE_EMAIL)).to_have_value("keyboard@example.org")
    expect(page.locator(SUBSCRIBE_BUTTON)).to_be_focused()
    # The topic boxes sit between the field and the button and toggle with Space.
    page.keyboard.press("Shift+Tab")
    assert_focus_visible(page)
    box = page.locator(".subscribe-form input[type=checkbox]").last
    expect(box).to_be_focused()
    page.keyboard.press("Space")
    expect(box).not_to_be_checked()


def test_skip_link_moves_focus_to_the_content(page: Page) -> None:
    page.goto("/films/the-red-chapel")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    tab_to(page, "main a")
    assert_focus_visible(page)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("path", [*PUBLIC_PAGES, MISSING_PAGE])
def test_public_page_is_accessible_and_fits_the_screen(
    new_context: Callable[..., BrowserContext],
    page_watch: PageWatch,
    path: str,
    viewport: dict[str, int],
) -> None:
    page_watch.allow(r"status of 404")
    page = new_context(viewport, bypass_csp=True).new_page()
    page.goto(path)
    assert_accessible(page)
    assert_no_horizontal_overflow(page)


@pytest.mark.parametrize("shot", SHOTS, ids=[s.name for s in SHOTS])
def test_screenshot_pages_render_without_overflow(
    new_context: Callable[..., BrowserContext],
    served: LiveStack,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    shot: Shot,
) -> None:
    signed_in = request.getfixturevalue("admin_session") if shot.admin else None
    page = new_context(shot.viewport, storage_state=signed_in).new_page()
    shot.visit(page, served)
    assert_no_horizontal_overflow(page)
    png = page.screenshot(path=tmp_path / f"{shot.name}.png", full_page=shot.full_page)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_checks_catch_what_they_look_for(
    new_context: Callable[..., BrowserContext],
) -> None:
    # A page with an unlabelled field, an image without text and a too-wide box must be flagged.
    page = new_context(bypass_csp=True).new_page()
    page.goto("/")
    page.set_content(
        '<html lang="en"><title>bad</title><main><img src="data:,">'
        '<input type="text"><div style="width:3000px">wide</div></main></html>'
    )
    with pytest.raises(AssertionError, match="image-alt"):
        assert_accessible(page)
    with pytest.raises(AssertionError, match="scrolls sideways"):
        assert_no_horizontal_overflow(page)
    with pytest.raises(AssertionError, match="Tab never reached"):
        tab_to(page, "#nothing-like-this", max_presses=3)


def test_the_page_watch_records_dialogs_and_script_errors(
    page: Page, page_watch: PageWatch
) -> None:
    page.goto("/")
    page.evaluate("() => { alert('hi'); setTimeout(() => { throw new Error('boom'); }); }")
    page.evaluate("() => new Promise(r => setTimeout(r, 50))")
    page.evaluate("() => console.error('logged')")
    expect(page.locator("h1")).to_be_visible()
    problems = list(page_watch.problems)
    page_watch.problems.clear()  # recorded as they should be; not a failure of this test
    assert any("alert dialog: 'hi'" in p for p in problems), problems
    assert any("script error" in p and "boom" in p for p in problems), problems
    assert any("console error: logged" in p for p in problems), problems


def test_the_sites_csp_is_enforced_and_a_violation_is_recorded(
    page: Page, page_watch: PageWatch
) -> None:
    page.goto("/")
    page.evaluate(
        "() => document.body.insertAdjacentHTML('beforeend', "
        '\'<img src="data:," onload="alert(1)"><p style="color: red">red</p>\')'
    )
    expect(page.get_by_text("red", exact=True)).to_be_visible()
    page.evaluate("() => new Promise(r => setTimeout(r, 100))")
    problems = list(page_watch.problems)
    page_watch.problems.clear()  # recorded as they should be; not a failure of this test
    assert not any("dialog" in p for p in problems), problems
    assert any("Content Security Policy" in p for p in problems), problems
