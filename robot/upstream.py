"""Client for an OpenAI-compatible chat-completions API.

One aiohttp ClientSession for the process (pooled keep-alive connections, bounded by
ROBOT_UPSTREAM_CONCURRENCY). Each call has one overall deadline
(ROBOT_UPSTREAM_TIMEOUT) covering queueing, every attempt and the back-off sleeps;
running out of it is a 504. 429, 500, 502, 503, 504 and connection failures are retried
at most ROBOT_UPSTREAM_RETRIES times with exponential back-off and full jitter
(honouring a Retry-After up to ROBOT_UPSTREAM_BACKOFF_MAX); any other error status or an
unparseable answer is a 502 at once. More than ROBOT_UPSTREAM_MAX_PENDING callers
waiting for a slot get a 503 straight away instead of queueing without bound.

Auth: ``Authorization: Bearer API_KEY``; when API_SECRET is set it is sent in the
header named by ROBOT_UPSTREAM_SECRET_HEADER (default ``X-API-Secret``) for platforms
that want a key pair. DashScope's compatible mode, OpenAI and vLLM/Ollama need only the
bearer key.
"""

from __future__ import annotations

import asyncio
import random

import aiohttp

from ._json import dumps, loads

RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))


class UpstreamError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Upstream:
    def __init__(self, settings):
        self.session: aiohttp.ClientSession | None = None
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.attempts = 0
        self._waiting = 0
        self.configure(settings)

    def configure(self, s) -> None:
        """Apply (re)loaded settings; safe to call while requests are in flight."""
        self.url = s.chat_url
        self.model = s.model
        self.timeout = s.upstream_timeout
        self.retries = s.upstream_retries
        self.backoff = s.upstream_backoff
        self.backoff_max = s.upstream_backoff_max
        self.max_pending = s.upstream_max_pending
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if s.api_key:
            headers["Authorization"] = "Bearer " + s.api_key
        if s.api_secret:
            headers[s.upstream_secret_header] = s.api_secret
        self.headers = headers
        if self.session is None:
            self._concurrency = s.upstream_concurrency
            self._connect_timeout = s.upstream_connect_timeout
            self._sem = asyncio.Semaphore(s.upstream_concurrency)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency,
            limit_per_host=self._concurrency,
            keepalive_timeout=30,
            ttl_dns_cache=300,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "robot/1"},
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def ready(self, now: float, window: float) -> bool:
        return self.last_ok is not None and now - self.last_ok <= window

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

    async def _attempts(self, payload: bytes) -> str:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            retry_after = None
            self._waiting += 1
            try:
                await self._sem.acquire()
            finally:
                self._waiting -= 1
            try:
                self.attempts += 1
                async with self.session.post(self.url, data=payload, headers=self.headers) as resp:
                    status = resp.status
                    data = await resp.read()
                    if status in RETRY_STATUSES:
                        retry_after = resp.headers.get("Retry-After")
            except aiohttp.ClientError as exc:
                status, data = None, None
                failure = UpstreamError(502, "upstream_unreachable", "the AI API could not be reached")
                self.last_error = type(exc).__name__
            finally:
                self._sem.release()

            if status == 200:
                try:
                    reply = loads(data)["choices"][0]["message"]["content"]
                    if not isinstance(reply, str):
                        raise TypeError
                except (ValueError, KeyError, IndexError, TypeError):
                    self.last_error = "bad_response"
                    raise UpstreamError(502, "upstream_bad_response", "the AI API sent an unusable answer") from None
                self.last_ok = loop.time()
                return reply
            if status is not None:
                self.last_error = f"status {status}"
                if status not in RETRY_STATUSES:
                    raise UpstreamError(502, "upstream_error", f"the AI API answered {status}")
                failure = UpstreamError(
                    502, "upstream_rate_limited" if status == 429 else "upstream_error",
                    f"the AI API answered {status}",
                )
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
