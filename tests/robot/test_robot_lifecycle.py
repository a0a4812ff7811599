"""Reload, history, hot-updated model files, logging, rotation and shutdown."""

import http.client
import json
import os
import signal
import subprocess
import threading
import time

from robot_harness import API_KEY, API_SECRET, TOKEN, request, wait_for

NEW_TOKEN = "rotated-token-ZYXWVUTSRQ9876543210"


def _chat_status(robot, token):
    return robot.chat(token=token).status


def test_sighup_rotates_token_and_keys_without_dropping_connections(robot, upstream):
    conn = http.client.HTTPConnection("127.0.0.1", robot.port, timeout=10)
    try:
        assert robot.chat(conn=conn).status == 200
        pid = robot.proc.pid
        robot.write_env({"ROBOT_TOKEN": NEW_TOKEN, "API_KEY": "sk-rotated", "API_SECRET": "sec-rotated"})
        robot.signal(signal.SIGHUP)
        assert wait_for(lambda: _chat_status(robot, NEW_TOKEN) == 200, timeout=10)
        # the same keep-alive connection still works, old token now refused
        assert robot.chat(conn=conn).status == 403
        assert robot.chat(token=NEW_TOKEN, conn=conn).status == 200
        assert robot.proc.pid == pid and robot.proc.poll() is None
    finally:
        conn.close()
    sent = upstream.requests[-1]["headers"]
    assert sent["Authorization"] == "Bearer sk-rotated"
    assert sent["X-API-Secret"] == "sec-rotated"
    reload_lines = [l for l in robot.log_lines() if l.get("event") == "reloaded"]
    assert reload_lines and set(reload_lines[-1]["changed"]) == {"ROBOT_TOKEN", "API_KEY", "API_SECRET"}


def test_env_precedence_process_env_then_file_rotation_wins(make_robot):
    pinned = "pinned-token-from-environment-123"
    robot = make_robot(env={"ROBOT_TOKEN": pinned})
    assert robot.chat(token=pinned).status == 200
    assert robot.chat(token=TOKEN).status == 403  # the file's value is overridden
    # SIGHUP with an unchanged file keeps the pinned value
    robot.signal(signal.SIGHUP)
    assert wait_for(lambda: any(l.get("event") == "reloaded" for l in robot.log_lines()))
    assert robot.chat(token=pinned).status == 200
    # rotating the value in the file takes effect
    robot.write_env({"ROBOT_TOKEN": NEW_TOKEN, "API_KEY": API_KEY, "API_SECRET": API_SECRET})
    robot.signal(signal.SIGHUP)
    assert wait_for(lambda: _chat_status(robot, NEW_TOKEN) == 200)
    assert robot.chat(token=pinned).status == 403


def test_reload_refuses_to_empty_the_token(robot):
    robot.write_env({"API_KEY": API_KEY})
    robot.signal(signal.SIGHUP)
    assert wait_for(lambda: any(l.get("event") == "reload_failed" for l in robot.log_lines()))
    assert robot.chat().status == 200


def test_missing_token_refuses_to_start_with_a_clear_message(make_robot, tmp_path):
    robot = make_robot(start=False, write_env_file=False)
    robot.start(wait=False)
    assert robot.proc.wait(15) == 2
    err = robot.stderr()
    assert "ROBOT_TOKEN is not set" in err and "refusing to start" in err
    assert "env_file_missing" in err


def test_missing_env_file_is_fine_with_token_in_environment(make_robot):
    robot = make_robot(env={"ROBOT_TOKEN": "environment-token-abcdefgh12345"}, write_env_file=False)
    assert robot.chat(token="environment-token-abcdefgh12345").status == 200
    assert "env_file_missing" in robot.stderr()


def test_history_is_bounded_and_per_session(make_robot, upstream):
    robot = make_robot(env={"ROBOT_HISTORY_MESSAGES": "4"})
    sid = robot.chat("m1").json["session_id"]
    for i in range(2, 6):
        r = robot.chat(f"m{i}", session_id=sid)
        assert r.status == 200 and r.json["session_id"] == sid
    msgs = upstream.requests[-1]["json"]["messages"]
    assert msgs == [
        {"role": "user", "content": "m3"}, {"role": "assistant", "content": "echo: m3"},
        {"role": "user", "content": "m4"}, {"role": "assistant", "content": "echo: m4"},
        {"role": "user", "content": "m5"},
    ]
    other = robot.chat("fresh", session_id="client-chosen-1")
    assert other.json["session_id"] == "client-chosen-1"
    assert upstream.requests[-1]["json"]["messages"] == [{"role": "user", "content": "fresh"}]


