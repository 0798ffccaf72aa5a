"""Serve the demo client on its own origin: ``python -m demo`` (default http://localhost:5500).

A tiny static server, so the page and the API are on different origins exactly as a real
front end would be. It binds ``localhost`` (both 127.0.0.1 and ::1), so the same page is
reachable as http://localhost:5500 (same-site with the API on localhost:3500) and as
http://127.0.0.1:5500 (cross-site, the tutorial's own setup).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import tornado.web

HERE = Path(__file__).resolve().parent
FILES = ("index.html", "app.js", "style.css")


class DemoFileHandler(tornado.web.StaticFileHandler):
    """The demo's three files (nothing else in the folder), never cached."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-store")


def make_app() -> tornado.web.Application:
    return tornado.web.Application(
        [(r"/((?:%s)?)" % "|".join(name.replace(".", r"\.") for name in FILES), DemoFileHandler,
          {"path": str(HERE), "default_filename": "index.html"})],
        static_hash_cache=False,
    )


async def run(host: str, port: int) -> None:
    server = make_app().listen(port, address=host)
    shown = "localhost" if host in ("", "localhost") else host
    print(f"Demo client on http://{shown}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5500, help="port to listen on (default 5500)")
    parser.add_argument("--host", default="localhost", help="address to bind (default localhost: 127.0.0.1 and ::1)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
