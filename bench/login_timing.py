"""Login timing: an unknown username must cost the same as a wrong password.

Serves the app on 127.0.0.1 with a throwaway DATA_DIR and real bcrypt cost,
then alternates the two kinds of failed login (so both see the same machine
load) and prints the median of each and their ratio. Lockouts are turned off
for the run. Usage: ``.venv/bin/python bench/login_timing.py [ROUNDS] [N]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import served  # noqa: E402
from core.pytest_plugin import make_settings  # noqa: E402


async def main(rounds: int, n: int) -> None:
    times: dict[str, list[float]] = {"unknown user": [], "wrong password": []}
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), bcrypt_rounds=rounds, login_max_failures=0, login_max_failures_per_address=0)
        async with served(settings) as (_, post):
            assert (await post("/register", {"user": "alice", "pwd": "the right password"}))[0] == 201
            for i in range(n):
                for label, user in (("unknown user", f"ghost{i}"), ("wrong password", "alice")):
                    code, took = await post("/auth", {"user": user, "pwd": "not the password"})
                    assert code == 401, code
                    times[label].append(took)
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"bcrypt rounds {rounds}, {n} logins of each kind, alternating")
    for label, ms in medians.items():
        print(f"  {label:15s} median {ms:7.2f} ms")
    print(f"  ratio unknown/wrong {medians['unknown user'] / medians['wrong password']:.3f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, int(sys.argv[2]) if len(sys.argv) > 2 else 30))
