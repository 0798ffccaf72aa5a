"""Second factors through the demo client in a real Chromium: an authenticator app (TOTP), recovery codes and passkeys.

The page is on ``http://localhost:<port>``, since passkeys are bound to the RP ID ``localhost`` (the
API's default). Passkeys come from Chromium's virtual authenticator, driven through the CDP
``WebAuthn`` domain: a platform authenticator with resident keys that verifies its user, so no
prompt waits for a person. TOTP codes are computed here with pyotp from the secret the page shows,
as an authenticator app would. The API runs with a 10 minute access token, so no refresh happens
mid-walk and the call lists stay exact. The helpers and the browser fixtures are test_demo_browser's.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pyotp
import pytest

from test_demo_browser import (  # noqa: F401 (playwright and browser are fixtures)
    PASSWORD,
    Calls,
    api_server,
    assert_nothing_readable,
    browser,
    click,
    demo_server,
    open_demo,
    playwright,
    refresh_cookies,
)

from test_demo_recovery_browser import act  # noqa: E402
from playwright.sync_api import BrowserContext, CDPSession, Page  # noqa: E402 (after the import that skips without Chromium)

RECOVERY_CODE = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")
SIGNED_IN = [("GET", "/email", 200), ("GET", "/employees", 200)]


@dataclass
class Site:
    api: str
    origin: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A demo server on localhost and an API that allows it (and so takes passkeys made on it)."""
    workdir = tmp_path_factory.mktemp("mfa")
    with demo_server(workdir) as demo_port:
        origin = f"http://localhost:{demo_port}"
        with api_server(workdir / "api", [origin], extra={"ACCESS_TOKEN_TTL": "10m"}) as api:
            yield Site(api, origin)


