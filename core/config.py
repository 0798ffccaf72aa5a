"""Settings, read once at start-up from the environment (and `.env`).

Everything the app needs is collected into one immutable `Settings` object so
handlers and plugins never read `os.environ` themselves: tests build a
`Settings` directly and get a fully isolated app.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from .signing import ALGORITHMS

log = logging.getLogger("turnstile.config")

DEFAULT_ORIGINS = ("http://127.0.0.1:5500", "http://localhost:5500", "http://localhost:3500")
MIN_SECRET_BYTES = 32
_SECRET_NAMES = ("ACCESS_TOKEN_SECRET", "REFRESH_TOKEN_SECRET")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


def parse_duration(name: str, value: str) -> int:
    """Seconds from `900`, `30s`, `15m`, `2h` or `1d`."""
    match = _DURATION.match(value)
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{name}={value!r} is not a duration; use seconds or 30s/15m/2h/1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_optional_duration(name: str, value: str) -> int:
    """A duration, or ``off`` (0)."""
    if value.strip().lower() in ("off", "0", "false", "no", "none"):
        return 0
    return parse_duration(name, value)


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def parse_int(name: str, value: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if maximum is not None and not minimum <= number <= maximum:
        raise ConfigError(f"{name}={value!r} must be between {minimum} and {maximum}")
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be at least {minimum}")
    return number


def parse_port(name: str, value: str) -> int:
    """1 to 65535: a larger number would be silently wrapped by the socket layer onto another port."""
    return parse_int(name, value, minimum=1, maximum=65535)


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_FORMAT = "%(asctime)s\t%(levelname)s\t%(name)s\t%(message)s"


def parse_size(name: str, value: str) -> int:
    """Bytes from `1048576`, `64k`, `1m` or `1MiB`."""
    match = _SIZE.match(value)
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{name}={value!r} is not a size; use bytes or 64k/1m/1g")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_level(name: str, value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}={value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return level


def cpu_count() -> int:
    """CPUs this process may use (its affinity on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_workers(name: str, value: str) -> int:
    """``auto`` is one worker per CPU; else a whole number of at least 1."""
    if value.strip().lower() == "auto":
        return cpu_count()
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number or auto (one worker per core)") from None
    if number < 1:
        raise ConfigError(f"{name}={value!r} must be at least 1, or auto (one worker per core)")
    return number


def too_many_workers(workers: int) -> str | None:
    """A warning when ``workers`` exceeds the CPUs this process may use; None otherwise.

    Not an error: a deliberate choice may have its reasons (workers that wait
    on a slow database), but more workers than cores usually only add memory
    and context switches.
    """
    cores = cpu_count()
    if workers <= cores:
        return None
    return (f"WORKERS={workers} is more than the {cores} CPU core(s) this process may use; extra workers only add "
            "memory and context switches (WORKERS=auto starts one per core)")


_ORIGIN = re.compile(
    r"^([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::(\d{1,5}))?$",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(name: str, text: str) -> str:
    """``scheme://host[:port]`` as a browser sends it in ``Origin``: lower case, without a default port.

    Anything else would start fine and match no request, so it is refused
    with the reason. ``*`` and ``null`` are refused outright: every CORS answer
    allows credentials (the refresh cookie), and ``null`` is the origin of
    sandboxed frames and ``file:`` pages, which any site can produce.
    """
    shown = f"{name}: {text!r}"
    if text == "*":
        raise ConfigError(f"{shown} is not allowed: CORS here always carries credentials, which '*' cannot; list each origin")
    if text.lower() == "null":
        raise ConfigError(f"{shown} is not allowed: any site can send Origin: null (sandboxed frames, file: pages); list each origin")
    match = _ORIGIN.match(text[:-1] if text.endswith("/") else text)
    if match is None:
        if "*" in text:
            why = "wildcards are not supported; list each origin"
        elif any(c.isspace() for c in text):
            why = "it contains a space; separate origins with commas"
        elif "://" not in text:
            why = f"it has no scheme; write e.g. https://{text}"
        elif any(c in text.split("://", 1)[1].rstrip("/") for c in "/?#"):
            why = "an origin has no path; write scheme://host[:port]"
        else:
            why = "write scheme://host[:port], e.g. https://app.example.com"
        raise ConfigError(f"{shown} is not an origin: {why}")
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if port is not None:
        if not 1 <= int(port) <= 65535:
            raise ConfigError(f"{shown} is not an origin: the port must be between 1 and 65535")
        if _DEFAULT_PORTS.get(scheme) == int(port):
            port = None  # a browser leaves the default port out of Origin
    return f"{scheme}://{host}" + (f":{int(port)}" if port else "")


def parse_origins(name: str, value: str) -> tuple[str, ...]:
    """A comma-separated list of origins, each checked by `parse_origin`."""
    origins = (parse_origin(name, item.strip()) for item in value.split(",") if item.strip())
    return tuple(dict.fromkeys(origins))


def check_secret(name: str, value: str) -> str:
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{name} is {len(value.encode())} bytes; at least {MIN_SECRET_BYTES} are required "
            "(delete it from .env to have a random one generated)"
        )
    return value


@dataclass(frozen=True)
class Settings:
    access_secret: str
    refresh_secret: str
    host: str = ""
    port: int = 3500
    access_ttl: int = 15 * 60
    refresh_ttl: int = 24 * 3600
    # How access tokens are signed (core/signing.py, core/keyring.py); refresh tokens are always HS256.
    access_algorithm: str = "HS256"
    #: Stage a new signing key this often (seconds); 0: only ``keys rotate`` does.
    key_rotation: int = 0
    #: ``Cache-Control: max-age`` of ``/.well-known/jwks.json``; a staged key waits this long before it signs.
    jwks_max_age: int = 300
    token_issuer: str = ""
    token_audience: str = ""
    allowed_origins: tuple[str, ...] = DEFAULT_ORIGINS
    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    bcrypt_rounds: int = 12
    cookie_secure: bool = True
    cookie_partitioned: bool = True
    token_leeway: int = 0
    plugins: str = ""
    refresh_reuse_grace: int = 10
    password_min_length: int = 8
    #: How long after signing in a session may change where reset links go or add a factor without the password.
    reauth_window: int = 15 * 60
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window: int = 15 * 60
    login_lockout: int = 15 * 60
    # Long-running operation: shutdown, logs, limits.
    shutdown_timeout: int = 10
    log_level: str = "WARNING"
    log_format: str = DEFAULT_LOG_FORMAT
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    max_body_size: int = 1024 * 1024
    idle_timeout: int = 60
    body_timeout: int = 30
    hash_workers: int = 0
    hash_queue: int = 0
    # PostgreSQL instead of the JSON store in DATA_DIR (see core/store.py, core/pg).
    database_url: str = ""
    database_pool_size: int = 10
    # Worker processes behind one port (core/supervisor.py); 1 is a single process, no supervisor.
    workers: int = 1
    #: A worker whose event loop sends no heartbeat for this long is killed and replaced.
    worker_timeout: int = 30
    #: Which worker slot this process is (it names its log files); set by the supervisor, never from the environment.
    worker_index: int = 0
    # The bearer token ``GET /metrics`` requires; unset: loopback clients only.
    metrics_token: str = field(default="", repr=False)
    #: The environment's variables that are no core setting (never the token secrets; it may hold a plugin's
    #: own secret, such as SMTP_PASSWORD, so it stays out of repr), where plugins' settings are read
    #: (``TURNSTILE_<PLUGIN>_*``, and names a plugin declares with ``setting(env=...)``).
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_secret("ACCESS_TOKEN_SECRET", self.access_secret)
        check_secret("REFRESH_TOKEN_SECRET", self.refresh_secret)
        if self.access_secret == self.refresh_secret:
            raise ConfigError("ACCESS_TOKEN_SECRET and REFRESH_TOKEN_SECRET must differ")
        if self.access_algorithm not in ALGORITHMS:
            raise ConfigError(
                f"ACCESS_TOKEN_ALGORITHM={self.access_algorithm!r} is not supported; use one of {', '.join(ALGORITHMS)}"
            )
        if self.key_rotation and self.key_rotation <= self.jwks_max_age + self.access_ttl:
            raise ConfigError(
                f"KEY_ROTATION={self.key_rotation}s must be longer than JWKS_MAX_AGE plus ACCESS_TOKEN_TTL "
                f"({self.jwks_max_age + self.access_ttl}s): a key should sign for longer than it takes to publish one and retire one"
            )
        if self.workers < 1:
            raise ConfigError(f"WORKERS={self.workers} must be at least 1")
        if not 4 <= self.bcrypt_rounds <= 31:
            raise ConfigError(f"BCRYPT_ROUNDS={self.bcrypt_rounds} must be between 4 and 31")
        parse_level("LOG_LEVEL", self.log_level)
        try:
            # Format a sample record too: a field no record has would otherwise fail on every line.
            logging.Formatter(self.log_format, validate=True).format(logging.makeLogRecord({"msg": "sample"}))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"LOG_FORMAT={self.log_format!r} is not a logging format string ({exc})") from None

    @property
    def hash_pool_size(self) -> int:
        """bcrypt threads per worker: ``HASH_WORKERS``, or one per CPU this process may use.

        Not divided among the workers: connections are spread evenly, but logins are not (one
        keep-alive connection may bring many of them), so each worker must be able to keep every
        core hashing.
        """
        if self.hash_workers:
            return self.hash_workers
        return cpu_count()

    @property
    def hash_queue_size(self) -> int:
        """Logins that may wait for a bcrypt thread: ``HASH_QUEUE``, default 4 per thread."""
        return self.hash_queue or 4 * self.hash_pool_size

    def with_changes(self, **changes: object) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], defaults: dict[str, str] | None = None) -> "Settings":
        """Build settings from a mapping such as `os.environ`.

        ``defaults``, if given, receives each variable's default text as it is applied, so
        ``server.py --help`` lists the defaults from here and never from a copy (`environment_help`).
        """

        core_names = set(_SECRET_NAMES)  # every variable read here: plugins get the others (``extra``)

        def raw(name: str) -> str:
            core_names.add(name)
            return env.get(name, "")

        def get(name: str, default: str) -> str:
            if defaults is not None:
                defaults[name] = default
            value = raw(name)
            return value if value.strip() else default

        for name in _SECRET_NAMES:
            if not env.get(name):
                raise ConfigError(f"{name} is not set")
        settings = dict(
            access_secret=env["ACCESS_TOKEN_SECRET"],
            refresh_secret=env["REFRESH_TOKEN_SECRET"],
            host=raw("HOST").strip(),
            port=parse_port("PORT", get("PORT", "3500")),
            access_ttl=parse_duration("ACCESS_TOKEN_TTL", get("ACCESS_TOKEN_TTL", "15m")),
            refresh_ttl=parse_duration("REFRESH_TOKEN_TTL", get("REFRESH_TOKEN_TTL", "1d")),
            access_algorithm=get("ACCESS_TOKEN_ALGORITHM", "HS256").strip(),
            key_rotation=parse_optional_duration("KEY_ROTATION", get("KEY_ROTATION", "off")),
            jwks_max_age=parse_duration("JWKS_MAX_AGE", get("JWKS_MAX_AGE", "5m")),
            token_issuer=raw("TOKEN_ISSUER").strip(),
            token_audience=raw("TOKEN_AUDIENCE").strip(),
            allowed_origins=parse_origins("ALLOWED_ORIGINS", get("ALLOWED_ORIGINS", ",".join(DEFAULT_ORIGINS))),
            data_dir=Path(get("DATA_DIR", "data")),
            log_dir=Path(get("LOG_DIR", "logs")),
            bcrypt_rounds=parse_int("BCRYPT_ROUNDS", get("BCRYPT_ROUNDS", "12"), minimum=4),
            cookie_secure=parse_bool("COOKIE_SECURE", get("COOKIE_SECURE", "true")),
            cookie_partitioned=parse_bool("COOKIE_PARTITIONED", get("COOKIE_PARTITIONED", "true")),
            token_leeway=parse_int("TOKEN_LEEWAY", get("TOKEN_LEEWAY", "0")),
            plugins=raw("PLUGINS").strip(),
            refresh_reuse_grace=parse_int("REFRESH_REUSE_GRACE", get("REFRESH_REUSE_GRACE", "10")),
            password_min_length=parse_int("PASSWORD_MIN_LENGTH", get("PASSWORD_MIN_LENGTH", "8"), minimum=1),
            reauth_window=parse_duration("REAUTH_WINDOW", get("REAUTH_WINDOW", "15m")),
            login_max_failures=parse_int("LOGIN_MAX_FAILURES", get("LOGIN_MAX_FAILURES", "5")),
            login_max_failures_per_address=parse_int(
                "LOGIN_MAX_FAILURES_PER_ADDRESS", get("LOGIN_MAX_FAILURES_PER_ADDRESS", "20")
            ),
            login_failure_window=parse_duration("LOGIN_FAILURE_WINDOW", get("LOGIN_FAILURE_WINDOW", "15m")),
            login_lockout=parse_duration("LOGIN_LOCKOUT", get("LOGIN_LOCKOUT", "15m")),
            shutdown_timeout=parse_duration("SHUTDOWN_TIMEOUT", get("SHUTDOWN_TIMEOUT", "10s")),
            log_level=parse_level("LOG_LEVEL", get("LOG_LEVEL", "WARNING")),
            log_format=get("LOG_FORMAT", DEFAULT_LOG_FORMAT),
            log_max_bytes=parse_size("LOG_MAX_BYTES", get("LOG_MAX_BYTES", "10m")),
            log_backups=parse_int("LOG_BACKUPS", get("LOG_BACKUPS", "5")),
            max_body_size=parse_size("MAX_BODY_SIZE", get("MAX_BODY_SIZE", "1m")),
            idle_timeout=parse_duration("IDLE_TIMEOUT", get("IDLE_TIMEOUT", "60s")),
            body_timeout=parse_duration("BODY_TIMEOUT", get("BODY_TIMEOUT", "30s")),
            hash_workers=parse_int("HASH_WORKERS", get("HASH_WORKERS", "0")),
            hash_queue=parse_int("HASH_QUEUE", get("HASH_QUEUE", "0")),
            database_url=raw("DATABASE_URL").strip(),
            database_pool_size=parse_int("DATABASE_POOL_SIZE", get("DATABASE_POOL_SIZE", "10"), minimum=1),
            workers=parse_workers("WORKERS", get("WORKERS", "1")),
            worker_timeout=parse_duration("WORKER_TIMEOUT", get("WORKER_TIMEOUT", "30s")),
            metrics_token=raw("METRICS_TOKEN").strip(),
        )
        return cls(**settings, extra={k: v for k, v in env.items() if k not in core_names})


