"""What one access token costs to sign and to verify, per ``ACCESS_TOKEN_ALGORITHM``: ``python bench/signing.py``.

``bench/run.py`` runs this after its load measures, to explain the protected
GET figures: every protected request verifies one access token, every login
and refresh signs one. Each algorithm gets the `TokenSigner` a server builds
(the keyring in a scratch JSON store, generated as on a first start), so a
verify includes finding the key by ``kid``. The algorithms are timed in the
same process, in rounds whose order rotates, so CPU taken by the host hits all
of them alike; each figure is the median of the rounds, with the worst.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.backends import opened  # noqa: E402
from core.config import Settings  # noqa: E402
from core.keyring import Keyring  # noqa: E402
from core.signing import ACCESS, ALGORITHMS, SecretKey, TokenSigner  # noqa: E402

#: Seconds one timing of one operation should last (timeit picks the number of calls for it).
TIMING_SECONDS = 0.2


def _rounds(timers: dict[tuple[str, str], Callable[[], Any]], rounds: int) -> dict[tuple[str, str], list[float]]:
    """Seconds per call of each timer in each round, the order of the timers rotating from round to round."""
    numbers = {}
    for name, call in timers.items():  # also the warm-up
        number, taken = timeit.Timer(call).autorange()
        numbers[name] = max(1, round(number * TIMING_SECONDS / taken))
    names = list(timers)
    out: dict[tuple[str, str], list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if r % 2:
            order.reverse()
        for name in order:
            out[name].append(timeit.Timer(timers[name]).timeit(numbers[name]) / numbers[name])
    return out


async def _measure(rounds: int, scratch: Path) -> dict[str, Any]:
    secret, refresh_secret = secrets.token_hex(32), secrets.token_hex(32)
    timers: dict[tuple[str, str], Callable[[], Any]] = {}
    stores = []
    logging.getLogger("turnstile.keys").setLevel(logging.ERROR)  # not "signing key ... generated" four times
    try:
        for alg in ALGORITHMS:
            settings = Settings.from_env({
                "ACCESS_TOKEN_SECRET": secret, "REFRESH_TOKEN_SECRET": refresh_secret, "ACCESS_TOKEN_ALGORITHM": alg,
                "DATA_DIR": str(scratch / alg), "LOG_DIR": str(scratch / "logs"),
            })
            cm = opened(settings)
            store = await cm.__aenter__()
            stores.append(cm)
            keyring = Keyring(store, settings)
            await keyring.ensure()  # a first start: generates the key (not the background reloads: nothing changes here)
            signer = TokenSigner(keyring, SecretKey(settings.refresh_secret), settings.access_ttl, settings.refresh_ttl,
                                 settings.token_leeway, issuer=settings.token_issuer, audience=settings.token_audience)
            claims = signer.claims(ACCESS, "bench", roles=[2001])  # what a login signs
            token = signer.sign(ACCESS, claims)
            assert signer.verify(ACCESS, token)["username"] == "bench"
            assert keyring.signing_key().alg == alg, f"{alg}: signed with {keyring.signing_key().alg}"
            timers[(alg, "sign")] = lambda signer=signer, claims=claims: signer.sign(ACCESS, claims)
            timers[(alg, "verify")] = lambda signer=signer, token=token: signer.verify(ACCESS, token)
        # Timed with the event loop blocked: no background task runs in between.
        timed = _rounds(timers, rounds)
    finally:
        for cm in reversed(stores):
            await cm.__aexit__(None, None, None)
    res: dict[str, Any] = {"rounds": rounds}
    for alg in ALGORITHMS:
        res[alg] = {}
        for op in ("sign", "verify"):
            us = [t * 1e6 for t in timed[(alg, op)]]
            res[alg][op] = {"us": statistics.median(us), "worst_us": max(us), "best_us": min(us), "runs": [round(u, 1) for u in us]}
    for alg in ALGORITHMS:
        for op in ("sign", "verify"):
            ratios = [a / b for a, b in zip(timed[(alg, op)], timed[(ALGORITHMS[0], op)])]
            res[alg][op]["vs_hs256"] = statistics.median(ratios)
    return res


def measure(rounds: int = 7, scratch: Path | None = None) -> dict[str, Any]:
    """µs per `TokenSigner.sign` and `TokenSigner.verify` of one access token, for every algorithm, side by side."""
    if scratch is not None:
        return asyncio.run(_measure(rounds, scratch))
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_measure(rounds, Path(tmp)))


def table(res: dict[str, Any]) -> str:
    """One row per algorithm: µs per sign and per verify (median of the rounds, worst round) and the ratio to HS256."""
    lines = ["| `ACCESS_TOKEN_ALGORITHM` | sign, us per call | verify, us per call | sign / HS256 | verify / HS256 |",
             "|---|---|---|---|---|"]
    for alg in ALGORITHMS:
        s, v = res[alg]["sign"], res[alg]["verify"]
        lines.append(f"| {alg} | {s['us']:.1f} (worst {s['worst_us']:.1f}) | {v['us']:.1f} (worst {v['worst_us']:.1f}) "
                     f"| {s['vs_hs256']:.2f} | {v['vs_hs256']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    print(table(measure(parser.parse_args().rounds)))