def add_authenticator(page: Page) -> tuple[CDPSession, str]:
    """A virtual platform authenticator for this page: resident keys, user verification, no prompt."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def claims(bearer: str | None) -> dict[str, Any]:
    """The payload of the access token in an ``Authorization`` header, decoded without checking it."""
    assert bearer and bearer.startswith("Bearer ")
    payload = bearer.removeprefix("Bearer ").split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def wrong_code(secret: str) -> str:
    """A 6-digit code that no step near now accepts."""
    totp = pyotp.TOTP(secret)
    return next(c for c in ("000000", "111111", "222222", "333333") if not totp.verify(c, valid_window=2))


def sign_up(page: Page, calls: Calls, user: str) -> None:
    page.fill("#user", user)
    page.fill("#pwd", PASSWORD)
    click(page, "#register", f"Registered {user}")
    click(page, "#login", "Loaded 2 employees")
    assert calls.since_mark() == [("POST", "/register", 201), ("POST", "/auth", 200), *SIGNED_IN]
    assert claims(calls.bearers[-1])["amr"] == ["pwd"]


def open_panel(page: Page, calls: Calls, status: str) -> None:
    """Open the Two-factor panel (it loads GET /mfa) and wait for its status line."""
    page.click("#mfa-panel summary")
    page.wait_for_function("t => document.getElementById('mfa-status').textContent === t", arg=status)
    assert calls.since_mark() == [("GET", "/mfa", 200)]


def turn_on_totp(page: Page, calls: Calls) -> tuple[str, list[str]]:
    """Set up the authenticator app from the page, just signed in (so no password is asked again; a wrong code
    first): the secret, and the recovery codes shown."""
    open_panel(page, calls, "Authenticator app: off.")
    assert page.is_visible("#totp-setup") and page.is_hidden("#totp-off") and page.is_hidden("#codes-new")
    assert page.is_hidden("#mfa-pwd")  # a sign-in moments ago: adding a factor needs nothing more
    click(page, "#totp-setup", "Scan the QR code")
    assert page.get_attribute("#totp-qr", "src").startswith("data:image/svg+xml")
    assert page.evaluate("document.getElementById('totp-qr').naturalWidth") > 100  # the QR code renders
    secret = page.inner_text("#totp-secret")
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret

    page.fill("#totp-code", wrong_code(secret))
    refused = act(page, "#totp-confirm")
    assert "Wrong or already used code." in refused and page.get_attribute("#message", "class") == "fail"
    assert page.is_visible("#totp-enrol") and page.is_hidden("#recovery")

    page.fill("#totp-code", pyotp.TOTP(secret).now())
    click(page, "#totp-confirm", "Save the recovery codes now")
    assert calls.since_mark() == [
        ("POST", "/mfa/totp", 200),
        ("POST", "/mfa/totp/confirm", 400),
        ("POST", "/mfa/totp/confirm", 200),
        ("GET", "/mfa", 200),
    ]
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10 and all(RECOVERY_CODE.match(c) for c in codes), codes
    assert page.inner_text("#mfa-status") == "Authenticator app: on, 10 recovery codes left."
    assert page.is_hidden("#totp-enrol") and page.is_hidden("#totp-setup")
    assert secret not in page.content()  # the secret leaves the page once the app has it

    page.click("#recovery-done")
    assert page.is_hidden("#recovery") and not any(c in page.content() for c in codes)
    return secret, codes


def log_out(page: Page, calls: Calls, browser: BrowserContext, api: str) -> None:
    click(page, "#logout", "Logged out")
    assert calls.since_mark() == [("GET", "/logout", 204)]
    assert refresh_cookies(browser, api) == []
    assert page.inner_text("#session") == "Signed out"
    assert page.is_hidden("#mfa-panel") and page.is_hidden("#mfa-step")


def password_step(page: Page, calls: Calls, browser: BrowserContext, api: str, user: str) -> None:
    """Log in with the password: the page asks for the second factor, and nothing is signed in yet."""
    page.fill("#user", user)
    page.fill("#pwd", PASSWORD)
    click(page, "#login", "Password accepted")
    assert calls.since_mark() == [("POST", "/auth", 200)]
    assert page.is_visible("#mfa-step")
    assert page.inner_text("#session") == "Signed out"
    assert refresh_cookies(browser, api) == []  # no cookie before the second factor
    assert page.input_value("#pwd") == ""
    assert_nothing_readable(page)


def test_app_code_and_passkeys(site: Site, browser: BrowserContext) -> None:
    """TOTP on, a code at sign-in; a passkey added, then a sign-in with no password, then as the second factor."""
    page, calls = open_demo(browser, site.origin, site.api)
    cdp, authenticator = add_authenticator(page)
    sign_up(page, calls, "saul")
    secret, _ = turn_on_totp(page, calls)
    log_out(page, calls, browser, site.api)

    # The code step: a wrong code gets the API's message and the step stays; the next step's code signs in
    # (the one that confirmed the set-up is spent: no code is taken twice).
    password_step(page, calls, browser, site.api, "saul")
    assert page.is_visible("#mfa-code") and page.is_hidden("#mfa-passkey")  # no passkey yet
    page.fill("#mfa-code", wrong_code(secret))
    refused = act(page, "#mfa-verify")
    assert calls.since_mark() == [("POST", "/auth/mfa", 401)]
    assert page.get_attribute("#message", "class") == "fail" and refused == "Wrong code."
    assert page.is_visible("#mfa-step") and page.inner_text("#session") == "Signed out"
    page.fill("#mfa-code", pyotp.TOTP(secret).at(time.time() + 30))
    click(page, "#mfa-verify", "Loaded 2 employees")
    assert calls.since_mark() == [("POST", "/auth/mfa", 200), *SIGNED_IN]
    assert page.inner_text("#session").startswith("Signed in as saul")
    assert page.is_hidden("#mfa-step")
    assert claims(calls.bearers[-1])["amr"] == ["pwd", "otp", "mfa"]
    assert len(refresh_cookies(browser, site.api)) == 1
    assert_nothing_readable(page)

    # A passkey, named, from the virtual authenticator.
    open_panel(page, calls, "Authenticator app: on, 10 recovery codes left.")
    assert page.inner_text("#passkeys") == "No passkeys yet."
    assert page.is_hidden("#mfa-pwd")  # a recent sign-in: no password asked to add one
    page.fill("#passkey-name", "Work laptop")
    click(page, "#passkey-add", 'Passkey "Work laptop" added')
    assert calls.since_mark() == [("POST", "/webauthn/register/options", 200), ("POST", "/webauthn/register", 201), ("GET", "/mfa", 200)]
    (listed,) = page.locator("#passkeys li").all_inner_texts()
    assert listed.startswith("Work laptop") and "not used yet" in listed
    (stored,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert stored["isResidentCredential"] and stored["rpId"] == "localhost"
    log_out(page, calls, browser, site.api)

    # Passwordless: no username, no password typed.
    page.fill("#user", "")
    click(page, "#passkey-login", "Loaded 2 employees")
    assert calls.since_mark() == [("POST", "/webauthn/login/options", 200), ("POST", "/webauthn/login", 200), *SIGNED_IN]
    assert page.inner_text("#session").startswith("Signed in as saul")
    token = claims(calls.bearers[-1])
    assert token["username"] == "saul" and token["amr"] in (["hwk", "user"], ["swk", "user"])
    assert len(refresh_cookies(browser, site.api)) == 1
    assert_nothing_readable(page)
    log_out(page, calls, browser, site.api)

    # The passkey as the second factor, after the password.
    password_step(page, calls, browser, site.api, "saul")
    assert page.is_visible("#mfa-passkey") and page.is_visible("#mfa-code")
    click(page, "#mfa-passkey", "Loaded 2 employees")
    assert calls.since_mark() == [("POST", "/webauthn/login/options", 200), ("POST", "/auth/mfa", 200), *SIGNED_IN]
    assert claims(calls.bearers[-1])["amr"] in (["pwd", "hwk", "user", "mfa"], ["pwd", "swk", "user", "mfa"])
    assert page.inner_text("#session").startswith("Signed in as saul")

    # Removed: the authenticator still holds the key, but the API no longer takes it, and the page says so.
    open_panel(page, calls, "Authenticator app: on, 10 recovery codes left.")
    page.wait_for_selector("#passkeys li .remove")
    assert "last used" in page.inner_text("#passkeys li")
    click(page, "#passkeys li .remove", 'Passkey "Work laptop" removed')
    credential_id = base64.urlsafe_b64encode(base64.b64decode(stored["credentialId"])).rstrip(b"=").decode()
    assert calls.since_mark() == [("DELETE", f"/webauthn/credentials/{credential_id}", 204), ("GET", "/mfa", 200)]
    assert page.inner_text("#passkeys") == "No passkeys yet."
    log_out(page, calls, browser, site.api)
    refused = act(page, "#passkey-login")
    assert calls.since_mark() == [("POST", "/webauthn/login/options", 200), ("POST", "/webauthn/login", 401)]
    assert page.get_attribute("#message", "class") == "fail" and refused == "Passkey sign-in failed."
    assert page.inner_text("#session") == "Signed out"
    assert refresh_cookies(browser, site.api) == []


def test_recovery_codes_and_turning_off(site: Site, browser: BrowserContext) -> None:
    """A recovery code signs in once; new codes void the old ones; turning the app off needs a code, then the password is enough."""
    page, calls = open_demo(browser, site.origin, site.api)
    sign_up(page, calls, "kim")
    secret, codes = turn_on_totp(page, calls)
    log_out(page, calls, browser, site.api)

    password_step(page, calls, browser, site.api, "kim")
    page.fill("#mfa-code", codes[0])
    click(page, "#mfa-verify", "Loaded 2 employees")
    assert calls.since_mark() == [("POST", "/auth/mfa", 200), *SIGNED_IN]
    assert claims(calls.bearers[-1])["amr"] == ["pwd", "otp", "mfa"]
    open_panel(page, calls, "Authenticator app: on, 9 recovery codes left.")

    # New recovery codes: a used code is refused with the API's message, an unused one works.
    page.click("#codes-new")
    assert page.is_visible("#mfa-ask") and page.inner_text("#mfa-ask-send") == "Make new codes"
    page.fill("#mfa-ask-code", codes[0])
    refused = act(page, "#mfa-ask-send")
    assert "Wrong or already used code." in refused and page.is_hidden("#recovery")
    page.fill("#mfa-ask-code", codes[1])
    click(page, "#mfa-ask-send", "New recovery codes")
    assert calls.since_mark() == [("POST", "/mfa/recovery-codes", 400), ("POST", "/mfa/recovery-codes", 200), ("GET", "/mfa", 200)]
    fresh = page.locator("#recovery-codes li").all_inner_texts()
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    assert page.inner_text("#mfa-status") == "Authenticator app: on, 10 recovery codes left."
    assert page.is_hidden("#mfa-ask")

    # Turning the app off takes a code too: an old-set recovery code no longer does it, a fresh one does.
    page.click("#totp-off")
    assert page.inner_text("#mfa-ask-send") == "Turn off"
    page.fill("#mfa-ask-code", codes[2])
    assert "Wrong or already used code." in act(page, "#mfa-ask-send")
    page.fill("#mfa-ask-code", fresh[0])
    click(page, "#mfa-ask-send", "The authenticator app is off")
    assert calls.since_mark() == [("DELETE", "/mfa/totp", 400), ("DELETE", "/mfa/totp", 204), ("GET", "/mfa", 200)]
    assert page.inner_text("#mfa-status") == "Authenticator app: off."
    assert page.is_hidden("#recovery") and page.is_visible("#totp-setup")
    log_out(page, calls, browser, site.api)

    page.fill("#user", "kim")
    page.fill("#pwd", PASSWORD)
    click(page, "#login", "Loaded 2 employees")  # the password alone again
    assert calls.since_mark() == [("POST", "/auth", 200), *SIGNED_IN]
    assert claims(calls.bearers[-1])["amr"] == ["pwd"]
    assert page.is_hidden("#mfa-step")
    assert_nothing_readable(page)
