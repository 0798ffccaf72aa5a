"""A bounded asyncio HTTP/1.1 load generator: the fallback when wrk is not installed.

    python bench/load.py '{"port": 3500, "method": "GET", "path": "/employees", "headers": {...},
                           "body": null, "connections": 16, "seconds": 4, "max_requests": 200000,
                           "follow_cookie": false}'

Keep-alive connections send requests back to back for ``seconds`` (and at most
``max_requests`` in total), to 127.0.0.1 only. With ``follow_cookie`` each
connection (starting from its own entry of ``cookies``) replaces its ``Cookie`` header with the ``jwt`` cookie of each
response, as a browser does with a rotating refresh token. A ``body_template`` sends a new body each time, with
``{n}`` replaced by the connection and request number (new users for ``/register``). Prints JSON:
requests/s of 2xx answers, p50/p99 in ms, counts.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time


async def one_connection(cfg: dict, n: int, deadline: float, budget: list[int], latencies: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cfg["port"])
    headers = dict(cfg.get("headers") or {})
    if cfg.get("cookies"):
        headers["Cookie"] = cfg["cookies"][n % len(cfg["cookies"])]
    body = (cfg.get("body") or "").encode()
    template, sent = cfg.get("body_template"), 0
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            if template:  # a fresh body per request: "{n}" becomes connection-counter
                body = template.replace("{n}", f"{n}-{sent}").encode()
                sent += 1
            lines = [f"{cfg['method']} {cfg['path']} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            started = time.perf_counter()
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"set-cookie" and cfg.get("follow_cookie") and value.strip().startswith(b"jwt="):
                    cookie = value.strip().split(b";", 1)[0].decode()
                    if cookie != "jwt=":
                        headers["Cookie"] = cookie
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            codes[status] = codes.get(status, 0) + 1
            if close:
                return
    finally:
        writer.close()


async def run(cfg: dict) -> dict:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    budget = [cfg.get("max_requests", 200000)]
    started = time.monotonic()
    deadline = started + cfg["seconds"]
    await asyncio.gather(*(one_connection(cfg, n, deadline, budget, latencies, codes) for n in range(cfg["connections"])))
    elapsed = time.monotonic() - started
    ok = sum(n for code, n in codes.items() if 200 <= code < 300)
    qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"rps": ok / elapsed, "p50_ms": qs[49] * 1000, "p99_ms": qs[98] * 1000, "codes": codes, "seconds": elapsed}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
