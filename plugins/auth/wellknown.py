"""The public key set and the discovery document, so other services verify access tokens with no secret.

``GET /.well-known/jwks.json`` publishes the public part of every key that may
sign or may have signed a live access token (next, current and retired keys of
the keyring; nothing with HS256). It may be cached for ``JWKS_MAX_AGE``: a
staged key is published that long before it signs, so no cache misses it.
``GET /.well-known/openid-configuration`` names the issuer and where the key set
is, and nothing more: Turnstile is not an OpenID provider.
"""

from __future__ import annotations

from typing import Any

from core.plugin import BaseHandler, json_response, public

JWK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kid", "kty", "alg", "use"],
    "properties": {
        "kid": {"type": "string"},
        "kty": {"type": "string", "enum": ["OKP", "EC", "RSA"]},
        "alg": {"type": "string", "enum": ["EdDSA", "ES256", "RS256"]},
        "use": {"type": "string", "enum": ["sig"]},
    },
}


class CacheableHandler(BaseHandler):
    """Public documents every client may cache for ``JWKS_MAX_AGE`` (and revalidate with the ``Etag``)."""

    cache_control = None

    def send_cacheable(self, data: Any) -> None:
        self.set_header("Cache-Control", f"public, max-age={self.services.settings.jwks_max_age}")
        self.send_json(data)


@public
class JWKSHandler(CacheableHandler):
    openapi = {
        "get": {
            "summary": "The public keys that verify access tokens (RFC 7517), by `kid`; empty with HS256.",
            "security": [],
            "responses": {
                "200": json_response(
                    "The key set", {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": JWK_SCHEMA}}}
                )
            },
        }
    }

    def get(self) -> None:
        self.send_cacheable(self.services.keyring.jwks())


@public
class DiscoveryHandler(CacheableHandler):
    openapi = {
        "get": {
            "summary": "Where the key set is (`jwks_uri`) and, when `TOKEN_ISSUER` is set, the `issuer` tokens carry.",
            "security": [],
            "responses": {
                "200": json_response(
                    "Discovery",
                    {"type": "object", "required": ["jwks_uri"], "properties": {"issuer": {"type": "string"}, "jwks_uri": {"type": "string"}}},
                )
            },
        }
    }

    def get(self) -> None:
        issuer = self.services.settings.token_issuer
        if issuer.startswith(("https://", "http://")):
            base = issuer.rstrip("/")
        else:
            base = f"{self.request.protocol}://{self.request.host}"
        document = {"jwks_uri": base + "/.well-known/jwks.json"}
        if issuer:
            document = {"issuer": issuer, **document}
        self.send_cacheable(document)
