"""Account recovery through the demo client in a real Chromium, following the links the server mails.

The API runs with no SMTP_HOST, so each mail lands as an ``.eml`` file in ``LOG_DIR/outbox``;
RESET_URL and VERIFY_URL point at this test's demo page (with ``?api=`` so a freshly opened link
talks to this test's API). The walk: register with an address, send the verification link, open it,
see "verified"; sign out, ask for a reset by username, open the mailed link, choose a new password;
the new password logs in and the old one is refused. Mail is sent in the background, so the outbox
is polled. The helpers and the browser fixtures are test_demo_browser's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

import pytest

from test_demo_browser import (  # noqa: F401 (playwright and browser are fixtures)
    PASSWORD,
    Calls,
    api_server,
    assert_nothing_readable,
    browser,
    browser_fetch,
    click,
    demo_server,
    free_port,
    open_demo,
    playwright,
)

from playwright.sync_api import BrowserContext, Page  # noqa: E402 (after the import that skips without Chromium)

NEW_PASSWORD = "heisenberg-blue-99"
ADDRESS = "gus@example.com"


@dataclass
class Site:
    api: str
    origin: str
    outbox: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A demo server and an API whose mailed links lead back to that demo page and that API."""
    workdir = tmp_path_factory.mktemp("recovery")
    with demo_server(workdir) as demo_port:
        origin = f"http://localhost:{demo_port}"
        port = free_port()
        api = f"http://localhost:{port}"
        page = f"{origin}/?api={api}"
        extra = {
            "RESET_URL": page + "#reset={token}",
            "VERIFY_URL": page + "#verify={token}",
            "ACCESS_TOKEN_TTL": "10m",  # no refresh mid-walk: the call lists below stay exact
        }
        with api_server(workdir / "api", [origin], port=port, extra=extra) as served:
            assert served == api
            yield Site(api, origin, workdir / "api" / "logs" / "outbox")


def act(page: Page, selector: str) -> str:
    """Click, then wait for the status line (blanked first) to say something; return what it says."""
    page.evaluate("document.getElementById('message').textContent = ''")
    page.click(selector)
    page.wait_for_function("document.getElementById('message').textContent !== ''")
    return page.inner_text("#message")


def open_link(context: BrowserContext, link: str, api: str) -> tuple[Page, Calls]:
    """A mailed link opened in a new tab, as a mail client would: a fresh page load, not a fragment change."""
    page = context.new_page()
    calls = Calls(page, api)
    page.goto(link)
    page.wait_for_selector("body[data-ready=true]")
    return page, calls


def mails(outbox: Path) -> set[Path]:
    return set(outbox.glob("*.eml")) if outbox.is_dir() else set()


def next_mail(outbox: Path, seen: set[Path], kind: str) -> tuple[EmailMessage, str]:
    """The mail that arrives after ``seen`` and the link in it that holds ``#kind=``, polling (it is sent in the background)."""
    deadline = time.monotonic() + 15
    while True:
        for path in sorted(mails(outbox) - seen, key=lambda p: p.stat().st_mtime, reverse=True):
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            body = mail.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""
            links = [line.strip() for line in text.splitlines() if f"#{kind}=" in line]
            if links:  # else the file may still be being written
                assert len(links) == 1, text
                return mail, links[0]
        assert time.monotonic() < deadline, f"no {kind} mail in {outbox}: {sorted(mails(outbox))}"
        time.sleep(0.1)


