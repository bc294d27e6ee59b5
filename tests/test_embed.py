"""Embeddable forms: keys, origins, CORS, answers without enumeration, consent, admin, command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select

from mailer.embed_forms import (
    DONE_MARKER,
    InvalidEmbedForm,
    create_embed_form,
    form_key,
    normalise_origin,
    revoke_embed_form,
)
from mailer.extensions import db, limiter
from mailer.models import (
    ConsentEvent,
    Delivery,
    DeliveryKind,
    EmbedForm,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from mailer.subscribers import ConsentContext, confirm, find_subscriber, subscribe
from mailer.subscribers import unsubscribe as unsubscribe_address
from mailer.suppressions import suppress
from tests.conftest import admin_csrf, csrf_token_from

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SITE = "https://docs.example.org"
OTHER_SITE = "https://cms.example.net:8443"
PAGE = SITE + "/articles/north-korea?ref=home"
CONSENT = "Yes, e-mail me the documentary digest. Form text v3."
JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def fresh_limits(app):
    # Roomy limits, so only the rate-limit test meets them.
    app.config["MAILER_SUBSCRIBE_LIMIT_PER_IP"] = "1000 per minute"
    app.config["MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS"] = "1000 per minute"
    limiter.reset()
    yield
    limiter.reset()


def make_form(app, name: str = "article", topics: tuple[str, ...] = ("digest", "early_access")):
    """A form allowed on SITE and OTHER_SITE; returns (id, key)."""
    with app.app_context():
        form = create_embed_form(name, [SITE, OTHER_SITE], topics, CONSENT, NOW)
        db.session.commit()
        return form.id, form_key(form)


def embedded_post(client, key: str, email: str = "visitor@example.org", headers=None, **fields):
    """Post as the snippet does from PAGE: no session, no CSRF token."""
    data = {"form_key": key, "email": email, "topics": ["digest"], "website": "", **fields}
    sent = {"Origin": SITE, "Referer": PAGE, "User-Agent": "EmbedTest/1.0"}
    sent.update(headers or {})
    return client.post("/subscribe", data=data, headers={k: v for k, v in sent.items() if v})


def written(app) -> tuple[int, int, int]:
    """How many subscribers, consent records and deliveries exist."""
    with app.app_context():
        return tuple(  # type: ignore[return-value]
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Subscriber, ConsentEvent, Delivery)
        )


def test_allowed_origin_without_session_subscribes(app, client) -> None:
    _, key = make_form(app)
    response = embedded_post(client, key, "New.Visitor@Example.org")
    assert response.status_code == 303
    assert response.headers["Location"] == f"{PAGE}#{DONE_MARKER}"
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in response.headers["Vary"]
    assert "session" not in response.headers.get("Set-Cookie", "")
    with app.app_context():
        sub = find_subscriber("new.visitor@example.org")
        assert sub is not None and sub.status == SubscriberStatus.PENDING
        assert sub.wants_digest and not sub.wants_early_access
        assert sub.source == "embed:article"
        kinds = db.session.scalars(
            select(Delivery.kind).where(Delivery.subscriber_id == sub.id)
        ).all()
        assert kinds == [DeliveryKind.CONFIRMATION]
        event = db.session.scalars(select(ConsentEvent)).one()
        assert event.form == "embed:article"
        assert event.page_url == PAGE
        assert event.consent_text == CONSENT
        assert event.user_agent == "EmbedTest/1.0"


def test_json_answer_carries_cors_for_the_matching_origin(app, client) -> None:
    _, key = make_form(app)
    response = embedded_post(
        client, key, headers={**JSON, "Origin": OTHER_SITE, "Referer": OTHER_SITE + "/"}
    )
    assert response.status_code == 200
    assert response.get_json()["ok"] is True
    assert response.headers["Access-Control-Allow-Origin"] == OTHER_SITE
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert written(app) == (1, 1, 1)


def test_script_note_of_the_page_is_kept_when_on_an_allowed_origin(app, client) -> None:
    _, key = make_form(app)
    embedded_post(client, key, "a@example.org", headers={**JSON, "Referer": SITE + "/"},
                  page_url=PAGE)  # fmt: skip
    embedded_post(client, key, "b@example.org", headers={**JSON, "Referer": SITE + "/"},
                  page_url="https://evil.example.com/fake")  # fmt: skip
    with app.app_context():
        urls = db.session.scalars(select(ConsentEvent.page_url).order_by(ConsentEvent.id)).all()
    assert urls == [PAGE, SITE + "/"]


def test_referer_stands_in_for_a_missing_origin(app, client) -> None:
    _, key = make_form(app)
    response = embedded_post(client, key, headers={"Origin": "", "Referer": PAGE})
    assert response.status_code == 303
    assert written(app) == (1, 1, 1)


@pytest.mark.parametrize(
    "origin, referer",
    [
        ("https://evil.example.com", PAGE),  # a foreign origin, whatever the Referer says
        ("", "https://evil.example.com/page"),  # no Origin, a foreign Referer
        ("", ""),  # neither
        ("null", PAGE),  # an opaque origin (sandboxed frame, file://)
        ("http://docs.example.org", PAGE),  # same host, other scheme
        ("https://docs.example.org.evil.com", PAGE),
    ],
)
def test_foreign_or_missing_origin_is_refused_and_nothing_written(
    app, client, origin: str, referer: str
) -> None:
    _, key = make_form(app)
    for headers in ({"Origin": origin, "Referer": referer}, {**JSON, "Origin": origin,
                                                            "Referer": referer}):  # fmt: skip
        response = embedded_post(client, key, headers=headers)
        assert response.status_code == 403
        assert "Access-Control-Allow-Origin" not in response.headers
    assert written(app) == (0, 0, 0)


def test_tampered_unknown_or_revoked_key_is_refused_and_nothing_written(app, client) -> None:
    form_id, key = make_form(app)
    with app.app_context():
        other_salt = URLSafeSerializer(app.config["SECRET_KEY"], salt="mailer.confirm")
        wrong_salt = str(other_salt.dumps([form_id, "article"]))
        other_key = URLSafeSerializer("another-secret-key-of-enough-length-0123456789",
                                      salt="mailer.embed-form")  # fmt: skip
        foreign_signed = str(other_key.dumps([form_id, "article"]))
    bad_keys = [key[:-2] + ("AA" if key[-2:] != "AA" else "BB"), wrong_salt, foreign_signed, "x"]
    for n, bad in enumerate(bad_keys):
        response = embedded_post(client, bad, f"k{n}@example.org")
        assert response.status_code == 400, bad
        assert "Access-Control-Allow-Origin" not in response.headers
        answer = embedded_post(client, bad, f"j{n}@example.org", headers=JSON)
        assert answer.status_code == 400 and answer.get_json()["ok"] is False
    with app.app_context():
        form = db.session.get(EmbedForm, form_id)
        assert form is not None
        revoke_embed_form(form, NOW)
        db.session.commit()
    assert embedded_post(client, key).status_code == 400
    assert written(app) == (0, 0, 0)


def test_filled_honeypot_gets_the_same_answer_and_nothing_is_written(app, client) -> None:
    _, key = make_form(app)
    bot = embedded_post(client, key, "bot@example.org", website="http://spam.example")
    bot_json = embedded_post(client, key, "bot@example.org", headers=JSON, website="x")
    assert written(app) == (0, 0, 0)
    human = embedded_post(client, key, "human@example.org")
    human_json = embedded_post(client, key, "human2@example.org", headers=JSON)
    assert (bot.status_code, bot.headers["Location"]) == (
        human.status_code,
        human.headers["Location"],
    )
    assert bot_json.get_json() == human_json.get_json()


def test_bad_address_or_topic_not_offered_is_refused_and_nothing_written(app, client) -> None:
    _, key = make_form(app, topics=("digest",))
    cases = [
        {"email": "not-an-address"},
        {"email": "a@example.org\r\nBcc: x@example.org"},
        {"email": "a@example.org", "topics": ["early_access"]},
        {"email": "a@example.org", "topics": []},
        {"email": "a@example.org", "topics": ["digest", "bogus"]},
    ]
    for fields in cases:
        response = embedded_post(client, key, **fields)
        assert response.status_code == 400, fields
        assert "Not subscribed" in response.get_data(as_text=True)
        answer = embedded_post(client, key, headers=JSON, **fields)
        assert answer.status_code == 400 and answer.get_json()["ok"] is False
        # The visitor's own site may read why, to let them fix a typo.
        assert answer.headers["Access-Control-Allow-Origin"] == SITE
    assert written(app) == (0, 0, 0)


def _prepare(app, email: str, state: str) -> None:
    """An address in the named state, made through the domain functions."""
    with app.app_context():
        if state == "suppressed":
            suppress(email, SuppressionReason.COMPLAINT, NOW)
        elif state != "new":
            subscribe(email, ["digest"], ConsentContext(), NOW)
            sub = find_subscriber(email)
            assert sub is not None
            if state in ("confirmed", "unsubscribed"):
                confirm(sub, ConsentContext(), NOW)
            if state == "unsubscribed":
                unsubscribe_address(sub, NOW, None)
        db.session.commit()


STATES = ["new", "pending", "confirmed", "unsubscribed", "suppressed"]


def test_answers_are_identical_for_every_kind_of_address(app, client) -> None:
    _, key = make_form(app)
    redirects, answers = set(), set()
    for state in STATES:
        email = f"{state}@example.org"
        _prepare(app, email, state)
        plain = embedded_post(client, key, email)
        with_script = embedded_post(client, key, email, headers=JSON)
        redirects.add((plain.status_code, plain.headers["Location"], plain.get_data()))
        answers.add((with_script.status_code, with_script.get_data(),
                     tuple(sorted(with_script.headers.keys()))))  # fmt: skip
    assert len(redirects) == 1, redirects
    assert len(answers) == 1, answers
    ((status, body, _),) = answers
    assert status == 200 and b'"ok":true' in body.replace(b" ", b"")
    assert next(iter(redirects))[:2] == (303, f"{PAGE}#{DONE_MARKER}")


@pytest.mark.parametrize(
    "referer",
    [
        "https://evil.example.com/page",
        "https://docs.example.org.evil.com/page",
        "https://docs.example.org@evil.com/page",
        "http://docs.example.org/page",
        "javascript:alert(1)",
        "//evil.example.com/page",
        "https://docs.example.org/",  # the origin only: no page to go back to
        "",
    ],
)
def test_redirect_never_leaves_the_allowed_origins(app, client, referer: str) -> None:
    _, key = make_form(app)
    response = embedded_post(client, key, headers={"Referer": referer})
    assert response.status_code == 303
    assert response.headers["Location"] == "/subscribe/check-your-inbox"
    assert written(app) == (1, 1, 1)


def test_preflight_answers_only_the_forms_origins(app, client) -> None:
    form_id, _ = make_form(app)
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "accept"}
    allowed = client.options("/subscribe", headers={"Origin": OTHER_SITE, **asked})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == OTHER_SITE
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    foreign = client.options("/subscribe", headers={"Origin": "https://evil.example.com", **asked})
    assert "Access-Control-Allow-Origin" not in foreign.headers
    with app.app_context():
        form = db.session.get(EmbedForm, form_id)
        assert form is not None
        revoke_embed_form(form, NOW)
        db.session.commit()
    revoked = client.options("/subscribe", headers={"Origin": OTHER_SITE, **asked})
    assert "Access-Control-Allow-Origin" not in revoked.headers


def test_same_site_posts_keep_the_csrf_check(app, client) -> None:
    make_form(app)
    data = {"email": "someone@example.org", "topics": ["digest"]}
    refused = client.post("/subscribe", data=data, headers={"Origin": SITE})
    assert refused.status_code == 400
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert written(app) == (0, 0, 0)
    token = csrf_token_from(client.get("/subscribe").get_data(as_text=True))
    accepted = client.post("/subscribe", data={**data, "csrf_token": token})
    assert accepted.status_code == 303
    assert written(app) == (1, 1, 1)


def test_embedded_posts_share_the_subscribe_rate_limits(app, client) -> None:
    _, key = make_form(app)
    app.config["MAILER_SUBSCRIBE_LIMIT_PER_IP"] = "3 per minute"
    for n in range(3):
        assert embedded_post(client, key, f"r{n}@example.org", headers=JSON).status_code == 200
    limited = embedded_post(client, key, "r9@example.org", headers=JSON)
    assert limited.status_code == 429
    assert limited.headers["Access-Control-Allow-Origin"] == SITE  # the script can say so
    assert written(app) == (3, 3, 3)


def test_snippet_and_script(app, client) -> None:
    form_id, key = make_form(app, topics=("early_access",))
    with app.app_context():
        form = db.session.get(EmbedForm, form_id)
        assert form is not None
        from mailer.embed_forms import snippet

        html = snippet(form, "https://news.example.org/")
    assert 'action="https://news.example.org/subscribe"' in html
    assert 'method="post"' in html
    assert f'name="form_key" value="{key}"' in html
    assert 'name="topics" value="early_access"' in html and 'value="digest"' not in html
    assert 'name="website"' in html and 'name="email"' in html
    assert CONSENT in html
    assert 'src="https://news.example.org/embed.js"' in html
    assert "csrf_token" not in html
    script = client.get("/embed.js")
    assert script.status_code == 200
    assert script.mimetype == "text/javascript"
    assert "application/json" in script.get_data(as_text=True)
    script.close()


@pytest.mark.parametrize(
    "raw, origin",
    [
        ("https://Docs.Example.org", "https://docs.example.org"),
        ("https://docs.example.org/", "https://docs.example.org"),
        ("https://docs.example.org:443", "https://docs.example.org"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        (" http://[::1]:80 ", "http://[::1]"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(raw: str, origin: str) -> None:
    assert normalise_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    ["docs.example.org", "ftp://docs.example.org", "https://docs.example.org/page",
     "https://user@docs.example.org", "https://docs.example.org?x=1", "https://:99", "null",
     "https://docs.example.org:99999"],
)  # fmt: skip
def test_bad_origins_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmbedForm):
        normalise_origin(raw)


def test_command_creates_a_form_and_prints_its_snippet(app, runner) -> None:
    result = runner.invoke(
        args=["embed-form", "cms", "--origin", SITE, "--origin", "http://127.0.0.1:8000",
              "--topics", "digest", "--consent-text", CONSENT]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert 'action="http://localhost/subscribe"' in result.output
    assert CONSENT in result.output and 'name="form_key"' in result.output
    with app.app_context():
        form = db.session.scalars(select(EmbedForm)).one()
        assert form.origins == ["http://127.0.0.1:8000", SITE]
        assert form.topics == ["digest"]
    again = runner.invoke(args=["embed-form", "cms", "--origin", SITE])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(args=["embed-form", "other", "--origin", "https://x.example/page"])
    assert bad.exit_code == 2 and "not an origin" in bad.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(EmbedForm)) == 1


def test_admin_creates_lists_shows_and_revokes_forms(app, admin_client) -> None:
    token = admin_csrf(admin_client)
    page = admin_client.get("/admin/embed-forms")
    assert page.status_code == 200 and "Embedded forms" in page.get_data(as_text=True)
    bad = admin_client.post(
        "/admin/embed-forms",
        data={"csrf_token": token, "name": "cms", "origins": "not an origin",
              "topics": ["digest"], "consent_text": CONSENT},
    )  # fmt: skip
    assert bad.status_code == 400 and "is not an origin" in bad.get_data(as_text=True)
    created = admin_client.post(
        "/admin/embed-forms",
        data={"csrf_token": token, "name": "cms", "origins": f"{SITE}\n{OTHER_SITE}\n",
              "topics": ["digest", "early_access"], "consent_text": CONSENT},
    )  # fmt: skip
    assert created.status_code == 303
    shown = admin_client.get(created.headers["Location"]).get_data(as_text=True)
    assert "&lt;form" in shown and "form_key" in shown and CONSENT in shown
    with app.app_context():
        form = db.session.scalars(select(EmbedForm)).one()
        key, form_id = form_key(form), form.id
        assert form.origins == sorted([SITE, OTHER_SITE])
    assert "cms" in admin_client.get("/admin/embed-forms").get_data(as_text=True)
    visitor = app.test_client()
    assert embedded_post(visitor, key).status_code == 303
    revoked = admin_client.post(f"/admin/embed-forms/{form_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    assert embedded_post(visitor, key, "later@example.org").status_code == 400
    assert written(app) == (1, 1, 1)


def test_admin_pages_need_a_signed_in_admin(app, client) -> None:
    assert client.get("/admin/embed-forms").status_code == 302


def test_keys_survive_a_secret_key_rotation(app, client) -> None:
    _, key = make_form(app)
    old_secret = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-brand-new-secret-key-that-is-long-enough-9876543210"
    assert embedded_post(client, key, "before@example.org").status_code == 400
    app.config["SECRET_KEY_FALLBACKS"] = [old_secret]
    assert embedded_post(client, key, "after@example.org").status_code == 303
    assert written(app) == (1, 1, 1)


def test_admin_navigation_links_to_embedded_forms(app, admin_client) -> None:
    html = admin_client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/embed-forms"' in html
