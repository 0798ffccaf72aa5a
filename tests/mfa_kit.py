"""Helpers for the mfa plugin's TOTP and recovery-code tests: the plugin loaded, codes made, the store read whole.

Until ``plugins/mfa/__init__.py`` exists, `mfa_extra_plugins` loads a stand-in
``mfa`` plugin that wires the routes of ``plugins/mfa/handlers.py`` as the
real one is to; once it exists, the real plugin loads and nothing extra does.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pyotp
from plugin_kit import PROJECT

STAND_IN = """
from core.plugin import PluginContext

from plugins.mfa.handlers import MFAStatusHandler, RecoveryCodesHandler, TOTPConfirmHandler, TOTPHandler
from plugins.mfa.totp import TOTPFactor


def routes(plugin: PluginContext) -> list:
    settings = plugin.settings
    totp = TOTPFactor(plugin.services.accounts, plugin.db, plugin.secret_box("totp"), "Turnstile")
    options = {"totp": totp, "throttle": plugin.throttle(settings.login_failure_window, settings.login_lockout)}
    return [
        (r"/mfa", MFAStatusHandler, options),
        (r"/mfa/totp", TOTPHandler, options),
        (r"/mfa/totp/confirm", TOTPConfirmHandler, options),
        (r"/mfa/recovery-codes", RecoveryCodesHandler, options),
    ]
"""


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mfa_extra_plugins(root: Path) -> dict[str, Path]:
    """``extra_plugins`` for the tests: the stand-in ``mfa`` in ``root`` while the real plugin has no ``__init__.py``."""
    if (PROJECT / "plugins" / "mfa" / "__init__.py").is_file():
        return {}
    folder = root / "mfa"
    if not folder.exists():
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text(textwrap.dedent(STAND_IN))
    return {"mfa": folder}


def code_at(secret: str, when: float | None = None) -> str:
    """The TOTP code of ``secret`` at ``when`` (now by default)."""
    return pyotp.TOTP(secret).at(time.time() if when is None else when)


def secret_of(uri: str) -> str:
    """The base32 secret in an otpauth URI."""
    return pyotp.parse_uri(uri).secret


async def store_dump(store: Any) -> str:
    """Every document of every collection, as one JSON text: what a copy of the database would show."""
    out = {}
    for name in await store.collections():
        out[name] = await store.collection(name).items()
    return json.dumps(out, default=str)


def data_files_text(data_dir: Path) -> str:
    """Every file under ``DATA_DIR`` (the JSON backend's data), as text."""
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(Path(data_dir).rglob("*")) if p.is_file())
