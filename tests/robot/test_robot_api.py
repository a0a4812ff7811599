"""The guide's API: every status code, against a real robot process and a fake upstream."""

import http.client
import json

from robot_harness import API_KEY, API_SECRET, TOKEN, request, wait_for


def test_health_get_and_post(robot):
    for method in ("GET", "POST"):
        r = request(robot.port, method, "/health")
        assert r.status == 200
        assert r.json == {"status": "ok"}
        assert r.headers["Content-Type"].startswith("application/json")


def test_health_stays_ok_and_never_calls_upstream_while_it_is_down(make_robot):
    robot = make_robot(upstream_url="http://127.0.0.1:9/v1")  # discard port: refused
    for _ in range(3):
        assert request(robot.port, "GET", "/health").json == {"status": "ok"}
    r = robot.chat()
    assert r.status == 502 and r.json["code"] == "upstream_unreachable"
    assert request(robot.port, "GET", "/health").status == 200
    assert request(robot.port, "GET", "/ready").status == 503


def test_health_does_not_touch_upstream(robot, upstream):
    for _ in range(5):
        request(robot.port, "GET", "/health")
    assert upstream.count == 0


def test_ready_reflects_recent_upstream_answer(robot, upstream):
    r = request(robot.port, "GET", "/ready")
    assert r.status == 503 and r.json["status"] == "not_ready"
    assert robot.chat().status == 200
    r = request(robot.port, "GET", "/ready")
    assert r.status == 200 and r.json == {"status": "ready"}


def test_chat_ok_with_body_token(robot, upstream):
    r = robot.chat("hello robot")
    assert r.status == 200, r
    assert r.json["reply"] == "echo: hello robot"
    assert isinstance(r.json["session_id"], str) and len(r.json["session_id"]) >= 16
    sent = upstream.requests[-1]
    assert sent["json"]["model"] == "test-model"
    assert sent["json"]["messages"][-1] == {"role": "user", "content": "hello robot"}
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["X-API-Secret"] == API_SECRET