def test_verify_and_reset_by_mailed_links(site: Site, browser: BrowserContext) -> None:
    """Register with an address, verify it and reset a forgotten password, each through the link in its mail."""
    page, calls = open_demo(browser, site.origin, site.api)
    here = page.url
    page.fill("#user", "gus")
    page.fill("#pwd", PASSWORD)
    page.fill("#email", ADDRESS)
    click(page, "#register", "Registered gus")
    assert calls.since_mark() == [("POST", "/register", 201)]

    click(page, "#login", "Loaded 2 employees")
    assert calls.since_mark() == [("POST", "/auth", 200), ("GET", "/email", 200), ("GET", "/employees", 200)]
    assert page.is_visible("#email-panel")
    assert page.inner_text("#email-status") == f"{ADDRESS} (not verified)"

    # Verification: the link is opened in this page, where only the fragment changes.
    seen = mails(site.outbox)
    act(page, "#email-verify")
    assert calls.since_mark() == [("POST", "/email/verify-request", 202)]
    mail, link = next_mail(site.outbox, seen, "verify")
    assert mail["To"] == ADDRESS
    assert link.startswith(here + "#verify=")
    token = link.split("#verify=", 1)[1]
    page.goto(link)
    page.wait_for_function("document.getElementById('email-status').textContent.endsWith('(verified)')")
    assert page.inner_text("#message") == "Email address verified."
    assert calls.since_mark() == [("POST", "/email/verify", 204), ("GET", "/email", 200)]
    assert page.evaluate("location.href") == here  # the token is out of the address bar
    assert page.inner_text("#email-status") == f"{ADDRESS} (verified)"
    assert page.is_disabled("#email-verify")
    assert token not in page.content()

    # The same link again, opened fresh in a new tab: the server refuses a used token, and the page says why.
    again, again_calls = open_link(browser, link, site.api)
    again.wait_for_function("document.getElementById('message').className === 'fail'")
    assert again_calls.since_mark() == [("POST", "/email/verify", 400)]
    assert again.inner_text("#message")
    assert again.evaluate("location.href") == here
    again.close()

    click(page, "#logout", "Logged out")
    assert page.is_hidden("#email-panel")

    # Forgot password: the answer is the same for an unknown name as for a real one.
    page.click("#forgot-open")
    page.fill("#forgot-who", "nobody-here")
    neutral = act(page, "#forgot-send")
    seen = mails(site.outbox)
    page.click("#forgot-open")
    page.fill("#forgot-who", "gus")
    assert act(page, "#forgot-send") == neutral
    assert calls.since_mark() == [("GET", "/logout", 204), ("POST", "/password/forgot", 202), ("POST", "/password/forgot", 202)]
    assert page.is_hidden("#forgot")
    mail, link = next_mail(site.outbox, seen, "reset")
    assert mail["To"] == ADDRESS
    assert link.startswith(here + "#reset=")
    token = link.split("#reset=", 1)[1]

    # A session left open elsewhere, which the reset must end.
    other, _ = open_demo(browser, site.origin, site.api)
    other.fill("#user", "gus")
    other.fill("#pwd", PASSWORD)
    click(other, "#login", "Loaded 2 employees")
    assert browser_fetch(other, site.api + "/refresh") == 200

    # The reset link, opened fresh as from a mail client.
    reset, reset_calls = open_link(browser, link, site.api)
    reset.wait_for_selector("#reset:not([hidden])")
    assert reset.evaluate("location.href") == here
    assert token not in reset.content()
    reset.fill("#new-pwd", NEW_PASSWORD)
    click(reset, "#reset-send", "Password changed")
    assert reset_calls.since_mark() == [("POST", "/password/reset", 204)]
    assert reset.is_hidden("#reset")
    assert browser_fetch(other, site.api + "/refresh") in (401, 403)  # every session ended

    reset.fill("#user", "gus")
    reset.fill("#pwd", PASSWORD)
    refused = act(reset, "#login")
    assert reset_calls.since_mark() == [("POST", "/auth", 401)], refused
    assert reset.inner_text("#session") == "Signed out"

    reset.fill("#pwd", NEW_PASSWORD)
    click(reset, "#login", "Loaded 2 employees")
    assert reset_calls.since_mark() == [("POST", "/auth", 200), ("GET", "/email", 200), ("GET", "/employees", 200)]
    assert reset.inner_text("#session").startswith("Signed in as gus")
    assert reset.inner_text("#email-status") == f"{ADDRESS} (verified)"
    for p in (page, reset):
        assert_nothing_readable(p)


def test_address_refusals_are_shown(site: Site, browser: BrowserContext) -> None:
    """A malformed address, or a wrong current password in the Email panel, gets the API's own message on the page;
    an address another account has is no refusal (an unverified address claims nothing, and nothing says who has one)."""
    page, calls = open_demo(browser, site.origin, site.api)
    page.fill("#user", "marie")
    page.fill("#pwd", PASSWORD)
    page.fill("#email", "marie@example.com")
    click(page, "#register", "Registered marie")

    page.fill("#user", "hank")
    page.fill("#email", "hank@")
    malformed = act(page, "#register")
    assert calls.since_mark() == [("POST", "/register", 201), ("POST", "/register", 400)]
    assert page.get_attribute("#message", "class") == "fail" and "Invalid email address" in malformed

    page.fill("#email", "")
    click(page, "#register", "Registered hank")
    click(page, "#login", "Loaded 2 employees")
    assert page.inner_text("#email-status") == "No address on this account yet."
    assert page.is_disabled("#email-verify")
    page.fill("#email-new", "hank@example.com")
    page.fill("#email-pwd", "not the password")
    wrong = act(page, "#email-save")
    assert "Current password is incorrect." in wrong and page.input_value("#email-pwd") == ""
    page.fill("#email-pwd", PASSWORD)
    click(page, "#email-save", "Address saved")
    assert calls.since_mark() == [
        ("POST", "/register", 201),
        ("POST", "/auth", 200),
        ("GET", "/email", 200),
        ("GET", "/employees", 200),
        ("PUT", "/email", 400),
        ("PUT", "/email", 200),
    ]
    assert page.inner_text("#email-status") == "hank@example.com (not verified)"
    assert page.is_enabled("#email-verify")
