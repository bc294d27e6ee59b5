"""The application factory and configuration."""

from pathlib import Path

import pytest

from mailer import create_app
from mailer.config import ConfigError, load_settings


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MAILER_SECRET_KEY is not set.*secrets\.token_urlsafe"):
        load_settings({}, tmp_path)


def test_production_refuses_weak_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings({"MAILER_SECRET_KEY": "short"}, tmp_path)


def test_production_accepts_strong_key(tmp_path: Path) -> None:
    settings = load_settings({"MAILER_SECRET_KEY": "k" * 32}, tmp_path)
    assert settings["SECRET_KEY"] == "k" * 32
    assert settings["MAILER_ENV"] == "production"


def test_development_generates_and_keeps_a_key(tmp_path: Path) -> None:
    first = load_settings({"MAILER_ENV": "development"}, tmp_path)["SECRET_KEY"]
    second = load_settings({"MAILER_ENV": "development"}, tmp_path)["SECRET_KEY"]
    assert len(first.encode()) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings({"MAILER_ENV": "development"}, tmp_path)
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'mailer.db'}"
    assert settings["MAILER_MAIL_URL"] == f"file://{tmp_path / 'outbox'}"
    assert settings["MAILER_BASE_URL"] == "http://127.0.0.1:5000"
    assert settings["MAILER_FROM"] == "Documentaries <newsletter@localhost>"
    assert settings["MAILER_POSTAL_ADDRESS"] == ""
    assert settings["MAILER_SEND_RATE"] == 0
    assert settings["MAILER_CONFIRM_MAX_AGE"] == 172800


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAILER_ENV", "staging"), ("MAILER_SEND_RATE", "fast"), ("MAILER_CONFIRM_MAX_AGE", "2d")],
)
def test_bad_settings_are_refused_by_name(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"MAILER_ENV": "development", name: value}, tmp_path)


def test_unknown_mail_scheme_is_refused(test_env: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("MAILER_MAIL_URL", "pigeon://loft")
    with pytest.raises(ConfigError, match="MAILER_MAIL_URL: unknown scheme 'pigeon'"):
        create_app()


def test_factory_builds_app_with_test_config(app) -> None:
    assert app.testing
    assert app.config["MAILER_MAIL_URL"] == "memory://"
    assert "mailer.backend" in app.extensions


def test_healthz_checks_database(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_security_headers_on_every_page(client) -> None:
    response = client.get("/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
