"""A separate service that accepts Turnstile's access tokens while holding no secret.

It knows only where Turnstile publishes its public keys (``JWKS_URL``), and
checks every token against them with `core.verify`::

    JWKS_URL=http://127.0.0.1:3500/.well-known/jwks.json PORT=3600 python examples/resource-server/app.py

Environment: ``JWKS_URL`` (required), ``PORT`` (3600), ``HOST`` (127.0.0.1),
``TOKEN_ISSUER`` and ``TOKEN_AUDIENCE`` (set them to what Turnstile has),
``TOKEN_LEEWAY`` (seconds of clock skew allowed on ``exp``; 0),
``JWKS_REFETCH_INTERVAL`` (at most one fetch of the key set per this many
seconds for an unknown ``kid``; 30).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

# Run from a checkout, this checkout's core.verify is the one used; installed, the package's.
ROOT = Path(__file__).resolve().parents[2]
if (ROOT / "core" / "verify.py").is_file():
    sys.path.insert(0, str(ROOT))

from tornado.web import Application, RequestHandler  # noqa: E402

from core.verify import JWKSAuthMixin, JWKSVerifier  # noqa: E402


class ReportHandler(JWKSAuthMixin, RequestHandler):
    """A protected route: who is calling, as Turnstile's token says."""

    def get(self) -> None:
        claims: dict[str, Any] = self.current_user
        self.set_header("Cache-Control", "no-store")
        self.finish({"username": claims["username"], "roles": claims.get("roles", [])})


class HealthHandler(RequestHandler):
    """Public: the service is up (and how many of Turnstile's keys it holds; 0 before the first token)."""

    def get(self) -> None:
        self.finish({"status": "ok", "keys": len(self.settings["jwks_verifier"].kids)})


def make_app(verifier: JWKSVerifier) -> Application:
    return Application([("/report", ReportHandler), ("/healthz", HealthHandler)], jwks_verifier=verifier)


def verifier_from_environment(env: dict[str, str]) -> JWKSVerifier:
    """The verifier the environment describes; `SystemExit` with one line when it is incomplete."""
    jwks_url = env.get("JWKS_URL", "").strip()
    if not jwks_url:
        raise SystemExit("resource-server: set JWKS_URL to Turnstile's key set, e.g. http://127.0.0.1:3500/.well-known/jwks.json")
    seconds = {}
    for name, default in (("JWKS_REFETCH_INTERVAL", "30"), ("TOKEN_LEEWAY", "0")):
        try:
            seconds[name] = float(env.get(name, default))
        except ValueError:
            raise SystemExit(f"resource-server: {name} must be a number of seconds") from None
    return JWKSVerifier(
        jwks_url,
        issuer=env.get("TOKEN_ISSUER") or None,
        audience=env.get("TOKEN_AUDIENCE") or None,
        refetch_interval=seconds["JWKS_REFETCH_INTERVAL"],
        leeway=seconds["TOKEN_LEEWAY"],
    )


async def main() -> None:
    # Tornado's access and warning lines (a refused token's reason, a failed key set fetch); never a token.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    verifier = verifier_from_environment(dict(os.environ))
    if not os.environ.get("PORT", "3600").isdigit():
        raise SystemExit("resource-server: PORT must be a port number")
    port = int(os.environ.get("PORT", "3600"))
    server = make_app(verifier).listen(port, address=os.environ.get("HOST", "127.0.0.1"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Resource server on port {port}, checking tokens against {verifier.jwks_url}", flush=True)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
