"""A small HTTP/1.1 server on asyncio protocols and httptools (llhttp, Node's parser).

Why not aiohttp's server: on the 2-core target a bare aiohttp forwarder already spends
~600 us of CPU per request, which cannot reach the required 2,500 chat req/s once nginx,
the load generator and the upstream share the cores. This server does only what the
robot needs — JSON in, JSON out — and costs a fraction of that. Parsing (including
chunked bodies, request smuggling rules, duplicate Content-Length) is llhttp's.

What it handles: keep-alive and pipelining (answered in order; reading pauses past 16
queued requests or when the socket's write buffer is full), ``Expect: 100-continue``,
HEAD, limits (request line + headers 16 KiB -> 431, body over the limit -> 413 and
close, known from Content-Length before reading or while reading a chunked body),
malformed requests -> 400 and close, idle keep-alive timeout, a deadline for receiving
a started request (slow clients), and graceful shutdown (stop accepting, close idle
connections, finish in-flight requests within a bound, then abort).

Handlers get a ``Request`` and return ``(status, body, headers)`` or a coroutine that
returns it; the sync form answers without creating a task.
"""

from __future__ import annotations

import asyncio
import collections
import time
from email.utils import formatdate

import httptools

from ._json import dumps

MAX_HEAD = 16384
MAX_PIPELINE = 16

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}


def _status_line(code: int) -> bytes:
    line = _STATUS_LINES.get(code)
    if line is None:
        line = f"HTTP/1.1 {code} Status\r\n".encode()
    return line


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "peer", "t0", "keep_alive",
                 "session", "client", "code", "conn")

    def __init__(self, method, path, query, headers, body, peer, t0, keep_alive, conn):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.peer = peer
        self.t0 = t0
        self.keep_alive = keep_alive
        self.session = None
        self.client = None
        self.code = None
        self.conn = conn


