"""examples/resource-server as a process of its own beside the real Turnstile server: it holds no secret.

Turnstile signs with an asymmetric key (``ACCESS_TOKEN_ALGORITHM``) and
publishes the public keys; the example finds them through
``/.well-known/openid-configuration`` and checks tokens with `core.verify`. A
Turnstile token is accepted; after ``server.py keys rotate --now`` logins get
tokens under a new ``kid`` (once the key is current, seconds later) and both
the old and the new token are accepted; forged tokens are refused.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bench.harness import SERVER, ServerProcess, free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "resource-server" / "app.py"
AUDIENCE = "reports"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def fresh_private_key(alg: str) -> Any:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class ExampleProcess:
    """``python examples/resource-server/app.py`` with nothing in its environment but what it needs."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.port = free_port()
        self.env = {"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1", "PORT": str(self.port), **env}
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "ExampleProcess":
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(EXAMPLE)], cwd=self.root, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.get("/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            assert self.proc.poll() is None, self.proc.communicate()[0]
            assert time.monotonic() < deadline, "the example did not start"
            time.sleep(0.05)

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()

    def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()


def get_json(server: ServerProcess, path: str) -> Any:
    status, _, body = server.request("GET", path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def rotate_now(server: ServerProcess) -> None:
    """``python server.py keys rotate --now`` with the server's environment, while it runs."""
    done = subprocess.run([sys.executable, str(SERVER), "keys", "rotate", "--now"], cwd=server.root, env=server.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def new_kid_login(server: ServerProcess, user: str, old_kid: str, within: float = 15) -> str:
    """The first access token ``user`` gets signed under another key than ``old_kid``.

    ``keys rotate --now`` makes the new key current only once every running
    server has loaded it (a few seconds), so logins are retried until then.
    """
    deadline = time.monotonic() + within
    while True:
        token, _ = server.login_again(user)
        if kid_of(token) != old_kid:
            return token
        assert time.monotonic() < deadline, "logins were still signed with the old key"
        time.sleep(0.25)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_the_example_accepts_turnstile_tokens_across_a_rotation_and_refuses_forgeries(tmp_path, alg):
    turnstile = ServerProcess(tmp_path / "turnstile", ACCESS_TOKEN_ALGORITHM=alg, TOKEN_AUDIENCE=AUDIENCE)
    base = f"http://127.0.0.1:{turnstile.port}"
    turnstile.env["TOKEN_ISSUER"] = base
    with turnstile:
        discovery = get_json(turnstile, "/.well-known/openid-configuration")
        assert discovery == {"issuer": base, "jwks_uri": f"{base}/.well-known/jwks.json"}
        example = ExampleProcess(tmp_path / "example", JWKS_URL=discovery["jwks_uri"], TOKEN_ISSUER=discovery["issuer"],
                                 TOKEN_AUDIENCE=AUDIENCE, JWKS_REFETCH_INTERVAL="1")
        with example:
            # The example holds no secret: none in its environment, no .env where it runs.
            held = Path(f"/proc/{example.proc.pid}/environ").read_bytes()
            for name in ("ACCESS_TOKEN_SECRET", "REFRESH_TOKEN_SECRET"):
                assert turnstile.env[name].encode() not in held and name.encode() not in held
            assert not (example.root / ".env").exists()

            first, _ = turnstile.login("alice")
            claims = jwt.decode(first, options={"verify_signature": False})
            assert jwt.get_unverified_header(first)["alg"] == alg
            assert example.get("/report") == (401, {"message": "Missing bearer token."})
            assert example.get("/report", first) == (200, {"username": "alice", "roles": claims["roles"]})
            fetched_at = time.monotonic()

            refused = {
                "signed with a fresh key under the real kid": jwt.encode(
                    {**claims, "username": "mallory"}, fresh_private_key(alg), algorithm=alg, headers={"kid": kid_of(first)}),
                "alg none under the real kid": jwt.encode(claims, None, algorithm="none", headers={"kid": kid_of(first)}),
                "HS256 with Turnstile's own access secret": jwt.encode(
                    claims, turnstile.env["ACCESS_TOKEN_SECRET"], algorithm="HS256", headers={"kid": kid_of(first)}),
                "the signature of another token": first.rsplit(".", 1)[0] + "." + turnstile.login("bob")[0].rsplit(".", 1)[1],
                "the real token with its username changed": ".".join([
                    first.split(".")[0],
                    base64.urlsafe_b64encode(json.dumps({**claims, "username": "mallory"}).encode()).rstrip(b"=").decode(),
                    first.split(".")[2]]),
            }
            for name, token in refused.items():
                assert example.get("/report", token) == (403, {"message": "Invalid or expired access token."}), name

            rotate_now(turnstile)
            second = new_kid_login(turnstile, "alice", kid_of(first))
            published = get_json(turnstile, "/.well-known/jwks.json")["keys"]
            assert {kid_of(first), kid_of(second)} <= {key["kid"] for key in published}
            assert all(not PRIVATE_MEMBERS & key.keys() and key["use"] == "sig" for key in published)

            time.sleep(max(0.0, fetched_at + 1.1 - time.monotonic()))  # past the example's refetch rate limit
            assert example.get("/report", second) == (200, {"username": "alice", "roles": claims["roles"]})
            assert example.get("/report", first) == (200, {"username": "alice", "roles": claims["roles"]})
            assert example.get("/healthz") == (200, {"status": "ok", "keys": len(published)})
