"""Fixtures of the browser tests: the served stack, its mailbox, Chromium, watched pages.

The stack (gunicorn + worker + SMTP catcher on a fresh SQLite database) starts once per run.
Every page a test opens is watched: a dialog (alert, confirm, prompt), a console error (a CSP
violation is one) or an uncaught script error fails the test after it ran.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from tests.smtp_server import ScriptedSMTPServer

from . import chromium
from .actions import signed_in_state
from .mailbox import Mailbox
from .stack import LiveStack

HERE = Path(__file__).resolve().parent
PROBLEMS = pytest.StashKey["PageWatch"]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker every browser test carries."""
    config.addinivalue_line("markers", "browser: drives Chromium against the served app")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the browser tests; leave them out of the PostgreSQL pass of `make test`.

    The served stack always runs on its own fresh SQLite file (it exercises pages, not the
    database), so the PostgreSQL pass would repeat the very same run at no gain.
    """
    ours = [item for item in items if HERE in Path(str(item.path)).parents]
    for item in ours:
        item.add_marker(pytest.mark.browser)
    if os.environ.get("MAILER_TEST_DATABASE_URL", "").startswith("postgresql") and ours:
        keep = [item for item in items if item not in ours]
        config.hook.pytest_deselected(items=ours)
        items[:] = keep


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """Chromium and axe-core are present: a failure under CI=true, a loud skip elsewhere."""
    missing = chromium.missing_tools()
    if not missing:
        return
    message = "browser tests need " + " and ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI must install them: see .ci/run)")
    pytest.skip("BROWSER TESTS NOT RUN: " + message)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    """The SMTP server that catches every message the stack sends."""
    server = ScriptedSMTPServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def served(
    browser_tools: None, smtp_server: ScriptedSMTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """The app served by gunicorn on 127.0.0.1, its worker, the nine films loaded."""
    with LiveStack(tmp_path_factory.mktemp("served"), smtp_server) as stack:
        yield stack


@pytest.fixture(scope="session")
def served_with_outbox(
    browser_tools: None, smtp_server: ScriptedSMTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """A second stack whose mail goes to files (``file://``), so the admin outbox has messages.

    Started only by the tests that ask for it; its URL differs from ``served.url`` (pass
    ``base_url=served_with_outbox.url`` to ``new_context``).
    """
    workdir = tmp_path_factory.mktemp("served-outbox")
    outbox = workdir / "outbox"
    with LiveStack(workdir, smtp_server, extra_env={"MAILER_MAIL_URL": outbox.as_uri()}) as stack:
        yield stack


@pytest.fixture
def mailbox(smtp_server: ScriptedSMTPServer) -> Mailbox:
    """Mail the stack sent; ``mailbox.wait_for(address, subject)`` returns a ``Mail``."""
    return Mailbox(smtp_server)


@pytest.fixture(scope="session")
def playwright_driver(browser_tools: None) -> Iterator[Playwright]:
    """The Playwright driver for the whole run."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium."""
    launched = chromium.launch(playwright_driver)
    yield launched
    launched.close()


class PageWatch:
    """Records dialogs, console errors and uncaught script errors of every page it watches."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        """Accept console errors matching ``pattern`` (e.g. the 404 of a page meant to 404)."""
        self.allowed.append(re.compile(pattern))

    def watch(self, page: Page) -> None:
        """Listen on ``page``."""
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"{dialog.type} dialog: {dialog.message!r}")
        dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        text = f"{message.text} ({where})"
        if not any(p.search(text) for p in self.allowed):
            self.problems.append(f"console error: {text}")

    def _on_page_error(self, error: PlaywrightError) -> None:
        self.problems.append(f"script error: {error}")


@pytest.fixture
def page_watch(request: pytest.FixtureRequest) -> PageWatch:
    """The watch over this test's pages; its problems fail the test when it ends."""
    watch = PageWatch()
    request.node.stash[PROBLEMS] = watch
    return watch


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test that passed but made a page show a dialog or log an error."""
    result = yield
    watch = item.stash.get(PROBLEMS, None)
    if watch is not None and watch.problems:
        pytest.fail("the page misbehaved:\n" + "\n".join(watch.problems), pytrace=False)
    return result


ADMIN_EMAIL = "editor@example.org"
ADMIN_PASSWORD = "a long admin password for the browser tests"


@pytest.fixture(scope="session")
def admin_session(browser: Browser, served: LiveStack) -> dict[str, Any]:
    """The cookies of an admin signed in through the sign-in page (with the keyboard).

    Sign-in is rate limited, so the run signs in once; pass ``storage_state=admin_session`` to
    ``new_context`` for a signed-in context.
    """
    return signed_in_state(browser, served, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def outbox_admin_session(browser: Browser, served_with_outbox: LiveStack) -> dict[str, Any]:
    """Like ``admin_session``, on the stack that writes mail to files.

    Both stacks listen on 127.0.0.1 and cookies ignore the port, so use these cookies only in a
    context of their own: ``new_context(base_url=served_with_outbox.url, storage_state=...)``.
    """
    return signed_in_state(browser, served_with_outbox, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def new_context(
    browser: Browser, served: LiveStack, page_watch: PageWatch
) -> Iterator[Callable[..., BrowserContext]]:
    """Make watched browser contexts on the served site.

    ``viewport=PHONE`` for a phone; ``bypass_csp=True`` where axe-core is to be injected;
    ``storage_state=admin_session`` for a context signed in as the admin; ``base_url`` for a
    stack other than ``served``.
    """
    made: list[BrowserContext] = []

    def make(
        viewport: dict[str, int] | None = None,
        bypass_csp: bool = False,
        storage_state: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> BrowserContext:
        context = chromium.new_context(
            browser,
            base_url or served.url,
            viewport,
            bypass_csp=bypass_csp,
            storage_state=storage_state,
        )
        context.on("page", page_watch.watch)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    """A watched page at desktop size under the site's CSP; ``page.goto("/")`` opens the site."""
    return new_context().new_page()
