"""The robot's HTTP service: routes, checks, lifecycle (signals), housekeeping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import signal
import sys
import time

from . import __version__
from ._json import dumps, loads
from .config import ConfigError, ConfigSource, Settings
from .history import HistoryStore
from .models import ModelFiles
from .ratelimit import RateLimiter, retry_after
from .http import HttpServer
from .reqlog import RequestLog
from .upstream import Upstream, UpstreamError

SESSION_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_HEALTH = b'{"status":"ok"}'


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def error(req, status: int, code: str, message: str, headers=None):
    req.code = code
    return status, dumps({"error": message, "code": code}), headers


class Robot:
    def __init__(self, source: ConfigSource, settings: Settings, log: RequestLog):
        self.source = source
        self.settings = settings
        self.log = log
        self._token_digest = _digest(settings.token)
        self.limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
        self.trusted = frozenset(settings.trusted_proxies)
        self.upstream = Upstream(settings)
        self.history = HistoryStore(settings.db_path, settings.history_messages,
                                    settings.session_ttl, settings.session_cache)
        self.models = ModelFiles(settings.models_dir)
        self.max_body = settings.max_body_bytes
        self.max_chars = settings.max_message_chars
        self._tasks: list[asyncio.Task] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.history.open()
        await self.upstream.start()
        self._scan_models()
        s = self.settings
        self._tasks = [
            asyncio.create_task(self._every(s.history_flush, self._flush_history)),
            asyncio.create_task(self._every(s.log_flush, self._flush_log)),
            asyncio.create_task(self._every(s.models_poll, self._poll_models)),
            asyncio.create_task(self._every(5.0, self._sweep)),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upstream.close()
        try:
            await self._flush_history()
        finally:
            self.history.close()
        self.log.flush()

    async def _every(self, interval: float, fn) -> None:
        last_error, last_logged = None, 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep housekeeping alive, say what broke (not 20x/s)
                text = f"{type(exc).__name__}: {exc}"[:300]
                now = time.monotonic()
                if text != last_error or now - last_logged > 60.0:
                    self.log.event("housekeeping_error", "error", task=fn.__name__, error=text)
                    last_error, last_logged = text, now

    async def _flush_history(self) -> None:
        await self.history.flush()

    async def _flush_log(self) -> None:
        self.log.flush()

    async def _poll_models(self) -> None:
        self._scan_models()

    async def _sweep(self) -> None:
        self.limiter.sweep(time.monotonic())
        self.upstream.sweep()

    def _scan_models(self) -> None:
        for name, err in self.models.scan():
            if err:
                self.log.event("models_reload_failed", "error", file=name, error=err)
            else:
                self.log.event("models_reloaded", file=name)

    def reload(self) -> None:
        """SIGHUP: re-read the env file, reopen the log, rescan the models dir."""
        self.log.reopen()
        try:
            settings, changed = self.source.reload()
        except ConfigError as exc:
            self.log.event("reload_failed", "error", error=str(exc))
        else:
            self.settings = settings
            self._token_digest = _digest(settings.token)
            self.upstream.configure(settings)
            self.limiter.configure(settings.rate_limit_rps, settings.rate_limit_burst)
            self.log.event("reloaded", changed=changed)  # key names only, never values
        self._scan_models()
        self.log.flush()

    # -- helpers -------------------------------------------------------------
    def client_of(self, req) -> str:
        peer = req.peer
        if peer in self.trusted:
            headers = req.headers
            real = headers.get("x-real-ip")
            if not real:
                fwd = headers.get("x-forwarded-for")
                if fwd:
                    real = fwd.rsplit(",", 1)[-1]
            if real:
                real = real.strip()[:64]
                if real:
                    return real
        return peer

    def token_ok(self, token) -> bool:
        if not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(_digest(token), self._token_digest)

    # -- routing and handlers ----------------------------------------------------
    def handle(self, req):
        """Route a request; returns a response tuple or a coroutine producing one."""
        path = req.path
        if path == "/api/v1/chat":
            return self.chat(req)
        if path == "/health":
            if req.method in ("GET", "POST", "HEAD"):
                return 200, _HEALTH, None
            return error(req, 405, "method_not_allowed", "use GET or POST", (("Allow", "GET, POST"),))
        if path == "/ready":
            return self.ready(req)
        return error(req, 404, "not_found", "no such endpoint")

    def internal_error(self, req, exc):
        self.log.event("internal_error", "error", error=type(exc).__name__)
        return error(req, 500, "internal_error", "internal error")

    def ready(self, req):
        ok = self.upstream.ready(self.loop.time(), self.settings.ready_window)
        body = {"status": "ready" if ok else "not_ready"}
        if not ok:
            body["reason"] = ("no_answer_yet" if self.upstream.last_ok is None
                              else "no_recent_answer")
        return (200 if ok else 503), dumps(body), None

    def chat(self, req):
        """Synchronous checks; only a valid chat turns into a coroutine (upstream call)."""
        if req.method != "POST":
            return error(req, 405, "method_not_allowed", "use POST", (("Allow", "POST"),))
        client = self.client_of(req)
        req.client = client
        wait = self.limiter.allow(client, time.monotonic())
        if wait:
            return error(req, 429, "rate_limited", "too many requests",
                         (("Retry-After", retry_after(wait)),))

        headers = req.headers
        header_token = None
        auth = headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            header_token = value.strip() if scheme.lower() == "bearer" else ""
            if not self.token_ok(header_token):
                return error(req, 403, "forbidden", "invalid or missing token")
        # (the HTTP layer already answered 413 for bodies over ROBOT_MAX_BODY_BYTES)
        try:
            data = loads(req.body)
        except ValueError:
            return error(req, 400, "invalid_json", "body is not valid JSON")
        if type(data) is not dict:
            return error(req, 400, "invalid_json", "body must be a JSON object")

        if header_token is None and not self.token_ok(data.get("token")):
            return error(req, 403, "forbidden", "invalid or missing token")

        message = data.get("message")
        if type(message) is not str or not message.strip():
            return error(req, 400, "missing_message", "message is missing or empty")
        if len(message) > self.max_chars:
            return error(req, 400, "message_too_long", f"message over {self.max_chars} characters")

        session_id = data.get("session_id")
        if session_id is None or session_id == "":
            # time-ordered prefix: new sessions append to the end of the SQLite b-tree
            # instead of landing on random pages (keeps the writer fast as the db grows);
            # 96 random bits make it unguessable
            session_id = f"{time.time_ns() // 1_000_000:011x}{secrets.token_hex(12)}"
            history = []
        elif type(session_id) is str and SESSION_RE.fullmatch(session_id):
            history = self.history.get(session_id)
        else:
            return error(req, 400, "invalid_session_id",
                         "session_id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        req.session = session_id
        return self._converse(req, session_id, history, message)

    async def _converse(self, req, session_id, history, message):
        user = {"role": "user", "content": message}
        prompt = self.models.system_prompt
        if prompt:
            messages = [{"role": "system", "content": prompt}, *history, user]
        else:
            messages = [*history, user]
        try:
            reply = await self.upstream.complete(messages, self.models.params)
        except UpstreamError as exc:
            return error(req, exc.status, exc.code, exc.message)
        self.history.append(session_id, history, user, {"role": "assistant", "content": reply})
        if self.history.backlogged():  # the disk can't keep up: slow callers, not memory
            await self.history.wait_drained()
        return 200, dumps({"reply": reply, "session_id": session_id}), None


async def serve(source: ConfigSource, settings: Settings, log: RequestLog) -> int:
    robot = Robot(source, settings, log)
    try:
        await robot.start()
    except Exception as exc:
        log.event("start_failed", "error", error=f"{type(exc).__name__}: {exc}"[:300])
        log.close()
        return 1
    server = HttpServer(robot.handle, log.access, robot.internal_error, settings.max_body_bytes,
                        keepalive_timeout=settings.keepalive_timeout,
                        request_timeout=settings.request_timeout)
    try:
        await server.start(settings.host, settings.port)
    except OSError as exc:
        log.event("listen_failed", "error", host=settings.host, port=settings.port, error=exc.strerror)
        await robot.close()
        log.close()
        return 1

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, robot.reload)
    log.event("started", echo=True, version=__version__, host=settings.host, port=settings.port,
              pid=os.getpid(), upstream=settings.chat_url, model=settings.model,
              loop=type(loop).__module__.split(".")[0])
    log.flush()

    await stop.wait()
    log.event("stopping", echo=True, shutdown_timeout=settings.shutdown_timeout)
    aborted = await server.shutdown(settings.shutdown_timeout)
    await robot.close()
    log.event("stopped", echo=True, aborted_requests=aborted)
    log.close()
    return 0


def _one_malloc_arena() -> None:
    """glibc gives each thread its own malloc arena; the history writer thread's arena
    fragments and grew RSS by ~25 MiB over the first 60k requests in bench/run.py memory.
    One arena keeps RSS flat. MALLOC_ARENA_MAX in the environment, if set, wins."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX; a no-op where libc is not glibc
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    _one_malloc_arena()
    source = ConfigSource()
    try:
        settings = source.load()
    except ConfigError as exc:
        sys.stderr.write(f"robot: configuration error: {exc}\n")
        return 2
    log = RequestLog(settings.log_file)
    log.open()
    if source.file_error:
        log.event("env_file_missing", "warning", error=source.file_error)
    if not settings.token:
        log.event(
            "no_token", "error",
            error=f"ROBOT_TOKEN is not set (process environment or {source.env_file}); "
                  "refusing to start: nobody could use the robot",
        )
        log.close()
        return 2
    if len(settings.token) < 16:
        log.event("weak_token", "warning", error="ROBOT_TOKEN is shorter than 16 characters")
    if not settings.api_key:
        log.event("no_api_key", "warning", error="API_KEY is not set; the AI API will likely refuse calls")

    if os.environ.get("ROBOT_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            uvloop = None
        if uvloop is not None:
            return uvloop.run(serve(source, settings, log))
    return asyncio.run(serve(source, settings, log))
