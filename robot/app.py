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
from time import perf_counter

from aiohttp import web

from . import __version__
from ._json import dumps, loads
from .config import ConfigError, ConfigSource, Settings
from .history import HistoryStore
from .models import ModelFiles
from .ratelimit import RateLimiter, retry_after
from .reqlog import AccessLog, RequestLog
from .upstream import Upstream, UpstreamError

SESSION_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_JSON = "application/json"
_HEALTH = b'{"status":"ok"}'


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def error(request, status: int, code: str, message: str, headers=None) -> web.Response:
    request["code"] = code
    return web.Response(status=status, body=dumps({"error": message, "code": code}),
                        content_type=_JSON, headers=headers)


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
            asyncio.create_task(self._every(30.0, self._sweep)),
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
        while True:
            await asyncio.sleep(interval)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep housekeeping alive, say what broke
                self.log.event("housekeeping_error", "error", task=fn.__name__, error=f"{type(exc).__name__}: {exc}"[:300])

    async def _flush_history(self) -> None:
        await self.history.flush()

    async def _flush_log(self) -> None:
        self.log.flush()

    async def _poll_models(self) -> None:
        self._scan_models()

    async def _sweep(self) -> None:
        self.limiter.sweep(time.monotonic())

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
    def client_of(self, request) -> str:
        peer = request.remote or ""
        if peer in self.trusted:
            headers = request.headers
            real = headers.get("X-Real-IP")
            if not real:
                fwd = headers.get("X-Forwarded-For")
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

    # -- handlers --------------------------------------------------------------
    async def health(self, request):
        request["t0"] = perf_counter()
        if request.method not in ("GET", "POST", "HEAD"):
            return error(request, 405, "method_not_allowed", "use GET or POST")
        return web.Response(body=_HEALTH, content_type=_JSON)

    async def ready(self, request):
        request["t0"] = perf_counter()
        ok = self.upstream.ready(self.loop.time(), self.settings.ready_window)
        body = {"status": "ready" if ok else "not_ready"}
        if not ok:
            body["reason"] = ("no_answer_yet" if self.upstream.last_ok is None
                              else "no_recent_answer")
        return web.Response(status=200 if ok else 503, body=dumps(body), content_type=_JSON)

    async def not_found(self, request):
        request["t0"] = perf_counter()
        return error(request, 404, "not_found", "no such endpoint")

    async def chat(self, request):
        request["t0"] = perf_counter()
        try:
            return await self._chat(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a stack trace to the client
            self.log.event("internal_error", "error", error=type(exc).__name__)
            return error(request, 500, "internal_error", "internal error")

    async def _chat(self, request):
        if request.method != "POST":
            return error(request, 405, "method_not_allowed", "use POST", {"Allow": "POST"})
        client = self.client_of(request)
        request["client"] = client
        wait = self.limiter.allow(client, time.monotonic())
        if wait:
            return error(request, 429, "rate_limited", "too many requests",
                         {"Retry-After": retry_after(wait)})

        header_token = None
        auth = request.headers.get("Authorization")
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            header_token = value.strip() if scheme.lower() == "bearer" else ""
            if not self.token_ok(header_token):
                return error(request, 403, "forbidden", "invalid or missing token")

        length = request.content_length
        if length is not None and length > self.max_body:
            return error(request, 413, "body_too_large", f"request body over {self.max_body} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(request, 413, "body_too_large", f"request body over {self.max_body} bytes")
        try:
            data = loads(raw)
        except ValueError:
            return error(request, 400, "invalid_json", "body is not valid JSON")
        if not isinstance(data, dict):
            return error(request, 400, "invalid_json", "body must be a JSON object")

        if header_token is None and not self.token_ok(data.get("token")):
            return error(request, 403, "forbidden", "invalid or missing token")

        message = data.get("message")
        if not isinstance(message, str) or not message.strip():
            return error(request, 400, "missing_message", "message is missing or empty")
        if len(message) > self.max_chars:
            return error(request, 400, "message_too_long", f"message over {self.max_chars} characters")

        session_id = data.get("session_id")
        if session_id is None or session_id == "":
            session_id = secrets.token_hex(16)
            history = []
        elif isinstance(session_id, str) and SESSION_RE.fullmatch(session_id):
            history = self.history.get(session_id)
        else:
            return error(request, 400, "invalid_session_id",
                         "session_id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        request["session"] = session_id

        user = {"role": "user", "content": message}
        prompt = self.models.system_prompt
        if prompt:
            messages = [{"role": "system", "content": prompt}, *history, user]
        else:
            messages = [*history, user]
        try:
            reply = await self.upstream.complete(messages, self.models.params)
        except UpstreamError as exc:
            return error(request, exc.status, exc.code, exc.message)

        self.history.append(session_id, history, user, {"role": "assistant", "content": reply})
        return web.Response(body=dumps({"reply": reply, "session_id": session_id}), content_type=_JSON)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, handler_args={"max_field_size": 8190})
        app.router.add_route("*", "/health", self.health)
        app.router.add_route("*", "/ready", self.ready)
        app.router.add_route("*", "/api/v1/chat", self.chat)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app


async def serve(source: ConfigSource, settings: Settings, log: RequestLog) -> int:
    robot = Robot(source, settings, log)
    try:
        await robot.start()
    except Exception as exc:
        log.event("start_failed", "error", error=f"{type(exc).__name__}: {exc}"[:300])
        log.close()
        return 1
    runner = web.AppRunner(
        robot.make_app(),
        access_log_class=AccessLog,
        access_log=log,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
        keepalive_timeout=75,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.event("listen_failed", "error", host=settings.host, port=settings.port, error=exc.strerror)
        await runner.cleanup()
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
    await runner.cleanup()  # stop accepting, let in-flight requests finish (bounded)
    await robot.close()
    log.event("stopped", echo=True)
    log.close()
    return 0


def main(argv=None) -> int:
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
