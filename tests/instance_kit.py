"""Another instance of the app on the same data: what N servers sharing one DATA_DIR or database look like to a test."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from core.app import create_app
from core.config import Settings
from core.loader import PROJECT_PLUGINS
from core.pytest_plugin import ApiClient


@contextlib.asynccontextmanager
async def instance(
    settings: Settings, http_client: Any, plugins_dir: Path = PROJECT_PLUGINS, extra_plugins: Mapping[str, Path] | None = None
) -> AsyncIterator[ApiClient]:
    """A whole application of its own (own store connection, own bcrypt pool), served on a port of its own,
    with the plugins the ``app`` fixture would load given its ``plugins_dir`` and ``extra_plugins``."""
    app = await create_app(settings, plugins_dir, extra_plugins)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield ApiClient(http_client, f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        await app.services.close()
