"""Bounded multi-turn history per session, in SQLite (WAL) under ROBOT_DATA_DIR.

Schema: one row per session ``sessions(id, updated, history)`` where ``history`` is a
JSON list of at most ``ROBOT_HISTORY_MESSAGES`` ``{"role", "content"}`` messages. One
row per session keeps a chat turn to a single-row read and a single-row upsert.

Writes are write-behind: ``put`` updates an in-memory LRU cache at once and queues the
row; every ``ROBOT_HISTORY_FLUSH_SECONDS`` (50 ms) the queued rows are written in one
transaction by a dedicated writer thread, so the event loop never waits for fsync. Reads
look in the queue, then the cache, then SQLite (a primary-key lookup on the loop's own
read connection; WAL lets it run alongside the writer). A crash can lose at most the
last flush interval of history; SIGTERM flushes everything.

Sessions idle longer than ``ROBOT_SESSION_TTL_SECONDS`` are treated as empty on read and
deleted by a sweep every minute.

Backups: ``sqlite3 robot.db ".backup ..."`` (or the sqlite3 module's backup API) copies a
consistent snapshot while the robot runs.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from ._json import dumps, loads

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    updated REAL NOT NULL,
    history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated);
"""


def _connect(path: str, cache_kib: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")  # bounded page cache
    return conn


class HistoryStore:
    def __init__(self, path: str, max_messages: int, ttl: float, cache_size: int = 4096):
        self.path = path
        self.max_messages = max_messages
        self.ttl = ttl
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[str, tuple[float, list]] = collections.OrderedDict()
        self._pending: dict[str, tuple[float, list]] = {}
        self._inflight: dict[str, tuple[float, list]] = {}
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robot-history")
        self._last_sweep = 0.0
        self.errors = 0
        self.max_backlog = 20000
        self._drained: asyncio.Event | None = None

    def open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._writer = _connect(self.path, 2048)
        self._writer.executescript(_SCHEMA)
        self._reader = _connect(self.path, 2048)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    # -- reads -----------------------------------------------------------
    def get(self, session_id: str) -> list:
        now = time.time()
        entry = self._pending.get(session_id) or self._inflight.get(session_id)
        if entry is None:
            entry = self._cache.get(session_id)
            if entry is not None:
                self._cache.move_to_end(session_id)
            else:
                row = self._reader.execute(
                    "SELECT updated, history FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
                if row is None:
                    return []
                entry = (row[0], loads(row[1]))
                self._remember(session_id, entry)
        if now - entry[0] > self.ttl:
            return []
        return entry[1]

    # -- writes ----------------------------------------------------------
    def backlogged(self) -> bool:
        """More queued rows than the writer should have to catch up on (disk too slow)."""
        return len(self._pending) > self.max_backlog

    async def wait_drained(self) -> None:
        """Back-pressure: wait for the running flush to finish (bounds queued rows)."""
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()
        await self._drained.wait()

    def append(self, session_id: str, history: list, *messages: dict) -> list:
        """Store history + messages, trimmed to the bound; returns the stored list."""
        new = history + list(messages)
        if len(new) > self.max_messages:
            new = new[len(new) - self.max_messages:] if self.max_messages else []
        entry = (time.time(), new)
        self._remember(session_id, entry)
        self._pending[session_id] = entry
        return new

    def _remember(self, session_id: str, entry) -> None:
        cache = self._cache
        cache[session_id] = entry
        cache.move_to_end(session_id)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _write_batch(self, batch: dict, sweep_before: float | None) -> None:
        # The whole batch is bound as ONE JSON parameter and upserted by one statement:
        # sqlite3 releases the GIL while a statement runs, so the writer thread needs the
        # GIL a handful of times per batch instead of once per row (with the event loop
        # busy, every GIL hand-over can wait up to the 5 ms switch interval).
        payload = dumps([[sid, e[0], e[1]] for sid, e in batch.items()]).decode()
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO sessions(id, updated, history) "
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]') FROM json_each(?) WHERE true "
                "ON CONFLICT(id) DO UPDATE SET updated = excluded.updated, history = excluded.history",
                (payload,),
            )
            if sweep_before is not None:
                conn.execute("DELETE FROM sessions WHERE updated < ?", (sweep_before,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def flush(self, sweep: bool = False) -> None:
        now = time.time()
        sweep_before = None
        if sweep or now - self._last_sweep > 60.0:
            self._last_sweep = now
            sweep_before = now - self.ttl
        if not self._pending and sweep_before is None:
            return
        batch, self._pending = self._pending, {}
        self._inflight = batch
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._write_batch, batch, sweep_before)
        except Exception:
            self.errors += 1
            # keep the rows for the next attempt unless newer ones replaced them
            for sid, entry in batch.items():
                self._pending.setdefault(sid, entry)
            raise
        finally:
            self._inflight = {}
            if self._drained is not None:
                self._drained.set()
        if sweep_before is not None:
            for sid in [s for s, e in self._cache.items() if e[0] < sweep_before]:
                del self._cache[sid]

    def close(self) -> None:
        if self._pending:
            self._write_batch(self._pending, None)
            self._pending = {}
        self._pool.shutdown(wait=True)
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
