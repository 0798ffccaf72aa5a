"""Settings from the environment and .env: durations, secrets, origins."""

import os
import stat

import pytest

from core.config import ConfigError, Settings, ensure_secrets, parse_duration

GOOD = {"ACCESS_TOKEN_SECRET": "a" * 64, "REFRESH_TOKEN_SECRET": "b" * 64}


@pytest.mark.parametrize("text, seconds", [("30", 30), ("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration("X", text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "-5", "0", "1.5m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError, match="X="):
        parse_duration("X", text)


def test_defaults():
    settings = Settings.from_env(GOOD)
    assert settings.port == 3500
    assert settings.access_ttl == 15 * 60 and settings.refresh_ttl == 86400
    assert settings.allowed_origins == ("http://127.0.0.1:5500", "http://localhost:5500", "http://localhost:3500")
    assert str(settings.data_dir) == "data" and str(settings.log_dir) == "logs"
    assert settings.bcrypt_rounds == 12


def test_overrides():
    settings = Settings.from_env(
        {**GOOD, "PORT": "8080", "HOST": "127.0.0.1", "ACCESS_TOKEN_TTL": "30s", "REFRESH_TOKEN_TTL": "7d",
         "ALLOWED_ORIGINS": "https://a.example, https://b.example/", "DATA_DIR": "/tmp/d", "BCRYPT_ROUNDS": "4"}
    )
    assert (settings.port, settings.host, settings.access_ttl, settings.refresh_ttl) == (8080, "127.0.0.1", 30, 7 * 86400)
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert str(settings.data_dir) == "/tmp/d" and settings.bcrypt_rounds == 4


def test_short_secret_is_refused_with_a_clear_error():
    with pytest.raises(ConfigError, match="ACCESS_TOKEN_SECRET is 5 bytes; at least 32"):
        Settings.from_env({**GOOD, "ACCESS_TOKEN_SECRET": "short"})


def test_equal_secrets_are_refused():
    with pytest.raises(ConfigError, match="must differ"):
        Settings.from_env({"ACCESS_TOKEN_SECRET": "s" * 40, "REFRESH_TOKEN_SECRET": "s" * 40})


@pytest.mark.parametrize("name, value", [("PORT", "http"), ("BCRYPT_ROUNDS", "3"), ("COOKIE_SECURE", "maybe")])
def test_malformed_values_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**GOOD, name: value})


def test_missing_secrets_are_generated_into_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=4000")
    environ = {}
    assert ensure_secrets(env_file, environ) == ["ACCESS_TOKEN_SECRET", "REFRESH_TOKEN_SECRET"]
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    lines = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert lines["PORT"] == "4000"
    for name in ("ACCESS_TOKEN_SECRET", "REFRESH_TOKEN_SECRET"):
        assert len(bytes.fromhex(lines[name])) == 64
        assert environ[name] == lines[name]
    assert lines["ACCESS_TOKEN_SECRET"] != lines["REFRESH_TOKEN_SECRET"]
    assert ensure_secrets(env_file, environ) == []  # second run keeps them
    Settings.from_env(environ)


def test_operations_settings():
    """Shutdown, log and limit settings: defaults, overrides, and refusal of bad values."""
    settings = Settings.from_env(GOOD)
    assert (settings.shutdown_timeout, settings.max_body_size, settings.idle_timeout, settings.body_timeout) == (10, 1 << 20, 60, 30)
    assert (settings.log_level, settings.log_max_bytes, settings.log_backups) == ("WARNING", 10 << 20, 5)
    assert settings.hash_pool_size == len(os.sched_getaffinity(0)) and settings.hash_queue_size == 4 * settings.hash_pool_size
    settings = Settings.from_env(
        {**GOOD, "SHUTDOWN_TIMEOUT": "30s", "MAX_BODY_SIZE": "64k", "IDLE_TIMEOUT": "5s", "BODY_TIMEOUT": "2s",
         "LOG_LEVEL": "info", "LOG_FORMAT": "%(levelname)s %(message)s", "LOG_MAX_BYTES": "1m", "LOG_BACKUPS": "2",
         "HASH_WORKERS": "3", "HASH_QUEUE": "7"}
    )
    assert (settings.shutdown_timeout, settings.max_body_size, settings.idle_timeout, settings.body_timeout) == (30, 65536, 5, 2)
    assert (settings.log_level, settings.log_format, settings.log_max_bytes, settings.log_backups) == ("INFO", "%(levelname)s %(message)s", 1 << 20, 2)
    assert (settings.hash_pool_size, settings.hash_queue_size) == (3, 7)
    for name, value in [("MAX_BODY_SIZE", "lots"), ("LOG_LEVEL", "LOUD"), ("LOG_FORMAT", "no fields"), ("LOG_FORMAT", "%(asctime)s %(no_such_field)s"), ("HASH_QUEUE", "-1")]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**GOOD, name: value})


def test_workers_default_to_one_and_auto_is_one_per_cpu(monkeypatch):
    assert Settings.from_env(GOOD).workers == 1
    assert Settings.from_env({**GOOD, "WORKERS": "3"}).workers == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert Settings.from_env({**GOOD, "WORKERS": "auto"}).workers == 4
    assert Settings.from_env({**GOOD, "WORKERS": "AUTO"}).workers == 4
    for bad in ("0", "-1", "two"):
        with pytest.raises(ConfigError, match="WORKERS"):
            Settings.from_env({**GOOD, "WORKERS": bad})