def read_env_text(env_file: Path) -> str:
    """The text of ``env_file``; empty when there is none."""
    try:
        return env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{env_file} line {line} is not UTF-8 (byte {exc.object[exc.start]:#04x}); save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{env_file} cannot be read: {exc.strerror or exc}") from None


_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=")


def env_file_names(env_file: Path, text: str) -> dict[str, str | None]:
    """Each name ``text`` sets, with its raw value (None for a name without ``=``).

    A line python-dotenv cannot parse stops start-up: dotenv would skip it, and a
    secret on it would look missing and be generated anew over the real one. The
    error names the line and the setting, never the value.
    """
    import io

    from dotenv.parser import parse_stream

    names: dict[str, str | None] = {}
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first = binding.original.string.splitlines()[0] if binding.original.string else ""
            match = _ASSIGNMENT.match(first)
            what = f"the line setting {match.group(1)}; is a quote left open?" if match else "lines are NAME=value"
            raise ConfigError(f"{env_file} line {binding.original.line} cannot be parsed ({what})")
        if binding.key is not None:
            if binding.key in _SECRET_NAMES and binding.key in names and names[binding.key] != binding.value:
                # What an earlier build's bug left behind: the last line would win silently, and instances disagree.
                raise ConfigError(
                    f"{binding.key} is set twice in {env_file} with different values (lines {lines[binding.key]} and "
                    f"{binding.original.line}); keep the one the other instances use and delete the other line"
                )
            names[binding.key] = binding.value
            lines.setdefault(binding.key, binding.original.line)
    return names


def check_secret_sources(env_file: Path, environ: Mapping[str, str], on_disk: Mapping[str, str | None]) -> None:
    """An empty secret is an error, never a reason to generate one.

    ``ACCESS_TOKEN_SECRET= ./bin/serve``, what an unset ``$VAR`` gives, would
    otherwise hide the secret in ``.env`` and a new one would be written after it.
    """
    for name in _SECRET_NAMES:
        if name in environ:
            if not environ[name]:
                raise ConfigError(
                    f"{name} is set but empty in the environment (an unset shell variable?); "
                    f"give it a value, or unset it to use {env_file}"
                )
        elif name in on_disk and not on_disk[name]:
            raise ConfigError(f"{name} is empty in {env_file}; give it a value, or delete its line to have one generated")


def ensure_secrets(env_file: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Generate the token secrets that are set nowhere into `env_file` (mode 0600).

    Returns the names generated so the caller can say so. A secret that is set,
    in the environment or in `env_file`, is never generated: an existing key is
    never written again. The values are never logged.
    """
    environ = os.environ if environ is None else environ
    text = read_env_text(env_file)
    on_disk = env_file_names(env_file, text)
    missing = [name for name in _SECRET_NAMES if name not in environ and name not in on_disk]
    if not missing:
        return []
    lines = [f"{name}={secrets.token_hex(64)}" for name in missing]
    prefix = "" if not text or text.endswith("\n") else "\n"
    try:
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(prefix + "\n".join(lines) + "\n")
        os.chmod(env_file, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write the generated {' and '.join(missing)} to {env_file}: {exc.strerror or exc}") from None
    for line in lines:
        name, value = line.split("=", 1)
        environ[name] = value
    return missing


def read_settings(environ: Mapping[str, str], env_file: Path = Path(".env")) -> Settings:
    """Settings from ``environ`` over what ``env_file`` holds now, touching neither.

    The supervisor reads its new settings this way at ``SIGHUP``: its own
    ``os.environ`` already holds the ``.env`` of its start.
    """
    import io

    from dotenv import dotenv_values

    text = read_env_text(env_file)
    check_secret_sources(env_file, environ, env_file_names(env_file, text))
    on_disk = {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}
    return Settings.from_env({**on_disk, **environ})


def load_settings(env_file: Path = Path(".env")) -> Settings:
    """Read `.env` (without overriding real environment), generating secrets on first run."""
    import io

    from dotenv import load_dotenv

    text = read_env_text(env_file)
    check_secret_sources(env_file, os.environ, env_file_names(env_file, text))
    load_dotenv(stream=io.StringIO(text), override=False)
    generated = ensure_secrets(env_file)
    if generated:
        log.warning("Generated %s and wrote them to %s (mode 0600)", " and ".join(generated), env_file)
    return Settings.from_env(os.environ)