def test_history_survives_restart_in_sqlite(make_robot, upstream):
    robot = make_robot(subdir="persist")
    sid = robot.chat("remember me").json["session_id"]
    assert robot.stop() == 0
    assert (robot.data_dir / "robot.db").exists()
    robot.start()
    robot.chat("and now?", session_id=sid)
    assert upstream.requests[-1]["json"]["messages"][:2] == [
        {"role": "user", "content": "remember me"}, {"role": "assistant", "content": "echo: remember me"},
    ]


def test_sessions_expire(make_robot, upstream):
    robot = make_robot(env={"ROBOT_SESSION_TTL_SECONDS": "0.5"})
    sid = robot.chat("old").json["session_id"]
    time.sleep(0.8)
    robot.chat("new", session_id=sid)
    assert upstream.requests[-1]["json"]["messages"] == [{"role": "user", "content": "new"}]


def test_model_files_hot_update(robot, upstream):
    robot.chat()
    assert upstream.requests[-1]["json"]["messages"][0]["role"] == "user"
    prompt = robot.models_dir / "system_prompt.txt"
    prompt.write_text("You are Robot v1.\n")

    def system_is(text):
        robot.chat()
        first = upstream.requests[-1]["json"]["messages"][0]
        return first == {"role": "system", "content": text}

    assert wait_for(lambda: system_is("You are Robot v1."), timeout=10, interval=0.1)
    tmp = robot.models_dir / "p.tmp"
    tmp.write_text("You are Robot v2.")
    os.replace(tmp, prompt)
    assert wait_for(lambda: system_is("You are Robot v2."), timeout=10, interval=0.1)
    (robot.models_dir / "model.json").write_text(json.dumps({"model": "hot-model", "temperature": 0.3}))

    def model_is(name):
        robot.chat()
        return upstream.requests[-1]["json"].get("model") == name

    assert wait_for(lambda: model_is("hot-model"), timeout=10, interval=0.1)
    assert upstream.requests[-1]["json"]["temperature"] == 0.3
    (robot.models_dir / "model.json").write_text("{broken")  # bad file: old values stay
    assert wait_for(lambda: any(l.get("event") == "models_reload_failed" for l in robot.log_lines()))
    assert model_is("hot-model")
    prompt.unlink()
    assert wait_for(lambda: robot.chat() and upstream.requests[-1]["json"]["messages"][0]["role"] == "user",
                    timeout=10, interval=0.1)


def test_log_lines_are_structured_and_hold_no_secrets(robot, upstream):
    secret_message = "my-private-message-should-not-be-logged"
    robot.chat(secret_message, session_id="sess-log-1")
    robot.chat("x", token="wrong-token-guess-abcdef")
    robot.chat("y", token=None, headers={"Authorization": f"Bearer {TOKEN}"})
    request(robot.port, "GET", "/health?token=" + TOKEN)

    def reqs():
        lines = [l for l in robot.log_lines() if "status" in l]
        return lines if len(lines) >= 4 else None

    lines = wait_for(reqs)
    assert lines
    ok = next(l for l in lines if l.get("session") == "sess-log-1")
    assert ok["method"] == "POST" and ok["path"] == "/api/v1/chat" and ok["status"] == 200
    assert isinstance(ok["latency_ms"], (int, float)) and ok["latency_ms"] >= 0
    assert ok["time"].endswith("Z") and "T" in ok["time"]
    assert any(l["status"] == 403 and l.get("code") == "forbidden" for l in lines)
    assert any(l["path"] == "/health" for l in lines)
    text = robot.log_file.read_text() + robot.stderr()
    for secret in (TOKEN, API_KEY, API_SECRET, secret_message, "wrong-token-guess-abcdef", "echo: "):
        assert secret not in text


