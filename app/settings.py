"""Settings: one frozen dataclass, built from the environment and validated before anything starts."""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from app.limits import DEFAULT_MAX_READING_AGE_S, MAX_BATCH_READINGS
from app.tokens import MAX_BEARER_CHARS, is_bearer_token

DEFAULT_DATA_DIR = ".fleetbed"
SECRETS_DIR_NAME = "secrets"
DEFAULT_LOGIN_RATE_PER_S = 20.0
DEFAULT_LOGIN_BURST = 200


_N = TypeVar("_N", int, float)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to start. Build with `Settings.from_env()`; tests build their own."""

    database_url: str | None
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    secret: bytes = field(default=b"", repr=False)
    operator_token: str = field(default="", repr=False)
    enroll_key: str | None = field(default=None, repr=False)
    enroll_open: bool = False  # new devices may register without a key even when listening beyond loopback
    login_rate_per_s: float = DEFAULT_LOGIN_RATE_PER_S  # per client address, whole service; 0: no limit
    login_burst: int = DEFAULT_LOGIN_BURST
    max_reading_age_s: int = DEFAULT_MAX_READING_AGE_S
    token_ttl_s: int = 7 * 24 * 3600
    default_interval_s: int = 30
    max_body_bytes: int = 1024 * 1024
    max_batch: int = MAX_BATCH_READINGS
    pool_min_size: int = 2
    pool_max_size: int = 10
    db_timeout_s: float = 5.0
    ingest_writers: int = 2
    ingest_queue_readings: int = 50_000
    ingest_wait_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    drain_timeout_s: float = 30.0  # from a stop signal to the exit, whatever state the database is in
    test_handler_cpu_ms: float = 0.0  # tests only: CPU spun per request (app/planted_load.py)

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise SettingsError("FLEETBED_SECRET must be at least 32 bytes; unset it to have one generated")
        if len(self.operator_token) < 16:
            raise SettingsError(
                "FLEETBED_OPERATOR_TOKEN must be at least 16 characters; unset it to have one generated"
            )
        if not is_bearer_token(self.operator_token):
            raise SettingsError(
                f"FLEETBED_OPERATOR_TOKEN must be visible ASCII characters (no spaces), at most {MAX_BEARER_CHARS}"
            )
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"FLEETBED_PORT must be 1..65535, got {self.port}")
        if not 1 <= self.workers <= 256:
            raise SettingsError(f"FLEETBED_WORKERS must be 1..256, got {self.workers}")
        if self.enroll_key is not None and len(self.enroll_key) < 8:
            raise SettingsError("FLEETBED_ENROLL_KEY must be at least 8 characters when set")
        if self.login_rate_per_s < 0 or self.login_burst < 1:
            raise SettingsError("FLEETBED_LOGIN_RATE_PER_S must be >= 0 (0: no limit) and FLEETBED_LOGIN_BURST >= 1")
        if not 3600 <= self.max_reading_age_s <= 10 * 365 * 86400:
            raise SettingsError("FLEETBED_MAX_READING_AGE_S must be between 3600 (an hour) and 10 years in seconds")
        if self.token_ttl_s < 60:
            raise SettingsError("FLEETBED_TOKEN_TTL_S must be at least 60 seconds")
        if not 1 <= self.max_batch <= MAX_BATCH_READINGS:
            raise SettingsError(f"the batch limit must be 1..{MAX_BATCH_READINGS} readings")
        for name, value in (
            ("FLEETBED_DB_TIMEOUT_S", self.db_timeout_s),
            ("FLEETBED_INGEST_WAIT_S", self.ingest_wait_s),
            ("FLEETBED_BODY_TIMEOUT_S", self.body_timeout_s),
            ("FLEETBED_KEEPALIVE_TIMEOUT_S", self.keepalive_timeout_s),
            ("FLEETBED_DRAIN_TIMEOUT_S", self.drain_timeout_s),
        ):
            if not 0 < value <= 3600:
                raise SettingsError(f"{name} must be a number of seconds in (0, 3600], got {value}")
        if not 1 <= self.ingest_writers <= 16:
            raise SettingsError("FLEETBED_INGEST_WRITERS must be 1..16")
        if self.ingest_queue_readings < self.max_batch:
            raise SettingsError(f"FLEETBED_INGEST_QUEUE_READINGS must be at least {self.max_batch}")
        if not 1 <= self.pool_min_size <= self.pool_max_size:
            raise SettingsError("FLEETBED_POOL_MAX_SIZE must be at least 1 and not below the pool's minimum size")

    @property
    def listens_beyond_loopback(self) -> bool:
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return True

    @property
    def enrolment(self) -> str:
        """How new devices register: "key" (FLEETBED_ENROLL_KEY), "open", or "closed" (no key and listening
        beyond loopback without FLEETBED_ENROLL_OPEN: known devices log in, new ones are refused)."""
        if self.enroll_key is not None:
            return "key"
        return "open" if self.enroll_open or not self.listens_beyond_loopback else "closed"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `FLEETBED_*` variables; generate and store the secrets that are not given."""
        env = os.environ if environ is None else environ
        service_hosts = _int(env, "FLEETBED_SERVICE_HOSTS", 1)
        unshared = [name for name in ("FLEETBED_SECRET", "FLEETBED_OPERATOR_TOKEN") if not env.get(name)]
        if service_hosts > 1 and unshared:
            # Each host would generate its own: tokens signed by one would be refused by the others behind the
            # balancer, silently, one device at a time.
            raise SettingsError(
                f"FLEETBED_SERVICE_HOSTS={service_hosts}: the hosts must share one token key and operator token; "
                f"set {' and '.join(unshared)} to the same value on every host (e.g. python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        data_dir = Path(env.get("FLEETBED_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
        secret_text = env.get("FLEETBED_SECRET") or load_or_create_secret(data_dir, "token-signing-key")
        operator_token = env.get("FLEETBED_OPERATOR_TOKEN") or load_or_create_secret(data_dir, "operator-token")
        values: dict[str, object] = {
            "database_url": env.get("FLEETBED_DATABASE_URL") or None,
            "data_dir": data_dir,
            "host": env.get("FLEETBED_HOST", "127.0.0.1"),
            "port": _int(env, "FLEETBED_PORT", 8080),
            "workers": _int(env, "FLEETBED_WORKERS", 1),
            "secret": secret_text.encode(),
            "operator_token": operator_token,
            "enroll_key": env.get("FLEETBED_ENROLL_KEY") or None,
            "enroll_open": _flag(env, "FLEETBED_ENROLL_OPEN"),
            "login_rate_per_s": _float(env, "FLEETBED_LOGIN_RATE_PER_S", DEFAULT_LOGIN_RATE_PER_S),
            "login_burst": _int(env, "FLEETBED_LOGIN_BURST", DEFAULT_LOGIN_BURST),
            "max_reading_age_s": _int(env, "FLEETBED_MAX_READING_AGE_S", DEFAULT_MAX_READING_AGE_S),
            "token_ttl_s": _int(env, "FLEETBED_TOKEN_TTL_S", 7 * 24 * 3600),
            "default_interval_s": _int(env, "FLEETBED_COMMAND_INTERVAL_S", 30),
            "pool_min_size": _int(env, "FLEETBED_POOL_MIN_SIZE", 2),
            "pool_max_size": _int(env, "FLEETBED_POOL_MAX_SIZE", 10),
            "ingest_writers": _int(env, "FLEETBED_INGEST_WRITERS", 2),
            "ingest_queue_readings": _int(env, "FLEETBED_INGEST_QUEUE_READINGS", 50_000),
            "db_timeout_s": _float(env, "FLEETBED_DB_TIMEOUT_S", 5.0),
            "ingest_wait_s": _float(env, "FLEETBED_INGEST_WAIT_S", 10.0),
            "body_timeout_s": _float(env, "FLEETBED_BODY_TIMEOUT_S", 10.0),
            "keepalive_timeout_s": _float(env, "FLEETBED_KEEPALIVE_TIMEOUT_S", 75.0),
            "drain_timeout_s": _float(env, "FLEETBED_DRAIN_TIMEOUT_S", 30.0),
            "test_handler_cpu_ms": _float(env, "FLEETBED_TEST_HANDLER_CPU_MS", 0.0),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _number(env: Mapping[str, str], name: str, default: _N, kind: type[_N]) -> _N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        article = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name} must be {article}, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1/true/yes or 0/false/no, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float)


def load_or_create_secret(data_dir: Path, name: str) -> str:
    """Return the secret stored under the data dir, creating it (mode 0600) on first use.

    Creation uses O_EXCL so two processes starting at once agree on one value.
    """
    secrets_dir = data_dir / SECRETS_DIR_NAME
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_dir / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may have created the file a moment ago and not written it yet.
        for _ in range(50):
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.02)
        raise SettingsError(f"{path} is empty; delete it to have a new secret generated") from None
    with os.fdopen(fd, "w") as handle:
        value = secrets.token_urlsafe(32)
        handle.write(value + "\n")
    return value
