"""Secrets at rest: sealed under a key derived from a server secret; a copy of the store alone opens nothing."""

import secrets

import jwt
import pytest

from core.app import create_app
from core.keyring import COLLECTION
from core.secretbox import SealBroken, SecretBox
from core.signing import ACCESS


def test_sealed_values_open_only_with_the_same_secret_and_purpose():
    secret = secrets.token_hex(32)
    sealed = SecretBox(secret, "signing-keys").seal(b"private material")
    assert b"private material" not in sealed.encode()
    assert SecretBox(secret, "signing-keys").open(sealed) == b"private material"
    for other in (SecretBox(secrets.token_hex(32), "signing-keys"), SecretBox(secret, "totp")):
        with pytest.raises(SealBroken):
            other.open(sealed)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    for broken in (tampered, "not sealed at all", "ü"):
        with pytest.raises(SealBroken):
            SecretBox(secret, "signing-keys").open(broken)


def test_two_seals_of_one_value_differ():
    box = SecretBox(secrets.token_hex(32), "p")
    assert box.seal(b"x") != box.seal(b"x")


@pytest.mark.settings(access_algorithm="EdDSA")
@pytest.mark.gen_test
async def test_the_store_without_the_secret_cannot_sign(app, turnstile_settings, caplog):
    """An instance on the same data with another ACCESS_TOKEN_SECRET cannot use the stored key: it makes its own."""
    stored = app.services.keyring.signing_key().kid
    token = app.services.tokens.issue(ACCESS, "alice")
    thief = await create_app(turnstile_settings.with_changes(access_secret=secrets.token_hex(32)))
    try:
        assert "sealed under another ACCESS_TOKEN_SECRET" in caplog.text
        own = thief.services.keyring.signing_key()
        assert own.kid != stored
        assert jwt.get_unverified_header(thief.services.tokens.issue(ACCESS, "alice"))["kid"] == own.kid
        # The public half is still public: the old token verifies, it just cannot be minted anew.
        assert thief.services.tokens.verify(ACCESS, token)["username"] == "alice"
        docs = await app.services.store.collection(COLLECTION).find(alg="EdDSA")
        assert len(docs) == 2
    finally:
        await thief.services.close()