def test_log_reopened_after_rotation(robot):
    robot.chat()
    assert wait_for(lambda: any(l.get("status") == 200 for l in robot.log_lines()))
    rotated = robot.log_file.with_name("robot.log.1")
    os.rename(robot.log_file, rotated)  # what logrotate does (no copytruncate)
    robot.chat(session_id="after-rotation")
    assert wait_for(lambda: robot.log_file.exists() and
                    any(l.get("session") == "after-rotation" for l in robot.log_lines()))
    assert "after-rotation" not in rotated.read_text()
    # and SIGHUP reopens too (postrotate style)
    os.rename(robot.log_file, robot.log_file.with_name("robot.log.2"))
    robot.signal(signal.SIGHUP)
    assert wait_for(lambda: robot.log_file.exists() and
                    any(l.get("event") == "reloaded" for l in robot.log_lines()))


def test_sigterm_finishes_in_flight_requests_then_exits(make_robot, upstream):
    robot = make_robot(env={"ROBOT_SHUTDOWN_TIMEOUT": "10"})
    upstream.state.update(delay=1.0)
    results = {}

    def slow():
        results["r"] = robot.chat("slow one")

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: upstream.count >= 1)
    robot.signal(signal.SIGTERM)
    t.join(15)
    assert results["r"].status == 200 and results["r"].json["reply"] == "echo: slow one"
    assert robot.proc.wait(15) == 0
    try:
        request(robot.port, "GET", "/health", timeout=2)
        refused = False
    except OSError:
        refused = True
    assert refused
    events = [l.get("event") for l in robot.log_lines()]
    assert "stopping" in events and events[-1] == "stopped"


def test_sigterm_bounds_a_stuck_request(make_robot, upstream):
    robot = make_robot(env={"ROBOT_SHUTDOWN_TIMEOUT": "0.5", "ROBOT_UPSTREAM_TIMEOUT": "60"})
    upstream.state.update(delay=30.0)
    errors = []

    def stuck():
        try:
            robot.chat()
        except OSError as exc:
            errors.append(exc)

    t = threading.Thread(target=stuck)
    t.start()
    assert wait_for(lambda: upstream.count >= 1)
    robot.signal(signal.SIGTERM)
    try:
        code = robot.proc.wait(10)  # far below the stuck request's 30 s
    except subprocess.TimeoutExpired:
        code = None
    t.join(15)
    assert code == 0


def test_sighup_switches_upstream_url_and_model(robot, upstream):
    from bench.fake_upstream import FakeUpstream

    other = FakeUpstream(reply="from the second upstream")
    other.start_in_thread()
    try:
        assert robot.chat().json["reply"] == "echo: hello"
        robot.write_env({"ROBOT_TOKEN": TOKEN, "API_KEY": API_KEY, "API_SECRET": API_SECRET,
                         "ROBOT_UPSTREAM_URL": other.url + "/chat/completions", "ROBOT_MODEL": "m2"})
        robot.signal(signal.SIGHUP)
        assert wait_for(lambda: robot.chat().json.get("reply") == "from the second upstream")
        before = upstream.count
        for _ in range(3):  # pooled connections to the old upstream are not reused
            assert robot.chat().json["reply"] == "from the second upstream"
        assert upstream.count == before
        assert other.requests[-1]["json"]["model"] == "m2"
    finally:
        other.stop()


def test_log_survives_copytruncate(robot):
    robot.chat(session_id="before-truncate")
    assert wait_for(lambda: any(l.get("session") == "before-truncate" for l in robot.log_lines()))
    with open(robot.log_file, "r+b") as fh:  # what logrotate's copytruncate does
        fh.truncate(0)
    robot.chat(session_id="after-truncate")
    assert wait_for(lambda: any(l.get("session") == "after-truncate" for l in robot.log_lines()))
    data = robot.log_file.read_bytes()
    assert not data.startswith(b"\0")  # O_APPEND: no hole where the old content was
    assert b"before-truncate" not in data


def test_unwritable_log_falls_back_to_stderr(make_robot, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    robot = make_robot(env={"ROBOT_LOG_FILE": str(blocker / "robot.log")})
    robot.chat(session_id="to-stderr")
    assert wait_for(lambda: "to-stderr" in robot.stderr())
    assert "cannot open log file" in robot.stderr()
