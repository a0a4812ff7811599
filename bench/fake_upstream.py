"""Fake OpenAI-compatible chat-completions server, for tests and benchmarks (loopback only).

CLI::

    python -m bench.fake_upstream [--host 127.0.0.1] [--port 0] [--mode full|fast]
                                  [--delay SECONDS] [--fail-status CODE] [--fail-count N]
                                  [--api-key KEY] [--port-file PATH]

    --port 0       pick a free port; the chosen port is printed as ``PORT=<n>`` on stdout
                   (and written to --port-file if given) once the server is listening.
    --mode full    (default) aiohttp server with the behaviour knobs and control API below.
    --mode fast    zero-latency raw-asyncio responder for saturation benchmarks: answers any
                   request with a fixed chat completion, parses nothing but the framing.
    --delay S      sleep S seconds before answering each completion (full mode).
    --fail-status / --fail-count
                   answer the next N completions with that status (N=-1: forever).
    --api-key K    answer 401 unless ``Authorization: Bearer K`` is sent.
    --host         must be a loopback address (127.0.0.0/8 or ::1); anything else is refused.

Endpoints (full mode):

    POST <any path ending in /chat/completions>
         -> 200 {"choices":[{"message":{"role":"assistant","content":"echo: <last user msg>"}}],...}
    GET  .../models                      -> a one-model list
    GET  /_requests                      -> the last 200 completion requests
                                            [{"path","headers","json"}]
    GET  /_stats                         -> {"count": completions seen, "max_inflight": most
                                            delayed completions at once, "state": {...}}
    POST /_control  {"delay", "fail_status", "fail_count", "retry_after", "bad_json_count",
                     "reply", "api_key"}      -> change behaviour (omitted keys unchanged)
    POST /_reset                         -> clear recorded requests, counters and failures

In-process use (tests): ``FakeUpstream().start_in_thread()`` returns the base URL;
``.state`` is the live behaviour dict, ``.requests`` the recorded list, ``.stop()`` ends it.

Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import signal
import sys
import threading
import time

from aiohttp import web

DEFAULT_STATE = {
    "delay": 0.0,
    "fail_status": 0,
    "fail_count": 0,
    "retry_after": None,
    "bad_json_count": 0,
    "reply": None,
    "api_key": None,
}

FAST_BODY = json.dumps({
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


def check_loopback(host: str) -> None:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise SystemExit(f"fake_upstream: refusing to listen on non-loopback address {host!r}")


class FakeUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **state):
        check_loopback(host)
        self.host, self.port = host, port
        self.state = dict(DEFAULT_STATE, **state)
        self.requests: collections.deque = collections.deque(maxlen=200)
        self.count = 0
        self.inflight = 0
        self.max_inflight = 0
        self._runner = None
        self._thread = None
        self._loop = None

    # -- behaviour -------------------------------------------------------
    async def completions(self, request: web.Request) -> web.Response:
        st = self.state
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.count += 1
        self.requests.append({"path": request.path, "headers": dict(request.headers), "json": body})
        if st["delay"]:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                await asyncio.sleep(st["delay"])
            finally:
                self.inflight -= 1
        if st["api_key"] is not None and request.headers.get("Authorization") != f"Bearer {st['api_key']}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if st["fail_count"]:
            if st["fail_count"] > 0:
                st["fail_count"] -= 1
            headers = {"Retry-After": str(st["retry_after"])} if st["retry_after"] is not None else None
            return web.json_response({"error": {"message": "injected failure"}},
                                     status=st["fail_status"] or 500, headers=headers)
        if st["bad_json_count"]:
            st["bad_json_count"] -= 1
            return web.Response(body=b"{not json", content_type="application/json")
        last = ""
        if isinstance(body, dict):
            for msg in reversed(body.get("messages") or []):
                if isinstance(msg, dict) and msg.get("role") == "user":
                    last = msg.get("content", "")
                    break
        content = st["reply"] if st["reply"] is not None else f"echo: {last}"
        return web.json_response({
            "id": f"chatcmpl-{self.count}", "object": "chat.completion", "created": int(time.time()),
            "model": (body or {}).get("model", "fake") if isinstance(body, dict) else "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    async def models(self, request):
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def get_requests(self, request):
        return web.json_response(list(self.requests))

    async def stats(self, request):
        return web.json_response({"count": self.count, "max_inflight": self.max_inflight,
                                  "state": self.state})

    async def control(self, request):
        data = await request.json()
        for key in DEFAULT_STATE:
            if key in data:
                self.state[key] = data[key]
        return web.json_response(self.state)

    async def reset(self, request=None):
        self.reset_sync()
        return web.json_response({"ok": True})

    def reset_sync(self):
        self.requests.clear()
        self.count = 0
        self.max_inflight = 0
        self.state.update(DEFAULT_STATE)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 << 20)
        app.router.add_get("/_requests", self.get_requests)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_control", self.control)
        app.router.add_post("/_reset", self.reset)
        app.router.add_get("/{p:.*}models", self.models)
        app.router.add_post("/{p:.*}chat/completions", self.completions)
        return app

    # -- running -----------------------------------------------------------
    async def start(self) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start_in_thread(self) -> str:
        ready = threading.Event()
        errors = []

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.start())
            except Exception as exc:  # pragma: no cover - surfaced below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.close())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            raise RuntimeError(f"fake upstream did not start: {errors}")
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None


class _FastProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive responder: fixed 200 chat completion for any request."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(FAST_BODY)).encode() + b"\r\n\r\n" + FAST_BODY)

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                length = int(head[i + 15: j if j >= 0 else len(head)].strip() or 0)
            total = end + 4 + length
            if len(buf) < total:
                break
            buf = buf[total:]
            out.append(self.RESPONSE)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))


async def _run_cli(args) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.mode == "fast":
        server = await loop.create_server(_FastProtocol, args.host, args.port, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        closer = server.close
    else:
        fake = FakeUpstream(args.host, args.port, delay=args.delay, fail_status=args.fail_status,
                            fail_count=args.fail_count, api_key=args.api_key)
        port = await fake.start()
        closer = None
    if args.port_file:
        with open(args.port_file, "w") as fh:
            fh.write(f"{port}\n")
    print(f"PORT={port}", flush=True)
    await stop.wait()
    if closer:
        closer()
    else:
        await fake.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fake_upstream", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=("full", "fast"), default="full")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--fail-status", type=int, default=0)
    p.add_argument("--fail-count", type=int, default=0)
    p.add_argument("--api-key", default=None)
    p.add_argument("--port-file", default=None)
    args = p.parse_args(argv)
    check_loopback(args.host)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_run_cli(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
