"""An embedded form in Chromium: a page on another origin subscribes, with and without script."""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from mailer.backends import backend_from_url
from mailer.emails import RenderCache, render_delivery
from mailer.embed_forms import create_embed_form, snippet
from mailer.extensions import db, limiter
from mailer.models import (
    ConsentEvent,
    Delivery,
    DeliveryKind,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from mailer.subscribers import find_subscriber
from tests.smtp_server import ScriptedSMTPServer

CHROMIUM = Path(os.environ.get("MAILER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CONSENT = "Yes, e-mail me the digest and early-access alerts. I can leave in one click."
ANSWER = re.compile("check your inbox", re.IGNORECASE)

# The documentary site's article, as its CMS would serve it, with the snippet pasted in.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{head}
<title>North Korea on film</title>
<style>.mailer-embed-done:target {{ display: block; }}</style>
</head><body><main><h1>North Korea on film</h1>
<p>Subscribe to our newsletter: get access to our latest documentaries before everyone else.</p>
{snippet}
</main></body></html>
"""
# A CMS that wants visitors back on the very page after a post without script says so.
FULL_REFERRER = '<meta name="referrer" content="no-referrer-when-downgrade">'


def _quiet_handler(directory: str) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean."""

    return functools.partial(Handler, directory=directory)  # type: ignore[return-value]


@dataclass
class Sites:
    """Our app and the documentary site, each on its own port of 127.0.0.1."""

    app_url: str
    site_url: str


@pytest.fixture(scope="module")
def chromium_tool() -> None:
    """Debian's Chromium is here: a failure under CI=true, a loud skip elsewhere."""
    if CHROMIUM.exists():
        return
    message = f"the embedded-form browser test needs Chromium at {CHROMIUM}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI installs it: see .ci/run)")
    pytest.skip("BROWSER TEST NOT RUN: " + message)


@pytest.fixture
def sites(app: Flask, tmp_path: Path) -> Iterator[Sites]:
    """The app served live, and a static site on another port carrying the form's snippet."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app_url = f"http://127.0.0.1:{server.server_port}"
    pages = ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(str(tmp_path)))
    site_url = f"http://127.0.0.1:{pages.server_port}"
    app.config["MAILER_BASE_URL"] = app_url
    limiter.reset()
    with app.app_context():
        topics = ["digest", "early_access"]
        form = create_embed_form("article", [site_url], topics, CONSENT, utcnow())
        db.session.commit()
        html = snippet(form, app_url)
    (tmp_path / "article.html").write_text(PAGE.format(head=FULL_REFERRER, snippet=html))
    (tmp_path / "plain.html").write_text(PAGE.format(head="", snippet=html))
    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=pages.serve_forever, daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield Sites(app_url, site_url)
    server.shutdown()
    pages.shutdown()
    pages.server_close()
    for thread in threads:
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def embed_browser(chromium_tool: None, browser: Any) -> Any:
    """The run's headless Chromium (conftest's ``browser``).

    Only one sync Playwright driver may run at a time, and the other browser test modules share
    the session's, so this module uses it too rather than starting its own.
    """
    return browser


def _journaled(app: Flask, email: str) -> tuple[Subscriber, ConsentEvent, list[Delivery]]:
    """The subscriber, its first consent record and its deliveries."""
    with app.app_context():
        subscriber = find_subscriber(email)
        assert subscriber is not None
        event = db.session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == subscriber.id)
            .order_by(ConsentEvent.id)
        ).first()  # the subscribe record
        assert event is not None
        deliveries = list(
            db.session.scalars(select(Delivery).where(Delivery.subscriber_id == subscriber.id))
        )
        db.session.expunge_all()
        return subscriber, event, deliveries


def _send_confirmation(app: Flask, email: str, smtp: ScriptedSMTPServer) -> str:
    """Send the journaled confirmation over SMTP as the worker does; return the mail's text."""
    with app.app_context():
        subscriber = find_subscriber(email)
        assert subscriber is not None
        delivery = db.session.scalars(
            select(Delivery).where(
                Delivery.subscriber_id == subscriber.id,
                Delivery.kind == DeliveryKind.CONFIRMATION,
            )
        ).one()
        message = render_delivery(delivery, subscriber, RenderCache())
        with backend_from_url(smtp.url) as backend:
            backend.send(message)
        db.session.rollback()
    received = [r for r in smtp.wait_for(1) if email in r.rcpt_tos]
    assert len(received) == 1
    body = received[0].message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _subscribe_on(page: Any, email: str) -> None:
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Subscribe").click()


def test_page_on_another_origin_subscribes_with_script(app, embed_browser, sites) -> None:
    from playwright.sync_api import expect

    context = embed_browser.new_context()
    page = context.new_page()
    page.goto(f"{sites.site_url}/plain.html")
    _subscribe_on(page, "with-script@example.org")
    expect(page.locator(".mailer-embed-status")).to_have_text(ANSWER)
    assert page.url == f"{sites.site_url}/plain.html"  # answered in place
    subscriber, event, deliveries = _journaled(app, "with-script@example.org")
    assert subscriber.status == SubscriberStatus.PENDING
    assert (event.form, event.consent_text) == ("embed:article", CONSENT)
    # The page's default policy sends only the origin; the script names the page itself.
    assert event.page_url == f"{sites.site_url}/plain.html"
    assert [d.kind for d in deliveries] == [DeliveryKind.CONFIRMATION]

    smtp = ScriptedSMTPServer().start()
    try:
        text = _send_confirmation(app, "with-script@example.org", smtp)
    finally:
        smtp.stop()
    confirm_url = re.search(rf"{re.escape(sites.app_url)}/confirm/\S+", text)
    assert confirm_url, text
    page.goto(confirm_url.group(0))
    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    assert _journaled(app, "with-script@example.org")[0].status == SubscriberStatus.CONFIRMED
    context.close()


def test_page_on_another_origin_subscribes_without_script(app, embed_browser, sites) -> None:
    from playwright.sync_api import expect

    context = embed_browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{sites.site_url}/article.html")
    _subscribe_on(page, "no-script@example.org")
    page.wait_for_url(f"{sites.site_url}/article.html#mailer-subscribed")
    expect(page.locator("#mailer-subscribed")).to_be_visible()
    expect(page.locator("#mailer-subscribed")).to_have_text(ANSWER)
    _, event, deliveries = _journaled(app, "no-script@example.org")
    assert event.page_url == f"{sites.site_url}/article.html"
    assert [d.kind for d in deliveries] == [DeliveryKind.CONFIRMATION]

    # A page that sends only its origin as Referer: the visitor gets our own answer page.
    page.goto(f"{sites.site_url}/plain.html")
    _subscribe_on(page, "no-script-2@example.org")
    page.wait_for_url(f"{sites.app_url}/subscribe/check-your-inbox")
    expect(page.get_by_role("heading", level=1)).to_contain_text(ANSWER)
    assert _journaled(app, "no-script-2@example.org")[2][0].kind == DeliveryKind.CONFIRMATION
    context.close()


def test_page_on_a_foreign_origin_is_refused(app, embed_browser, sites) -> None:
    from playwright.sync_api import expect

    # The same page from "localhost" is another origin, one the form does not allow.
    foreign = sites.site_url.replace("127.0.0.1", "localhost")
    for script in (True, False):
        context = embed_browser.new_context(java_script_enabled=script)
        page = context.new_page()
        page.goto(f"{foreign}/article.html")
        _subscribe_on(page, f"foreign-{script}@example.org")
        if script:
            expect(page.locator(".mailer-embed-status")).to_have_text(re.compile("did not work"))
        else:
            page.wait_for_url(f"{sites.app_url}/subscribe")
            expect(page.get_by_text("may not be used from this site")).to_be_visible()
        context.close()
    with app.app_context():
        assert db.session.scalars(select(Subscriber)).all() == []
