"""Pure-function pieces: env file parsing, precedence, rate limiter, history store."""

import asyncio

import pytest

from robot.config import ConfigError, ConfigSource, parse_env_file
from robot.history import HistoryStore
from robot.ratelimit import RateLimiter


def test_parse_env_file():
    text = "# comment\n\nexport A=1\nB = two words \nC='quoted'\nD=\"dq\"\nbad line\nE=x=y\n"
    assert parse_env_file(text) == {"A": "1", "B": "two words", "C": "quoted", "D": "dq", "E": "x=y"}


def test_precedence_and_reload(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("ROBOT_TOKEN=file1\nAPI_KEY=k1\nROBOT_PORT=1\n")
    src = ConfigSource({"ROBOT_ENV_FILE": str(env_file), "ROBOT_PORT": "2", "API_KEY": "envkey"})
    s = src.load()
    assert (s.token, s.api_key, s.port) == ("file1", "envkey", 2)
    env_file.write_text("ROBOT_TOKEN=file2\nAPI_KEY=k1\nROBOT_PORT=3\n")
    s, changed = src.reload()
    assert (s.token, s.api_key, s.port) == ("file2", "envkey", 2)  # port not reloadable
    assert changed == ["ROBOT_TOKEN"]
    env_file.write_text("ROBOT_TOKEN=file2\nAPI_KEY=k2\n")
    s, changed = src.reload()
    assert s.api_key == "k2" and changed == ["API_KEY"]
    env_file.write_text("API_KEY=k2\n")
    with pytest.raises(ConfigError):
        src.reload()
    assert src.merged["ROBOT_TOKEN"] == "file2"


def test_invalid_numbers_name_the_key(tmp_path):
    src = ConfigSource({"ROBOT_ENV_FILE": str(tmp_path / "none"), "ROBOT_PORT": "http"})
    with pytest.raises(ConfigError, match="ROBOT_PORT"):
        src.load()


def test_upstream_url_forms(tmp_path):
    for url, want in [("http://h/v1", "http://h/v1/chat/completions"),
                      ("http://h/v1/", "http://h/v1/chat/completions"),
                      ("http://h/x/chat/completions", "http://h/x/chat/completions")]:
        s = ConfigSource({"ROBOT_ENV_FILE": str(tmp_path / "n"), "ROBOT_UPSTREAM_URL": url}).load()
        assert s.chat_url == want


def test_rate_limiter_bucket_and_bound():
    rl = RateLimiter(rps=2, burst=2, max_clients=10)
    assert rl.allow("a", 0.0) == 0 and rl.allow("a", 0.0) == 0
    wait = rl.allow("a", 0.0)
    assert wait == pytest.approx(0.5)
    assert rl.allow("a", 0.5) == 0  # refilled one token
    for i in range(50):
        rl.allow(f"c{i}", 1.0)
    assert len(rl) <= 10
    rl.configure(0, 1)
    assert all(rl.allow("a", 1.0) == 0 for _ in range(100))


def test_history_store_bounds_cache_and_persistence(tmp_path):
    async def run():
        store = HistoryStore(str(tmp_path / "h.db"), max_messages=3, ttl=3600, cache_size=2)
        store.open()
        h = store.append("s1", [], {"role": "user", "content": "1"}, {"role": "assistant", "content": "2"})
        h = store.append("s1", h, {"role": "user", "content": "3"}, {"role": "assistant", "content": "4"})
        assert [m["content"] for m in h] == ["2", "3", "4"]
        for i in range(5):
            store.append(f"other{i}", [], {"role": "user", "content": "x"})
        assert len(store._cache) == 2
        assert [m["content"] for m in store.get("s1")] == ["2", "3", "4"]  # from the queue
        await store.flush()
        store._cache.clear()
        assert [m["content"] for m in store.get("s1")] == ["2", "3", "4"]  # from SQLite
        assert store.get("missing") == []
        store.close()

    asyncio.run(run())


def test_history_backpressure_when_the_writer_lags(tmp_path):
    async def run():
        store = HistoryStore(str(tmp_path / "b.db"), max_messages=4, ttl=3600)
        store.open()
        store.max_backlog = 3
        for i in range(5):
            store.append(f"s{i}", [], {"role": "user", "content": str(i)})
        assert store.backlogged()
        waiter = asyncio.ensure_future(store.wait_drained())
        await asyncio.sleep(0)
        assert not waiter.done()
        await store.flush()
        await asyncio.wait_for(waiter, 5)
        assert not store.backlogged()
        store._cache.clear()
        assert [m["content"] for m in store.get("s4")] == ["4"]
        store.close()

    asyncio.run(run())
