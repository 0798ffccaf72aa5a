"""Checking access tokens.

`VerifyJWTMixin` is Turnstile's own check, the Tornado port of the tutorial's
``verifyJWT`` middleware. `JWKSVerifier` and `JWKSAuthMixin` are for other
Tornado services: they check Turnstile's tokens against the public keys it
publishes at ``/.well-known/jwks.json``, and hold no secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import jwt
from tornado import httputil
from tornado.httpclient import AsyncHTTPClient
from tornado.web import RequestHandler

from .errors import APIError
from .signing import ACCESS, TokenInvalid


class VerifyJWTMixin:
    """Checks ``Authorization: Bearer <access token>``.

    No header, or a header that is not ``Bearer``, is 401 (log in first); a
    token that is expired, forged or of the wrong type is 403 (refresh first).
    On success ``self.current_user`` holds the token's claims.
    """

    def authenticate(self) -> dict[str, Any]:
        header = self.request.headers.get("Authorization", "")  # type: ignore[attr-defined]
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "Missing bearer token.", headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = self.services.tokens.verify(ACCESS, token.strip())  # type: ignore[attr-defined]
        except TokenInvalid as exc:
            raise APIError(403, "Invalid or expired access token.", log_message=f"access token refused: {exc}") from None
        self.current_user = claims
        return claims


# -- other services: verify Turnstile's access tokens against its published keys ----------

log = logging.getLogger("turnstile.jwks")

#: The signing algorithms a key set may use; symmetric ones (HS*) and ``none`` are never accepted.
ASYMMETRIC_JWS = ("EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


class KeysUnavailable(TokenInvalid):
    """No key has ever been fetched from the key set: the token cannot be checked yet (a 503, not the caller's fault)."""


def cache_seconds(cache_control: str | None, default: float, floor: float, ceiling: float) -> float:
    """How long to keep a fetched key set: its ``max-age``, else ``default``, kept within [floor, ceiling].

    ``no-store`` or ``no-cache`` count as 0, so the floor applies: a key set is
    never fetched for every request.
    """
    seconds = default
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            seconds = 0
            break
        if name == "max-age":
            try:
                seconds = max(0, int(value.strip().strip('"')))
            except ValueError:
                pass
    return min(max(seconds, floor), ceiling)


class JWKSVerifier:
    """Checks Turnstile access tokens against the public keys Turnstile publishes, holding no secret.

    For another service: it fetches ``jwks_url`` (Turnstile's
    ``/.well-known/jwks.json``) with Tornado's non-blocking client, keeps the
    keys by ``kid`` for the response's ``max-age`` (within ``min_cache`` and
    ``max_cache`` seconds; ``default_cache`` without one), and when a token names
    a ``kid`` it does not know (a key rotated in), fetches once more, so a new
    key works at once. Fetches are rate limited to one per ``refetch_interval``
    seconds, which is all a flood of made-up ``kid`` values can cost, and
    callers waiting at the same moment share one fetch. A failed fetch keeps
    the keys already held.

    The token's header ``alg`` must be the key's own ``alg`` and one of
    ``algorithms``: ``none`` and HS256 (which would take the public key as its
    secret) are refused before any key is used. ``clock`` (seconds, monotonic)
    is there for tests.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        algorithms: Sequence[str] = ("EdDSA", "ES256", "RS256"),
        leeway: float = 0,
        refetch_interval: float = 30.0,
        default_cache: float = 300.0,
        min_cache: float = 30.0,
        max_cache: float = 86400.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        refused = [alg for alg in algorithms if alg not in ASYMMETRIC_JWS]
        if refused or not algorithms:
            raise ValueError(f"algorithms must be asymmetric signing algorithms ({', '.join(ASYMMETRIC_JWS)}); refused: {refused or 'none given'}")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self.default_cache = default_cache
        self.min_cache = min_cache
        self.max_cache = max_cache
        self.timeout = timeout
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until = float("-inf")
        self._last_fetch: float | None = None
        self._inflight: asyncio.Future[None] | None = None

    @property
    def kids(self) -> list[str]:
        """The ``kid`` of every key held now (what a health check may show)."""
        return list(self._keys)

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid Turnstile access token; raises `TokenInvalid` (or `KeysUnavailable`) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenInvalid(type(exc).__name__) from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise TokenInvalid(f"algorithm {str(alg)[:20]!r} not accepted")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid("no kid in the header")
        key = await self._key(kid)
        if key.algorithm_name != alg:
            raise TokenInvalid(f"algorithm {alg} does not match the key's {key.algorithm_name}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "typ", "username"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(type(exc).__name__) from None
        if claims.get("typ") != ACCESS or not isinstance(claims.get("username"), str):
            raise TokenInvalid("not an access token")
        return claims

    async def refresh(self) -> None:
        """Fetch the key set now unless one was fetched within ``refetch_interval`` (say, to warm up at start)."""
        await self._refresh(self._clock())

    async def _key(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        if kid not in self._keys or now >= self._fresh_until:
            await self._refresh(now)
        key = self._keys.get(kid)
        if key is None:
            if not self._keys:
                raise KeysUnavailable("no keys fetched from the key set yet")
            raise TokenInvalid("unknown kid")
        return key

    async def _refresh(self, now: float) -> None:
        """One fetch shared by every caller that waits now; none within ``refetch_interval`` of the last."""
        if self._inflight is None:
            if self._last_fetch is not None and now - self._last_fetch < self.refetch_interval:
                return
            self._last_fetch = now
            self._inflight = asyncio.ensure_future(self._fetch())
        # shield: a caller that gives up (its request cancelled) does not cancel the fetch the others wait on
        await asyncio.shield(self._inflight)

    async def _fetch(self) -> None:
        """Replace the keys with the key set's; on any failure keep them and log why (never raises)."""
        try:
            response = await AsyncHTTPClient().fetch(
                self.jwks_url,
                headers={"Accept": "application/json"},
                connect_timeout=self.timeout,
                request_timeout=self.timeout,
            )
            keys = self._parse(json.loads(response.body))
            self._keys = keys
            self._fresh_until = self._clock() + cache_seconds(
                response.headers.get("Cache-Control"), self.default_cache, self.min_cache, self.max_cache
            )
        except Exception as exc:  # the network, the server, the JSON or the keys: the old keys stay either way
            log.warning("key set %s not fetched, keeping %d keys: %s: %s", self.jwks_url, len(self._keys), type(exc).__name__, exc)
        finally:
            self._inflight = None

    def _parse(self, document: Any) -> dict[str, jwt.PyJWK]:
        """The usable signing keys of a JWKS document by ``kid``; raises if there is none."""
        if not isinstance(document, dict):
            raise ValueError("the key set is not a JSON object")
        keys = {}
        for key in jwt.PyJWKSet.from_dict(document):
            kid = key.key_id
            if isinstance(kid, str) and kid and key.public_key_use in (None, "sig") and key.algorithm_name in self.algorithms:
                keys[kid] = key
        if not keys:
            raise ValueError(f"the key set has no signing key with a kid for {', '.join(self.algorithms)}")
        return keys


_Handler = RequestHandler if TYPE_CHECKING else object


class JWKSAuthMixin(_Handler):
    """Protects every method of a Tornado handler of another service with Turnstile's access tokens.

    ``class Report(JWKSAuthMixin, RequestHandler)``, with a `JWKSVerifier` in the
    application's settings under ``jwks_verifier``. Like Turnstile itself: no
    or a malformed ``Authorization: Bearer`` header is 401 with
    ``WWW-Authenticate: Bearer``; a token that is expired, forged or unknown is
    403; errors are ``{"message": ...}``. Until the key set could be fetched
    once, 503 with ``Retry-After``. On success ``self.current_user`` holds the
    claims (``username``, ``roles``...).
    """

    jwks_verifier_setting: ClassVar[str] = "jwks_verifier"

    async def prepare(self) -> None:
        verifier: JWKSVerifier = self.settings[self.jwks_verifier_setting]
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "Missing bearer token.", headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = await verifier.verify(token)
        except KeysUnavailable as exc:
            retry = str(max(1, int(verifier.refetch_interval)))
            raise APIError(503, "Token keys unavailable; try again shortly.", log_message=str(exc), headers={"Retry-After": retry}) from None
        except TokenInvalid as exc:
            raise APIError(403, "Invalid or expired access token.", log_message=f"access token refused: {exc}") from None
        self.current_user = claims
        parent = super().prepare()
        if parent is not None:
            await parent

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """``{"message": ...}`` for every error, with an `APIError`'s headers; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = None
        if isinstance(exc, APIError):
            message = exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        self.finish({"message": message or httputil.responses.get(status_code, "Error")})
