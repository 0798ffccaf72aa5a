"""Recovery codes: ten single-use codes that stand in for the authenticator app when it is lost.

Each code is 80 random bits, shown once as 16 base32 characters in four
groups (``abcd-efgh-ijkl-mnop``); only the SHA-256 of its normalized form is
kept, in ``factors["recovery_codes"] = {"hashes": [...], "created"}`` on the
user record. 80 random bits need no salt or slow hash: nobody can search them
from the hash, and a slow hash would only cost the server time at each use.
A code is spent in the same `Accounts.update_factors` transaction that
finds it, so two requests presenting one code cannot both succeed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from core.plugin import Accounts

FACTOR = "recovery_codes"
COUNT = 10
CODE_BYTES = 10  # 80 bits: 16 base32 characters, no padding
GROUP = 4


def normalize(code: str) -> str:
    """What is hashed: the code without surrounding blanks, dashes or spaces, upper-cased (typed as shown or not)."""
    return "".join(code.split()).replace("-", "").upper()


def hash_code(code: str) -> str:
    """The SHA-256 (hex) of the normalized code: what the store keeps instead of the code."""
    return hashlib.sha256(normalize(code).encode()).hexdigest()


def looks_like_code(code: str) -> bool:
    """Whether ``code`` has the shape of a recovery code (16 base32 characters once normalized)."""
    text = normalize(code)
    return len(text) == CODE_BYTES * 8 // 5 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in text)


def new_codes(n: int = COUNT) -> tuple[list[str], list[str]]:
    """``(codes, hashes)``: ``n`` fresh codes to show once, and the hashes to store."""
    codes = []
    for _ in range(n):
        raw = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii").lower()
        codes.append("-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP)))
    return codes, [hash_code(code) for code in codes]


def codes_factor(hashes: list[str], now: float | None = None) -> dict[str, Any]:
    """The ``factors["recovery_codes"]`` entry for a fresh set."""
    return {"hashes": list(hashes), "created": int(time.time() if now is None else now)}


def spend(factors: dict[str, Any], code: str) -> bool:
    """Remove ``code`` from ``factors`` (in place) if it is one of the user's unused codes; whether it was."""
    entry = factors.get(FACTOR)
    if not entry or not looks_like_code(code):
        return False
    digest = hash_code(code)
    hashes = list(entry.get("hashes") or [])
    found = [h for h in hashes if hmac.compare_digest(h, digest)]
    if not found:
        return False
    hashes.remove(found[0])
    factors[FACTOR] = {**entry, "hashes": hashes}
    return True


def codes_left(factors: dict[str, Any]) -> int:
    """How many unused recovery codes the user has."""
    return len((factors.get(FACTOR) or {}).get("hashes") or [])


async def use_code(accounts: Accounts, username: str, code: str) -> bool:
    """Spend one recovery code of the user; True once per code, False for any other code or user."""
    spent = False

    def change(factors: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal spent
        spent = spend(factors, code)
        return factors if spent else None

    await accounts.update_factors(username, change)
    return spent


async def regenerate(accounts: Accounts, username: str) -> list[str]:
    """A new set of codes for the user, replacing (voiding) the old set; the codes to show once.

    Empty if there is no such user.
    """
    codes, hashes = new_codes()

    def change(factors: dict[str, Any]) -> dict[str, Any]:
        return {**factors, FACTOR: codes_factor(hashes)}

    return codes if await accounts.update_factors(username, change) is not None else []
