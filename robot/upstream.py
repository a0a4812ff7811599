"""Client for an OpenAI-compatible chat-completions API.

A small pooled HTTP/1.1 client (asyncio protocols + httptools' response parser; TLS via
the standard ssl module with the system CA store) rather than aiohttp's client, for the
same CPU reason as robot/http.py: a call costs tens of microseconds, not hundreds.

* Pool: keep-alive connections reused LIFO, at most ROBOT_UPSTREAM_CONCURRENCY open and
  in use at once (the concurrency cap); idle ones are closed after 30 s. A connection
  that fails or is interrupted mid-call is closed, never reused.
* Deadline: one overall ROBOT_UPSTREAM_TIMEOUT per chat covering the wait for a slot,
  connecting (also bounded by ROBOT_UPSTREAM_CONNECT_TIMEOUT), every attempt and the
  back-off sleeps; running out of it is a 504.
* Retries: 429, 500, 502, 503, 504 and connection failures are retried at most
  ROBOT_UPSTREAM_RETRIES times with exponential back-off and full jitter (base
  ROBOT_UPSTREAM_BACKOFF, cap ROBOT_UPSTREAM_BACKOFF_MAX; a Retry-After is honoured up to
  the cap). Any other status or an unusable answer is a 502 at once.
* Overload: more than ROBOT_UPSTREAM_MAX_PENDING callers waiting for a slot -> 503.
* Auth: ``Authorization: Bearer API_KEY``; API_SECRET, when set, goes in the header named
  by ROBOT_UPSTREAM_SECRET_HEADER (default ``X-API-Secret``) for platforms that want a
  key pair. DashScope's compatible mode, OpenAI and vLLM/Ollama need only the bearer key.
* Not supported: HTTP proxies, compressed responses (none are asked for), HTTP/2.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import urllib.parse

import httptools

from ._json import dumps, loads

RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
MAX_RESPONSE = 8 << 20
IDLE_SECONDS = 30.0


class UpstreamError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Conn(asyncio.Protocol):
    __slots__ = ("parser", "transport", "waiter", "status", "retry_after", "body", "size",
                 "closed", "done", "last_used", "no_length", "target")

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.transport = None
        self.waiter = None
        self.closed = False
        self.last_used = 0.0

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            if self.no_length and self.status:  # body delimited by close
                w.set_result(True)
            else:
                w.set_exception(ConnectionResetError("upstream closed the connection"))

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(ConnectionError("malformed response from upstream"))

    def eof_received(self):
        return False

    def _fail(self, exc):
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)
        self.close()

    def close(self):
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # parser callbacks
    def on_header(self, name, value):
        n = name.lower()
        if n == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif n in (b"content-length", b"transfer-encoding"):
            self.no_length = False

    def on_headers_complete(self):
        self.status = self.parser.get_status_code()

    def on_body(self, data):
        self.size += len(data)
        if self.size > MAX_RESPONSE:
            self._fail(ConnectionError("upstream response too large"))
            return
        self.body.append(data)

    def on_message_complete(self):
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(self.parser.should_keep_alive())

    def send(self, data: bytes, loop) -> asyncio.Future:
        self.status = 0
        self.retry_after = None
        self.body = []
        self.size = 0
        self.no_length = True
        self.waiter = loop.create_future()
        self.transport.write(data)
        return self.waiter


class Upstream:
    def __init__(self, settings):
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.attempts = 0
        self._waiting = 0
        self._idle: list[_Conn] = []
        self._open = 0
        self._ssl = None
        self.loop = None
        self.configure(settings)
        self._concurrency = settings.upstream_concurrency
        self._connect_timeout = settings.upstream_connect_timeout
        self._sem = None

    def configure(self, s) -> None:
        """Apply (re)loaded settings; safe while requests are in flight."""
        url = urllib.parse.urlsplit(s.chat_url)
        secure = url.scheme == "https"
        host = url.hostname or "localhost"
        port = url.port or (443 if secure else 80)
        target = (host, port, secure)
        if getattr(self, "_target", None) not in (None, target):
            self._drop_idle()
        self._target = target
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        default_port = 443 if secure else 80
        host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", "User-Agent: robot/1",
                 "Content-Type: application/json", "Accept: application/json"]
        if s.api_key:
            lines.append(f"Authorization: Bearer {s.api_key}")
        if s.api_secret:
            lines.append(f"{s.upstream_secret_header}: {s.api_secret}")
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.url = s.chat_url
        self.model = s.model
        self.timeout = s.upstream_timeout
        self.retries = s.upstream_retries
        self.backoff = s.upstream_backoff
        self.backoff_max = s.upstream_backoff_max
        self.max_pending = s.upstream_max_pending

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self._concurrency)

    async def close(self) -> None:
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def sweep(self) -> None:
        """Close connections idle for longer than IDLE_SECONDS."""
        if self.loop is None:
            return
        cutoff = self.loop.time() - IDLE_SECONDS
        keep = []
        for conn in self._idle:
            if conn.closed or conn.last_used < cutoff:
                conn.close()
            else:
                keep.append(conn)
        self._idle = keep

    def ready(self, now: float, window: float) -> bool:
        return self.last_ok is not None and now - self.last_ok <= window

    async def _connect(self) -> _Conn:
        host, port, secure = self._target
        if secure and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(_Conn, host, port, ssl=self._ssl if secure else None,
                                        server_hostname=host if secure else None),
            self._connect_timeout)
        conn.target = (host, port, secure)
        return conn

    async def complete(self, messages: list, params: dict | None = None) -> str:
        body = {"model": self.model, "messages": messages}
        if params:
            body.update(params)
        payload = dumps(body)
        if self._waiting >= self.max_pending and self._sem.locked():
            raise UpstreamError(503, "overloaded", "too many requests waiting for the AI API")
        try:
            async with asyncio.timeout(self.timeout):
                return await self._attempts(payload)
        except TimeoutError:
            self.last_error = "timeout"
            raise UpstreamError(504, "upstream_timeout", "the AI API did not answer in time") from None

    async def _one(self, payload: bytes):
        """One HTTP exchange: (status, body, retry_after). Raises OSError on failure."""
        self._waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
        conn = None
        reusable = False
        try:
            head = self._head + str(len(payload)).encode() + b"\r\n\r\n"
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    break
                conn = None
            fresh = conn is None
            if fresh:
                conn = await self._connect()
            try:
                keep = await conn.send(head + payload, self.loop)
            except (ConnectionError, OSError):
                if fresh:
                    raise
                # a reused connection the server had already closed: one fresh try
                conn.close()
                conn = await self._connect()
                keep = await conn.send(head + payload, self.loop)
            reusable = keep and not conn.closed
            body = conn.body[0] if len(conn.body) == 1 else b"".join(conn.body)
            return conn.status, body, conn.retry_after
        finally:
            if conn is not None:
                if reusable and conn.target == self._target:  # not if the URL was reloaded
                    conn.waiter = None
                    conn.last_used = self.loop.time()
                    self._idle.append(conn)
                else:
                    conn.close()
            self._sem.release()

    async def _attempts(self, payload: bytes) -> str:
        attempt = 0
        while True:
            self.attempts += 1
            try:
                status, data, retry_after = await self._one(payload)
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:  # incl. connect timeout
                status, data, retry_after = None, None, None
                failure = UpstreamError(502, "upstream_unreachable", "the AI API could not be reached")
                self.last_error = type(exc).__name__

            if status == 200:
                try:
                    reply = loads(data)["choices"][0]["message"]["content"]
                    if not isinstance(reply, str):
                        raise TypeError
                except (ValueError, KeyError, IndexError, TypeError):
                    self.last_error = "bad_response"
                    raise UpstreamError(502, "upstream_bad_response", "the AI API sent an unusable answer") from None
                self.last_ok = self.loop.time()
                return reply
            if status is not None:
                self.last_error = f"status {status}"
                if status not in RETRY_STATUSES:
                    raise UpstreamError(502, "upstream_error", f"the AI API answered {status}")
                failure = UpstreamError(
                    502, "upstream_rate_limited" if status == 429 else "upstream_error",
                    f"the AI API answered {status}")
            if attempt >= self.retries:
                raise failure
            delay = random.uniform(0, min(self.backoff_max, self.backoff * (2 ** attempt)))
            if retry_after:
                try:
                    delay = max(delay, min(float(retry_after), self.backoff_max))
                except ValueError:
                    pass
            attempt += 1
            await asyncio.sleep(delay)
