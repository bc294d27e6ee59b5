"""The admin digest preview and delivery dashboard in a real browser, under the site's CSP.

The preview's HTML is a separate page shown in a sandboxed frame with its own policy: the frame
must render (styles and all) without a CSP violation, and hostile digest text must stay text.
The page watch fails the test on any dialog or console error, CSP reports included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import BrowserContext, expect
from sqlalchemy import select

from .actions import HOSTILE, admin_sign_in
from .checks import assert_accessible
from .stack import LiveStack

EMAIL = "preview-editor@example.org"
PASSWORD = "a long enough password for the preview"


@pytest.fixture(scope="module")
def hostile_digest(served: LiveStack) -> Iterator[int]:
    """A draft digest whose subject and introduction carry the payloads; its id."""
    from mailer.digests import create_digest
    from mailer.extensions import db
    from mailer.models import Digest, Film

    served.create_admin(EMAIL, PASSWORD)
    with served.app_context():
        film = db.session.scalar(select(Film).order_by(Film.id))
        assert film is not None
        digest = create_digest(
            "Preview " + HOSTILE.replace("\n", " "),
            "",
            HOSTILE + "\n\n[click](javascript:alert('link'))",
            [(film.id, HOSTILE)],
            datetime.now(UTC),
        )
        db.session.commit()
        digest_id = digest.id
    yield digest_id
    with served.app_context():
        found = db.session.get(Digest, digest_id)
        if found is not None:
            db.session.delete(found)
            db.session.commit()


def test_preview_frame_renders_inert_under_the_csp(
    new_context: Callable[..., BrowserContext], hostile_digest: int
) -> None:
    page = new_context().new_page()
    admin_sign_in(page, EMAIL, PASSWORD)
    page.goto(f"/admin/digests/{hostile_digest}#preview")
    frame = page.frame_locator("#preview iframe")
    expect(frame.locator("body")).to_contain_text("{{ config }}")
    assert frame.locator("script, svg, img[src='x']").count() == 0
    assert frame.locator("a[href^='javascript']").count() == 0
    expect(page.locator("#preview pre")).to_contain_text("{{ config }}")
    assert page.locator("main script").count() == 0
    page.goto(f"/admin/digests/{hostile_digest}/delivery")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Delivery of")


def test_digest_page_is_accessible(
    new_context: Callable[..., BrowserContext], hostile_digest: int
) -> None:
    page = new_context(bypass_csp=True).new_page()
    admin_sign_in(page, EMAIL, PASSWORD)
    page.goto(f"/admin/digests/{hostile_digest}")
    assert_accessible(page)
