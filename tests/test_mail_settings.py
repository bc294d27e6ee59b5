"""Mail is built from settings read once into MailSettings; every setting comes from config.py."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask

import mailer.emails
from mailer.config import MailSettings, load_settings
from mailer.emails import RenderCache
from mailer.models import DeliveryKind
from tests.factories import WORLD_NOW, World, delivery_for

PACKAGE = Path(mailer.emails.__file__).parent


def test_the_mail_package_reads_no_app_config() -> None:
    for module in PACKAGE.glob("*.py"):
        assert not re.search(r"current_app|\.config\[|config\.get\(", module.read_text()), module


def test_the_limits_and_body_size_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "MAILER_SECRET_KEY": "k" * 40,
        "MAILER_SUBSCRIBE_LIMIT_PER_IP": "3 per hour",
        "MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS": "2 per day",
        "MAILER_RESEND_LIMIT_PER_IP": "1 per minute;4 per hour",
        "MAILER_API_MAX_BODY": "1024",
    }
    config = load_settings(env, tmp_path)
    assert {name: config[name] for name in env if name != "MAILER_SECRET_KEY"} == {
        "MAILER_SUBSCRIBE_LIMIT_PER_IP": "3 per hour",
        "MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS": "2 per day",
        "MAILER_RESEND_LIMIT_PER_IP": "1 per minute;4 per hour",
        "MAILER_API_MAX_BODY": 1024,
    }
    defaults = load_settings({"MAILER_SECRET_KEY": "k" * 40}, tmp_path)
    assert defaults["MAILER_SUBSCRIBE_LIMIT_PER_IP"] == "10 per minute;50 per hour"
    assert defaults["MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS"] == "5 per hour;20 per day"
    assert defaults["MAILER_RESEND_LIMIT_PER_IP"] == "10 per hour"
    assert defaults["MAILER_API_MAX_BODY"] == 64 * 1024


def test_a_cache_reads_the_settings_once(app: Flask, world: World) -> None:
    cache = RenderCache()
    assert cache.settings == MailSettings.from_config(app.config)
    app.config["MAILER_BASE_URL"] = "https://elsewhere.example.org"
    row = delivery_for(DeliveryKind.WELCOME, world, world.fan)
    message = mailer.emails.render_delivery(row, world.fan, cache, WORLD_NOW)
    assert b"http://localhost/unsubscribe/" in message.data
    assert b"elsewhere" not in message.data
    later = mailer.emails.render_delivery(row, world.fan, RenderCache(), WORLD_NOW)
    assert b"https://elsewhere.example.org/unsubscribe/" in later.data