def test_chat_ok_with_bearer_header(robot):
    r = robot.chat("hi", token=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200 and r.json["reply"] == "echo: hi"


def test_forbidden_wrong_missing_or_bad_bearer(robot, upstream):
    cases = [
        robot.chat(token="wrong"),
        robot.chat(token=None),
        robot.chat(token=""),
        robot.chat(token=TOKEN[:-1]),
        robot.chat(token=TOKEN + "x"),
        robot.chat(token=12345),
        robot.chat(token=None, headers={"Authorization": "Bearer nope"}),
        robot.chat(token=TOKEN, headers={"Authorization": "Bearer nope"}),  # header wins
        robot.chat(token=None, headers={"Authorization": f"Basic {TOKEN}"}),
    ]
    for r in cases:
        assert r.status == 403, r
        assert r.json == {"error": "invalid or missing token", "code": "forbidden"}
    assert upstream.count == 0


def test_bad_requests_are_400_json(make_robot, upstream):
    robot = make_robot(env={"ROBOT_MAX_MESSAGE_CHARS": "50"})
    p = robot.port
    raw = [b"{not json", b"", b"[1,2]", b'"str"', b"\xff\xfe"]
    for body in raw:
        r = request(p, "POST", "/api/v1/chat", body, {"Content-Type": "application/json"})
        assert r.status == 400, (body, r)
        assert r.json["code"] == "invalid_json"
    for kwargs, code in [
        (dict(message=""), "missing_message"),
        (dict(message="   \n"), "missing_message"),
        (dict(message=None), "missing_message"),
        (dict(message=42), "missing_message"),
        (dict(message="x" * 51), "message_too_long"),
        (dict(message="ok", session_id="bad id with spaces"), "invalid_session_id"),
        (dict(message="ok", session_id="x" * 129), "invalid_session_id"),
        (dict(message="ok", session_id=7), "invalid_session_id"),
    ]:
        r = robot.chat(**kwargs)
        assert r.status == 400, (kwargs, r)
        assert r.json["code"] == code and isinstance(r.json["error"], str)
    assert robot.chat(message="x" * 50).status == 200
    body = json.dumps({"token": TOKEN})
    r = request(p, "POST", "/api/v1/chat", body)
    assert r.status == 400 and r.json["code"] == "missing_message"
    assert upstream.count == 1


def test_oversized_body_is_413(make_robot, upstream):
    robot = make_robot(env={"ROBOT_MAX_BODY_BYTES": "1024"})
    big = json.dumps({"token": TOKEN, "message": "y" * 2000})
    r = request(robot.port, "POST", "/api/v1/chat", big)
    assert r.status == 413 and r.json["code"] == "body_too_large"
    # chunked (no Content-Length): caught while reading
    conn = http.client.HTTPConnection("127.0.0.1", robot.port, timeout=10)
    try:
        conn.request("POST", "/api/v1/chat", body=iter([big[:600].encode(), big[600:].encode()]),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["code"] == "body_too_large"
    finally:
        conn.close()
    assert upstream.count == 0


def test_unknown_path_and_method_are_json(robot):
    r = request(robot.port, "GET", "/nope")
    assert r.status == 404 and r.json["code"] == "not_found"
    r = request(robot.port, "GET", "/api/v1/chat")
    assert r.status == 405 and r.json["code"] == "method_not_allowed"
    r = request(robot.port, "DELETE", "/health")
    assert r.status == 405 and r.json["code"] == "method_not_allowed"


def test_upstream_error_is_502_after_bounded_retries(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_RETRIES": "2"})
    upstream.state.update(fail_status=500, fail_count=-1)
    r = robot.chat()
    assert r.status == 502 and r.json["code"] == "upstream_error"
    assert "Traceback" not in r.body.decode()
    assert upstream.count == 3  # 1 try + 2 retries, no more


def test_retries_recover_from_transient_429_and_503(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_RETRIES": "3"})
    upstream.state.update(fail_status=503, fail_count=2)
    r = robot.chat("again")
    assert r.status == 200 and r.json["reply"] == "echo: again"
    assert upstream.count == 3
    upstream.reset_sync()
    upstream.state.update(fail_status=429, fail_count=1, retry_after=0)
    assert robot.chat().status == 200
    assert upstream.count == 2


def test_upstream_rate_limit_exhausted_is_502(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_RETRIES": "1"})
    upstream.state.update(fail_status=429, fail_count=-1)
    r = robot.chat()
    assert r.status == 502 and r.json["code"] == "upstream_rate_limited"
    assert upstream.count == 2


def test_non_retryable_upstream_status_is_not_retried(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_RETRIES": "3"})
    upstream.state.update(api_key="another-key")  # upstream answers 401
    r = robot.chat()
    assert r.status == 502 and r.json["code"] == "upstream_error"
    assert upstream.count == 1


def test_bad_upstream_json_is_502(robot, upstream):
    upstream.state.update(bad_json_count=1)
    r = robot.chat()
    assert r.status == 502 and r.json["code"] == "upstream_bad_response"


def test_upstream_timeout_is_504(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_TIMEOUT": "0.3"})
    upstream.state.update(delay=2.0)
    r = robot.chat()
    assert r.status == 504 and r.json["code"] == "upstream_timeout"
    upstream.state.update(delay=0)
    assert robot.chat().status == 200  # the robot is fine afterwards


def test_rate_limit_429_per_client(make_robot, upstream):
    robot = make_robot(env={"ROBOT_RATE_LIMIT_RPS": "0.01", "ROBOT_RATE_LIMIT_BURST": "3"})
    statuses = [robot.chat().status for _ in range(3)]
    assert statuses == [200, 200, 200]
    r = robot.chat()
    assert r.status == 429 and r.json["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert upstream.count == 3
    # the peer 127.0.0.1 is a trusted proxy by default: X-Real-IP selects the bucket
    # (these are header values only; no traffic goes to these documentation addresses)
    h1 = {"X-Real-IP": "192.0.2.1"}
    h2 = {"X-Forwarded-For": "198.51.100.7, 192.0.2.2"}
    assert [robot.chat(headers=h1).status for _ in range(4)] == [200, 200, 200, 429]
    assert [robot.chat(headers=h2).status for _ in range(4)] == [200, 200, 200, 429]


def test_forwarding_headers_ignored_from_untrusted_peer(make_robot):
    robot = make_robot(env={"ROBOT_RATE_LIMIT_RPS": "0.01", "ROBOT_RATE_LIMIT_BURST": "2",
                            "ROBOT_TRUSTED_PROXIES": ""})
    statuses = [robot.chat(headers={"X-Real-IP": f"192.0.2.{i}"}).status for i in range(3)]
    assert statuses == [200, 200, 429]
    lines = wait_for(lambda: [l for l in robot.log_lines() if l.get("path") == "/api/v1/chat"][-3:]
                     if len([l for l in robot.log_lines() if l.get("path") == "/api/v1/chat"]) >= 3 else None)
    assert {l["client"] for l in lines} == {"127.0.0.1"}


def _concurrent_chats(robot, n):
    import threading

    results = [None] * n

    def one(i):
        results[i] = robot.chat(f"c{i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrency_cap_limits_parallel_upstream_calls(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_CONCURRENCY": "2"})
    upstream.state.update(delay=0.4)
    results = _concurrent_chats(robot, 6)
    assert [r.status for r in results] == [200] * 6
    assert upstream.max_inflight == 2


def test_overload_beyond_pending_bound_is_503(make_robot, upstream):
    robot = make_robot(env={"ROBOT_UPSTREAM_CONCURRENCY": "1", "ROBOT_UPSTREAM_MAX_PENDING": "1"})
    upstream.state.update(delay=1.0)
    results = _concurrent_chats(robot, 5)
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) >= 2 and 503 in statuses, statuses
    assert all(r.json["code"] == "overloaded" for r in results if r.status == 503)
    assert upstream.max_inflight == 1