class _Date:
    sec = -1
    value = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.sec:
            cls.sec = now
            cls.value = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return cls.value


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("srv", "loop", "parser", "transport", "peer", "url", "headers", "body",
                 "body_size", "head_size", "error", "queue", "busy", "closed", "msg_start",
                 "last_active", "in_message", "paused_write", "paused_read", "t0", "expect_sent", "eof")

    def __init__(self, srv: "HttpServer"):
        self.srv = srv
        self.loop = srv.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.peer = ""
        self.queue = collections.deque()
        self.busy = False
        self.closed = False
        self.in_message = False
        self.paused_write = False
        self.paused_read = False
        self.error = None
        self.eof = False
        self.last_active = self.loop.time()
        self._reset()

    def _reset(self):
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_size = 0
        self.head_size = 0
        self.expect_sent = False

    # -- transport events ------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        if self.peer.startswith("::ffff:"):  # IPv4 client on a dual-stack socket
            self.peer = self.peer[7:]
        self.srv.connections.add(self)
        if self.srv.stopping:
            transport.close()

    def connection_lost(self, exc):
        self.closed = True
        self.srv.connections.discard(self)

    def pause_writing(self):
        self.paused_write = True
        self._pause()

    def resume_writing(self):
        self.paused_write = False
        if len(self.queue) <= MAX_PIPELINE:
            self._resume()

    def _pause(self):
        if not self.paused_read and not self.closed:
            self.paused_read = True
            self.transport.pause_reading()

    def _resume(self):
        if self.paused_read and not self.closed:
            self.paused_read = False
            self.transport.resume_reading()

    def data_received(self, data):
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = self.error or (400, "upgrade_not_supported", "protocol upgrade is not supported")
        except httptools.HttpParserError:
            self.error = self.error or (400, "bad_http", "malformed HTTP request")
        if self.error is not None:
            if self.busy or self.queue:
                # answer the earlier pipelined requests first, then this error (in order)
                self._pause()
                self._dispatch()
                return
            self.fail(*self.error)
            return
        if self.queue and not self.busy:
            self._dispatch()

    def eof_received(self):
        # the client half-closed: answer what it already sent, then close
        self.eof = True
        if self.busy or self.queue:
            return True
        return False

    # -- parser callbacks ----------------------------------------------------
    def on_message_begin(self):
        self._reset()
        self.in_message = True
        self.t0 = time.perf_counter()
        self.msg_start = self.loop.time()

    def on_url(self, url):
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD:
            self.error = (431, "headers_too_large", "request line or headers too large")

    def on_header(self, name, value):
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD:
            self.error = (431, "headers_too_large", "request line or headers too large")
            return
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = val if old is None else old + ", " + val

    def on_headers_complete(self):
        if self.error:
            return
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.srv.max_body:
            self.error = (413, "body_too_large", f"request body over {self.srv.max_body} bytes")
            return
        if self.headers.get("expect", "").lower() == "100-continue" and not self.closed:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body):
        if self.error:
            return
        self.body_size += len(body)
        if self.body_size > self.srv.max_body:
            self.error = (413, "body_too_large", f"request body over {self.srv.max_body} bytes")
            return
        self.body.append(body)

    def on_message_complete(self):
        if self.error:
            return
        self.in_message = False
        parsed = httptools.parse_url(self.url) if self.url[:1] != b"/" else None
        if parsed is not None:
            path, query = parsed.path or b"/", parsed.query
        else:
            path, _, query = self.url.partition(b"?")
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        keep = self.parser.should_keep_alive() and self.parser.get_http_version() == "1.1"
        req = Request(self.parser.get_method().decode("latin-1"),
                      path.decode("utf-8", "replace"), query, self.headers, body,
                      self.peer, self.t0, keep, self)
        self.queue.append(req)
        if len(self.queue) > MAX_PIPELINE:
            self._pause()

    # -- dispatch ----------------------------------------------------------------
    def _dispatch(self):
        while self.queue and not self.busy and not self.closed:
            req = self.queue.popleft()
            try:
                result = self.srv.handler(req)
            except Exception as exc:  # never a trace on the wire
                result = self.srv.on_internal_error(req, exc)
            if type(result) is tuple:
                self.send(req, result)
            else:
                self.busy = True
                self.srv.inflight += 1
                task = self.loop.create_task(result)
                task.add_done_callback(lambda t, req=req: self._done(req, t))
                return
        if self.error is not None and not self.busy and not self.queue:
            self.fail(*self.error)
            return
        if not self.queue and not self.paused_write:
            self._resume()

    def _done(self, req, task):
        self.busy = False
        self.srv.inflight -= 1
        try:
            result = task.result()
        except BaseException as exc:  # includes cancellation at shutdown
            result = self.srv.on_internal_error(req, exc)
        self.send(req, result)
        if self.queue or self.error is not None:
            self._dispatch()
        elif not self.paused_write:
            self._resume()

    def send(self, req, result):
        status, body, headers = result
        srv = self.srv
        if self.closed:
            srv.log_access(req, status)
            return
        keep = req.keep_alive and not srv.stopping and not (self.eof and not self.queue)
        parts = [_status_line(status), b"Server: robot\r\n", _Date.get(),
                 b"Content-Type: application/json\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
        if headers:
            for name, value in headers:
                parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not keep:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if req.method != "HEAD":
            parts.append(body)
        self.transport.write(b"".join(parts))
        self.last_active = self.loop.time()
        srv.log_access(req, status)
        if not keep:
            self.closed = True
            self.transport.close()

    def fail(self, status, code, message):
        """Answer a request we could not parse or accept, then close the connection."""
        if self.closed:
            return
        req = Request("-", self.url[:200].decode("latin-1").partition("?")[0] or "-", b"", {}, b"",
                      self.peer, getattr(self, "t0", time.perf_counter()), False, self)
        req.code = code
        self.queue.clear()
        self.send(req, (status, dumps({"error": message, "code": code}), None))

    def idle(self) -> bool:
        return not self.busy and not self.queue and not self.in_message


class HttpServer:
    def __init__(self, handler, log_access, on_internal_error, max_body: int,
                 keepalive_timeout: float = 75.0, request_timeout: float = 30.0):
        self.handler = handler
        self.log_access = log_access
        self.on_internal_error = on_internal_error
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self.connections: set[HttpProtocol] = set()
        self.stopping = False
        self.inflight = 0
        self.loop = None
        self.server = None
        self._sweeper = None

    async def start(self, host: str, port: int, backlog: int = 2048):
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(
            lambda: HttpProtocol(self), host, port, backlog=backlog, reuse_address=True)
        self._sweeper = self.loop.create_task(self._sweep())
        return self.server.sockets[0].getsockname()

    async def _sweep(self):
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for conn in list(self.connections):
                if conn.closed or conn.busy or conn.queue:
                    continue
                if conn.in_message:
                    if now - conn.msg_start > self.request_timeout:
                        conn.fail(408, "request_timeout", "request not received in time")
                elif now - conn.last_active > self.keepalive_timeout:
                    conn.closed = True
                    conn.transport.close()

    async def shutdown(self, timeout: float) -> int:
        """Stop accepting; finish in-flight requests within timeout. Returns aborted count."""
        self.stopping = True
        self.server.close()
        for conn in list(self.connections):
            if conn.idle():
                conn.closed = True
                conn.transport.close()
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline and any(not c.idle() for c in self.connections if not c.closed):
            await asyncio.sleep(0.02)
        aborted = 0
        for conn in list(self.connections):
            if not conn.closed:
                aborted += 0 if conn.idle() else 1
                conn.closed = True
                conn.transport.abort()
        if self._sweeper:
            self._sweeper.cancel()
        try:
            await asyncio.wait_for(self.server.wait_closed(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        return aborted
