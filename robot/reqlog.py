"""Buffered structured log: one JSON line per request, plus event lines.

Lines are appended to an in-memory buffer and written with one write() every
``flush`` seconds (or when 64 KiB accumulate), so logging costs a dict and a
serialisation per request rather than a syscall. At each flush the path is stat()ed;
if the file was renamed or removed (logrotate without copytruncate), it is reopened,
so rotation works with or without a postrotate SIGHUP; with copytruncate the O_APPEND
descriptor just continues at the new end of the file. SIGHUP also reopens. If the file
cannot be opened the lines go to stderr (journald) and the open is retried at the next
flush.

What is logged: time, method, path (no query string), status, latency_ms, session,
client, code. Never the token, API keys, request or reply bodies.
"""

from __future__ import annotations

import os
import sys
import time
from time import perf_counter

from ._json import dumps

_MAX_BUFFER = 1 << 16


class RequestLog:
    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._buf: list[bytes] = []
        self._size = 0
        self._sec = -1
        self._prefix = ""
        self._warned = False

    # -- file handling -------------------------------------------------
    def open(self) -> bool:
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            if not self._warned:
                sys.stderr.write(f"robot: cannot open log file {self.path}: {exc.strerror}; logging to stderr\n")
                sys.stderr.flush()
                self._warned = True
            if self.fd is not None:  # don't keep writing into a rotated-away file
                try:
                    os.close(self.fd)
                except OSError:
                    pass
                self.fd = None
                self._ident = None
            return False
        old, self.fd = self.fd, fd
        st = os.fstat(fd)
        self._ident = (st.st_dev, st.st_ino)
        self._warned = False
        if old is not None:
            try:
                os.close(old)
            except OSError:
                pass
        return True

    def reopen(self) -> None:
        self.flush()
        self.open()

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    # -- writing ---------------------------------------------------------
    def now(self) -> str:
        t = time.time()
        sec = int(t)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{int((t - sec) * 1000):03d}Z"

    def write(self, record: dict) -> None:
        line = dumps(record) + b"\n"
        self._buf.append(line)
        self._size += len(line)
        if self._size >= _MAX_BUFFER:
            self.flush(check=False)

    def event(self, event: str, level: str = "info", echo: bool = False, **fields) -> None:
        record = {"time": self.now(), "level": level, "event": event, **fields}
        self.write(record)
        if echo or level in ("error", "warning"):
            sys.stderr.write("robot: " + dumps(record).decode() + "\n")
            sys.stderr.flush()

    def flush(self, check: bool = True) -> None:
        if check and (self.fd is None or self._rotated()):
            self.open()
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        if self.fd is None:
            sys.stderr.buffer.write(data)
            sys.stderr.flush()
            return
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            sys.stderr.write(f"robot: log write failed: {exc.strerror}\n")
            sys.stderr.buffer.write(bytes(view))
            sys.stderr.flush()

    def access(self, req, status: int) -> None:
        """One line per request (called by the HTTP server after the response is written)."""
        path = req.path
        if len(path) > 200:
            path = path[:200] + "..."
        rec = {
            "time": self.now(),
            "method": req.method,
            "path": path,
            "status": status,
            "latency_ms": round((perf_counter() - req.t0) * 1000, 3),
            "session": req.session,
            "client": req.client or req.peer,
        }
        if req.code:
            rec["code"] = req.code
        self.write(rec)

    def close(self) -> None:
        self.flush(check=False)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