def test_each_worker_can_keep_every_core_hashing(monkeypatch):
    """Each worker has its own bcrypt pool of one thread per CPU: a worker may accept most connections."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert Settings.from_env(GOOD).hash_pool_size == 4
    assert Settings.from_env({**GOOD, "WORKERS": "2"}).hash_pool_size == 4
    assert Settings.from_env({**GOOD, "WORKERS": "2", "HASH_WORKERS": "3"}).hash_pool_size == 3


def test_a_secret_set_in_env_file_is_never_generated_again_even_empty(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("ACCESS_TOKEN_SECRET=\nREFRESH_TOKEN_SECRET=" + "r" * 64 + "\n")
    before = env_file.read_text()
    assert ensure_secrets(env_file, {}) == []
    assert env_file.read_text() == before


@pytest.mark.parametrize("port", ["0", "65536", "69648"])
def test_a_port_outside_1_to_65535_is_refused(port):
    with pytest.raises(ConfigError, match=f"PORT='{port}' must be between 1 and 65535"):
        Settings.from_env({**GOOD, "PORT": port})
    assert Settings.from_env({**GOOD, "PORT": "65535"}).port == 65535 and Settings.from_env({**GOOD, "PORT": "1"}).port == 1


@pytest.mark.parametrize(
    "value, reason",
    [
        ("*", "is not allowed: CORS here always carries credentials"),
        ("null", "is not allowed: any site can send Origin: null"),
        ("https://a.example,null", "is not allowed: any site can send Origin: null"),
        ("app.example.com", "no scheme"),
        ("https://app.example.com/app", "no path"),
        ("https://app.example.com/?x=1", "no path"),
        ("https://*.example.com", "wildcards"),
        ("https://a.example https://b.example", "space"),
        ("https://a.example:70000", "between 1 and 65535"),
        ("https://user@a.example", "scheme://host\\[:port\\]"),
    ],
)
def test_an_origin_that_could_never_match_or_is_unsafe_is_refused(value, reason):
    with pytest.raises(ConfigError, match=f"^ALLOWED_ORIGINS: '.+' .*{reason}"):
        Settings.from_env({**GOOD, "ALLOWED_ORIGINS": value})


def test_origins_are_kept_as_a_browser_sends_them():
    settings = Settings.from_env({**GOOD, "ALLOWED_ORIGINS": "HTTPS://App.Example:443/, http://localhost:3500, http://[::1]:8080,https://app.example"})
    assert settings.allowed_origins == ("https://app.example", "http://localhost:3500", "http://[::1]:8080")


def test_a_workers_value_that_is_no_number_names_auto(monkeypatch):
    for bad, reason in (("lots", "is not a whole number or auto"), ("0", "must be at least 1, or auto")):
        with pytest.raises(ConfigError, match=f"WORKERS='{bad}' {reason}"):
            Settings.from_env({**GOOD, "WORKERS": bad})


def test_more_workers_than_cores_is_a_warning_naming_both(monkeypatch):
    from core.config import too_many_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert too_many_workers(1) is None and too_many_workers(2) is None
    warning = too_many_workers(1000)
    assert warning is not None and "WORKERS=1000" in warning and "2 CPU core(s)" in warning and "auto" in warning


def test_signing_settings_are_read_and_checked():
    settings = Settings.from_env({**GOOD, "ACCESS_TOKEN_ALGORITHM": "EdDSA", "KEY_ROTATION": "30d", "JWKS_MAX_AGE": "10m",
                                  "TOKEN_ISSUER": "https://auth.example.com", "TOKEN_AUDIENCE": "reports"})
    assert (settings.access_algorithm, settings.key_rotation, settings.jwks_max_age) == ("EdDSA", 30 * 86400, 600)
    assert (settings.token_issuer, settings.token_audience) == ("https://auth.example.com", "reports")
    default = Settings.from_env(GOOD)
    assert (default.access_algorithm, default.key_rotation, default.jwks_max_age) == ("HS256", 0, 300)
    assert Settings.from_env({**GOOD, "KEY_ROTATION": "off"}).key_rotation == 0


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ACCESS_TOKEN_ALGORITHM": "HS512"}, "ACCESS_TOKEN_ALGORITHM='HS512' is not supported; use one of HS256, EdDSA, ES256, RS256"),
        ({"ACCESS_TOKEN_ALGORITHM": "none"}, "ACCESS_TOKEN_ALGORITHM='none' is not supported"),
        ({"KEY_ROTATION": "soon"}, "KEY_ROTATION='soon' is not a duration"),
        ({"KEY_ROTATION": "10m"}, "KEY_ROTATION=600s must be longer than JWKS_MAX_AGE plus ACCESS_TOKEN_TTL (1200s)"),
        ({"JWKS_MAX_AGE": "0"}, "JWKS_MAX_AGE='0' is not a duration"),
    ],
)
def test_bad_signing_settings_are_one_line_naming_the_setting(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**GOOD, **env})
    assert str(raised.value).startswith(message)
