"""Settings: process environment overlaid on the env file, with SIGHUP reload.

Precedence (documented in robot/README.md):

* At start, every setting is read from the process environment first, then from the
  env file named by ``ROBOT_ENV_FILE`` (default ``/opt/robot/config/.env``), then the
  built-in default.
* On SIGHUP the env file is read again. For each *reloadable* key (token, keys,
  upstream, model, rate limits) whose value **in the file** changed since the file was
  last read, the file's new value takes effect. So a value pinned in the process
  environment stays in force until an operator actually rotates it in the file, and a
  rotation (rewrite the file, send SIGHUP) always wins. Listening address, port and
  directories are not reloadable (they need a restart).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

DEFAULT_ENV_FILE = "/opt/robot/config/.env"
DEFAULT_UPSTREAM_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
DEFAULT_MODEL = "qwen-plus"

# Keys a SIGHUP may change.
RELOADABLE = (
    "ROBOT_TOKEN",
    "API_KEY",
    "API_SECRET",
    "ROBOT_UPSTREAM_URL",
    "ROBOT_MODEL",
    "ROBOT_RATE_LIMIT_RPS",
    "ROBOT_RATE_LIMIT_BURST",
)
SECRET_KEYS = ("ROBOT_TOKEN", "API_KEY", "API_SECRET")


class ConfigError(Exception):
    """A setting has an unusable value (message names the key, never a secret)."""


def parse_env_file(text: str) -> dict[str, str]:
    """Parse KEY=VALUE lines; '#' comments, blank lines, 'export ' and quotes allowed."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def _num(raw: Mapping[str, str], key: str, default, kind=float, minimum=None):
    value = raw.get(key, "")
    if value == "":
        return default
    try:
        parsed = kind(value)
    except ValueError:
        raise ConfigError(f"{key} must be a {'integer' if kind is int else 'number'}, got {value!r}") from None
    if minimum is not None and parsed < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value!r}")
    return parsed


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 18789
    token: str = ""
    api_key: str = ""
    api_secret: str = ""
    upstream_url: str = DEFAULT_UPSTREAM_URL
    model: str = DEFAULT_MODEL
    data_dir: str = "/opt/robot/data"
    models_dir: str = "/opt/robot/models"
    log_file: str = "/var/log/robot/robot.log"
    env_file: str = DEFAULT_ENV_FILE
    # limits
    max_body_bytes: int = 65536
    max_message_chars: int = 4000
    history_messages: int = 20
    session_ttl: float = 86400.0
    session_cache: int = 4096
    rate_limit_rps: float = 60.0
    rate_limit_burst: float = 120.0
    trusted_proxies: tuple = ("127.0.0.1", "::1")
    # upstream
    upstream_timeout: float = 60.0
    upstream_connect_timeout: float = 5.0
    upstream_retries: int = 2
    upstream_backoff: float = 0.2
    upstream_backoff_max: float = 2.0
    upstream_concurrency: int = 64
    upstream_max_pending: int = 1024
    upstream_secret_header: str = "X-API-Secret"
    # lifecycle
    shutdown_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    request_timeout: float = 30.0
    models_poll: float = 2.0
    ready_window: float = 300.0
    log_flush: float = 0.5
    history_flush: float = 0.05

    @property
    def chat_url(self) -> str:
        """ROBOT_UPSTREAM_URL may be a base URL (…/v1) or the full …/chat/completions."""
        url = self.upstream_url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        return url + "/chat/completions"

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "robot.db")


