"""Schemathesis against the API's own OpenAPI document, in-process: no 500, declared responses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.models import Digest, DigestFilm, Film, Subscriber, SubscriberStatus

EXAMPLES = 20  # per operation and mode: enough to find shape bugs, quick on both databases
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def api_app(app: Flask) -> Flask:
    """The app with a generous rate limit and a few rows of each kind to find, change, delete."""
    app.config["MAILER_API_RATE_LIMIT"] = "100000 per minute"
    with app.app_context():
        db.session.add_all(Film(slug=f"film-{n}", title=f"Film {n}") for n in range(1, 4))
        db.session.add_all(
            Digest(subject=f"Digest {n}", films=[DigestFilm(film_id=1, position=0, note="n")])
            for n in range(1, 4)
        )
        db.session.add_all(
            Subscriber(email=f"reader{n}@example.org", status=SubscriberStatus.CONFIRMED, nonce="x")
            for n in range(1, 4)
        )
        db.session.commit()
    return app


@pytest.fixture
def api_auth(api_app: Flask) -> dict[str, str]:
    """Headers with a valid token for the generated requests."""
    with api_app.app_context():
        _, plaintext = create_api_token("schemathesis", datetime(2026, 11, 25, tzinfo=UTC))
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi_document(
    api_app: Flask, api_auth: dict[str, str], mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 21  # films, digests, subscribers, suppressions
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=api_auth, checks=CHECKS)

        conforms()
