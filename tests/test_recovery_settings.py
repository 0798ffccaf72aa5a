"""The recovery plugin's settings: conventional names (SMTP_HOST...), checked at start-up, documented in the README."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from core.app import create_app
from core.plugin import PluginError
from plugins.recovery import Config

README = Path(__file__).resolve().parent.parent / "README.md"


def started_config(settings) -> Config:
    async def start():
        app = await create_app(settings)
        try:
            return next(p for p in app.plugins if p.name == "recovery").config
        finally:
            await app.services.close()

    return asyncio.run(start())


def start_error(settings) -> str:
    with pytest.raises(PluginError) as info:
        started_config(settings)
    return str(info.value)


def test_defaults(turnstile_settings):
    config = started_config(turnstile_settings)
    assert (config.smtp_host, config.smtp_tls, config.reset_token_ttl, config.verify_token_ttl) == ("", "starttls", 1800, 172800)
    assert config.reset_url == "http://localhost:5500/#reset={token}"


def test_the_conventional_names_are_read(turnstile_settings):
    extra = {"SMTP_HOST": "mail.example.com", "SMTP_PORT": "2525", "SMTP_TLS": "TLS", "SMTP_PASSWORD": "s3cret-pass",
             "RESET_TOKEN_TTL": "15m", "VERIFY_TOKEN_TTL": "1d", "RESET_URL": "https://app.example/r/{token}"}
    config = started_config(turnstile_settings.with_changes(extra=extra))
    assert (config.smtp_host, config.smtp_port, config.smtp_tls, config.reset_token_ttl, config.verify_token_ttl) == (
        "mail.example.com", 2525, "tls", 900, 86400)
    assert "s3cret-pass" not in repr(config)


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("SMTP_TLS", "ssl", "SMTP_TLS: expected starttls, tls or none, got 'ssl'"),
        ("RESET_URL", "https://app.example/reset", "RESET_URL: expected an http(s) URL containing {token}"),
        ("VERIFY_URL", "javascript:alert(1)//{token}", "VERIFY_URL: expected an http(s) URL containing {token}"),
        ("RESET_TOKEN_TTL", "soon", "RESET_TOKEN_TTL: expected a duration"),
        ("SMTP_PORT", "smtp", "SMTP_PORT: expected a whole number, got 'smtp'"),
        ("RESET_TOKEN_TTL", "0", "RESET_TOKEN_TTL=0s is too short"),
        ("MAIL_FROM", "Turnstile", "MAIL_FROM='Turnstile' is not an address"),
        ("TURNSTILE_RECOVERY_MAIL_ATTEMPTS", "0", "TURNSTILE_RECOVERY_MAIL_ATTEMPTS must be at least 1"),
        ("TURNSTILE_RECOVERY_MAIL_POLL", "0", "TURNSTILE_RECOVERY_MAIL_POLL must be positive"),
    ],
)
def test_a_bad_value_stops_start_up_naming_it(turnstile_settings, variable, value, expected):
    message = start_error(turnstile_settings.with_changes(extra={variable: value}))
    assert message.startswith("plugin 'recovery' (") and expected in message and "\n" not in message


def test_the_readme_documents_every_setting():
    section = README.read_text().split("## Account recovery", 1)[1].split("\n## ", 1)[0]
    rows = [row.split("|")[1] for row in section.splitlines() if row.startswith("| `")]
    documented = {name.strip(" `") for cell in rows for name in cell.split(",")}
    declared = set()
    for f in dataclasses.fields(Config):
        declared.add(f.metadata.get("env") or f"TURNSTILE_RECOVERY_{f.name.upper()}")
    assert documented == declared
    assert all(re.match(r"^[A-Z_]+$", name) for name in documented)
