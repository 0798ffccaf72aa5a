"""Second factors and passkeys: TOTP (RFC 6238), recovery codes and WebAuthn passkeys, through the sign-in extension point.

The factors live on the user record (``factors``: TOTP secret sealed, recovery
codes and passkeys' public keys), so they go with the user and ``user
mfa-reset`` removes them all. This plugin's own collections hold what is in
flight: TOTP enrolments (``mfa.enrolments``), sign-ins waiting for a second
factor (``mfa.pending``), WebAuthn challenges (``mfa.challenges``) and the
index of passkeys by credential id (``mfa.credentials``).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.plugin import PluginContext, duration, setting

from .handlers import MFAStatusHandler, RecoveryCodesHandler, TOTPConfirmHandler, TOTPHandler
from .passkey_handlers import CredentialHandler, LoginHandler, LoginOptionsHandler, RegisterHandler, RegisterOptionsHandler
from .passkeys import Passkeys
from .signin import PendingSignIns, SecondStepHandler, sign_in_step
from .totp import TOTPFactor

PRUNE_EVERY = 600  # seconds between sweeps of expired sign-ins, enrolments and challenges


@dataclass(frozen=True)
class Config:
    """TOTP and WebAuthn settings keep the names the issue gives them; the rest are ``TURNSTILE_MFA_*``."""

    totp_issuer: str = setting("Turnstile", env="TOTP_ISSUER", doc="the issuer an authenticator app shows")
    webauthn_rp_id: str = setting("localhost", env="WEBAUTHN_RP_ID", doc="the relying party: the site's domain")
    webauthn_rp_name: str = setting("Turnstile", env="WEBAUTHN_RP_NAME")
    webauthn_origins: tuple[str, ...] = setting((), env="WEBAUTHN_ORIGINS", doc="default: ALLOWED_ORIGINS and the server's own")
    token_ttl: int = setting(300, parse=duration, doc="how long an mfaToken lasts")
    token_tries: int = setting(5, doc="tries an mfaToken allows")


def origins(plugin: PluginContext) -> list[str]:
    """Where a WebAuthn ceremony may come from: ``WEBAUTHN_ORIGINS``, else ``ALLOWED_ORIGINS`` and the server itself."""
    config: Config = plugin.config
    if config.webauthn_origins:
        return list(config.webauthn_origins)
    own = f"http://localhost:{plugin.settings.port}"
    return [*plugin.settings.allowed_origins, *([own] if own not in plugin.settings.allowed_origins else [])]


def routes(plugin: PluginContext) -> list:
    config: Config = plugin.config
    settings = plugin.settings
    accounts = plugin.services.accounts
    throttle = plugin.throttle(settings.login_failure_window, settings.login_lockout)
    totp = TOTPFactor(accounts, plugin.db, plugin.secret_box("totp"), config.totp_issuer)
    passkeys = Passkeys(accounts, plugin.db, config.webauthn_rp_id, config.webauthn_rp_name, origins(plugin))
    pending = PendingSignIns(plugin.db, config.token_ttl, config.token_tries)
    plugin.sign_in_step(sign_in_step(pending))
    factor = {"totp": totp, "throttle": throttle}
    keys = {"passkeys": passkeys, "throttle": throttle}
    return [
        (r"/auth/mfa", SecondStepHandler, {"pending": pending, "totp": totp, "passkeys": passkeys, "throttle": throttle}),
        (r"/mfa", MFAStatusHandler, factor),
        (r"/mfa/totp", TOTPHandler, factor),
        (r"/mfa/totp/confirm", TOTPConfirmHandler, factor),
        (r"/mfa/recovery-codes", RecoveryCodesHandler, factor),
        (r"/webauthn/register/options", RegisterOptionsHandler, keys),
        (r"/webauthn/register", RegisterHandler, keys),
        (r"/webauthn/login/options", LoginOptionsHandler, {**keys, "pending": pending}),
        (r"/webauthn/login", LoginHandler, keys),
        (r"/webauthn/credentials/([^/]+)", CredentialHandler, keys),
    ]


async def setup(plugin: PluginContext) -> None:
    """Prune what expired (sign-ins waiting for a factor, enrolments, challenges) now and periodically."""
    config: Config = plugin.config
    pending = PendingSignIns(plugin.db, config.token_ttl, config.token_tries)
    totp = TOTPFactor(plugin.services.accounts, plugin.db, plugin.secret_box("totp"), config.totp_issuer)
    passkeys = Passkeys(plugin.services.accounts, plugin.db, config.webauthn_rp_id, config.webauthn_rp_name, origins(plugin))

    throttle = plugin.throttle(plugin.settings.login_failure_window, plugin.settings.login_lockout)

    async def prune() -> None:
        await pending.prune()
        await totp.prune()
        await passkeys.prune()
        await throttle.prune()

    await prune()
    plugin.every(PRUNE_EVERY, prune, "pruning expired sign-ins, enrolments and challenges")