def settings_from(raw: Mapping[str, str], env_file: str) -> Settings:
    """Build Settings from an already merged mapping; raises ConfigError."""
    g = raw.get
    proxies = g("ROBOT_TRUSTED_PROXIES")
    trusted = tuple(p.strip() for p in (proxies if proxies is not None else "127.0.0.1,::1").split(",") if p.strip())
    for key in ("ROBOT_TOKEN", "API_KEY", "API_SECRET", "ROBOT_UPSTREAM_SECRET_HEADER"):
        value = g(key) or ""
        if any(c in value for c in "\r\n\0") or (key != "ROBOT_TOKEN" and not (value.isascii() and value.isprintable())):
            raise ConfigError(f"{key} contains control or non-ASCII characters")  # never echo it
    header = g("ROBOT_UPSTREAM_SECRET_HEADER") or "X-API-Secret"
    if not all(c.isalnum() or c == "-" for c in header):
        raise ConfigError("ROBOT_UPSTREAM_SECRET_HEADER must be a header name (letters, digits, -)")
    upstream_url = g("ROBOT_UPSTREAM_URL") or DEFAULT_UPSTREAM_URL
    if not upstream_url.startswith(("http://", "https://")):
        raise ConfigError("ROBOT_UPSTREAM_URL must start with http:// or https://")
    return Settings(
        host=g("ROBOT_HOST") or "0.0.0.0",
        port=_num(raw, "ROBOT_PORT", 18789, int, 0),
        token=g("ROBOT_TOKEN", ""),
        api_key=g("API_KEY", ""),
        api_secret=g("API_SECRET", ""),
        upstream_url=upstream_url,
        model=g("ROBOT_MODEL") or DEFAULT_MODEL,
        data_dir=g("ROBOT_DATA_DIR") or "/opt/robot/data",
        models_dir=g("ROBOT_MODELS_DIR") or "/opt/robot/models",
        log_file=g("ROBOT_LOG_FILE") or "/var/log/robot/robot.log",
        env_file=env_file,
        max_body_bytes=_num(raw, "ROBOT_MAX_BODY_BYTES", 65536, int, 256),
        max_message_chars=_num(raw, "ROBOT_MAX_MESSAGE_CHARS", 4000, int, 1),
        history_messages=_num(raw, "ROBOT_HISTORY_MESSAGES", 20, int, 0),
        session_ttl=_num(raw, "ROBOT_SESSION_TTL_SECONDS", 86400.0, float, 0.1),
        session_cache=_num(raw, "ROBOT_SESSION_CACHE", 4096, int, 1),
        rate_limit_rps=_num(raw, "ROBOT_RATE_LIMIT_RPS", 60.0, float, 0),
        rate_limit_burst=_num(raw, "ROBOT_RATE_LIMIT_BURST", 120.0, float, 1),
        trusted_proxies=trusted,
        upstream_timeout=_num(raw, "ROBOT_UPSTREAM_TIMEOUT", 60.0, float, 0.01),
        upstream_connect_timeout=_num(raw, "ROBOT_UPSTREAM_CONNECT_TIMEOUT", 5.0, float, 0.01),
        upstream_retries=_num(raw, "ROBOT_UPSTREAM_RETRIES", 2, int, 0),
        upstream_backoff=_num(raw, "ROBOT_UPSTREAM_BACKOFF", 0.2, float, 0),
        upstream_backoff_max=_num(raw, "ROBOT_UPSTREAM_BACKOFF_MAX", 2.0, float, 0),
        upstream_concurrency=_num(raw, "ROBOT_UPSTREAM_CONCURRENCY", 64, int, 1),
        upstream_max_pending=_num(raw, "ROBOT_UPSTREAM_MAX_PENDING", 1024, int, 0),
        upstream_secret_header=g("ROBOT_UPSTREAM_SECRET_HEADER") or "X-API-Secret",
        shutdown_timeout=_num(raw, "ROBOT_SHUTDOWN_TIMEOUT", 10.0, float, 0),
        keepalive_timeout=_num(raw, "ROBOT_KEEPALIVE_TIMEOUT_SECONDS", 75.0, float, 0.1),
        request_timeout=_num(raw, "ROBOT_REQUEST_TIMEOUT_SECONDS", 30.0, float, 0.1),
        models_poll=_num(raw, "ROBOT_MODELS_POLL_SECONDS", 2.0, float, 0.05),
        ready_window=_num(raw, "ROBOT_READY_WINDOW_SECONDS", 300.0, float, 0.1),
        log_flush=_num(raw, "ROBOT_LOG_FLUSH_SECONDS", 0.5, float, 0.01),
        history_flush=_num(raw, "ROBOT_HISTORY_FLUSH_SECONDS", 0.05, float, 0.001),
    )


class ConfigSource:
    """Holds the merged key/value view and applies the reload rule above."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)
        self.env_file = self.environ.get("ROBOT_ENV_FILE") or DEFAULT_ENV_FILE
        self.file_values: dict[str, str] = {}
        self.file_error: str | None = None
        self.merged: dict[str, str] = {}

    def _read_file(self) -> dict[str, str]:
        try:
            with open(self.env_file, encoding="utf-8") as fh:
                text = fh.read(1 << 20)
        except FileNotFoundError:
            self.file_error = f"env file {self.env_file} does not exist"
            return {}
        except OSError as exc:
            self.file_error = f"env file {self.env_file} cannot be read: {exc.strerror}"
            raise ConfigError(self.file_error) from exc
        self.file_error = None
        return parse_env_file(text)

    def load(self) -> Settings:
        try:
            self.file_values = self._read_file()
        except ConfigError:
            self.file_values = {}
        self.merged = {**self.file_values, **self.environ}
        return settings_from(self.merged, self.env_file)

    def reload(self) -> tuple[Settings, list[str]]:
        """Re-read the file; return new settings and the names of keys that changed.

        Raises ConfigError (and changes nothing) if the file cannot be read or the new
        values are invalid.
        """
        new_file = self._read_file()
        if self.file_error:  # vanished: keep what we have
            raise ConfigError(self.file_error)
        merged = dict(self.merged)
        changed = []
        for key in RELOADABLE:
            old_v, new_v = self.file_values.get(key), new_file.get(key)
            if old_v == new_v:
                continue
            if new_v is None:
                fallback = self.environ.get(key)
                if fallback is None:
                    merged.pop(key, None)
                else:
                    merged[key] = fallback
            else:
                merged[key] = new_v
            if merged.get(key) != self.merged.get(key):
                changed.append(key)
        settings = settings_from(merged, self.env_file)
        if not settings.token:
            raise ConfigError("ROBOT_TOKEN would become empty; keeping the current token")
        self.file_values, self.merged = new_file, merged
        return settings, changed
