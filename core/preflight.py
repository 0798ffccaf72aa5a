"""What the server checks about its surroundings before it serves: the directories it writes and the port.

A directory that cannot be written or a port that cannot be bound would
otherwise show up as a traceback from deep inside logging, the store or
Tornado, and, with ``WORKERS`` > 1, once from every worker the supervisor
starts. These checks turn each into one `ConfigError` line naming the setting
and the cause, before a worker is started.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from .config import ConfigError, Settings


def check_writable_dir(name: str, path: Path) -> None:
    """Create ``path`` if missing and make sure a file can be written in it."""
    shown = f"{name}={str(path)!r}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{shown} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{shown} cannot be created: {_why_not_created(path, exc)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".turnstile-write-check-", dir=path)
    except OSError as exc:
        raise ConfigError(f"{shown} is not writable: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def _why_not_created(path: Path, exc: OSError) -> str:
    for ancestor in path.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{str(ancestor)!r} is a file, not a directory"
            break
    return exc.strerror or str(exc)


def check_dirs(settings: Settings) -> None:
    """``LOG_DIR`` always; ``DATA_DIR`` when the JSON store is in use (no ``DATABASE_URL``)."""
    check_writable_dir("LOG_DIR", settings.log_dir)
    if not settings.database_url:
        check_writable_dir("DATA_DIR", settings.data_dir)


def bind(settings: Settings) -> list[socket.socket]:
    """Listening sockets on ``HOST``:``PORT`` (every address ``HOST`` resolves to; all interfaces when unset)."""
    from tornado.netutil import bind_sockets

    try:
        return bind_sockets(settings.port, address=settings.host or None)
    except OSError as exc:
        raise ConfigError(listen_error(settings, exc)) from None


def listen_error(settings: Settings, exc: OSError) -> str:
    """One line naming the setting at fault: ``HOST`` if it does not resolve, else ``PORT`` (and ``HOST``)."""
    if isinstance(exc, socket.gaierror):
        return f"HOST={settings.host!r} cannot be resolved: {exc.strerror or exc}"
    where = f"PORT={settings.port}" + (f" at HOST={settings.host!r}" if settings.host else " on all interfaces")
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason += " (another process is listening there)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason += " (HOST is not an address of this machine)"
    elif exc.errno == errno.EACCES and settings.port < 1024:
        reason += " (ports below 1024 need privileges)"
    return f"cannot listen on {where}: {reason}"
