"""The robot's own HTTP/1.1 layer: framing, limits, keep-alive, pipelining, timeouts."""

import json
import socket
import time

from robot_harness import TOKEN


def raw_exchange(port, data: bytes, read_until_close=True, timeout=5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def chat_bytes(message="hi", extra_headers=b"", version=b"1.1"):
    body = json.dumps({"token": TOKEN, "message": message}).encode()
    return (b"POST /api/v1/chat HTTP/" + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
            + extra_headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_malformed_http_is_400_json_and_closed(robot):
    out = raw_exchange(robot.port, b"THIS IS NOT HTTP\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["code"] == "bad_http"
    assert b"Connection: close" in head


def test_conflicting_lengths_rejected(robot, upstream):
    bad = (b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    assert raw_exchange(robot.port, bad).startswith(b"HTTP/1.1 400")
    smuggle = (b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert raw_exchange(robot.port, smuggle).startswith(b"HTTP/1.1 400")
    assert upstream.count == 0


def test_oversized_headers_are_431(robot):
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    out = raw_exchange(robot.port, big)
    assert out.startswith(b"HTTP/1.1 431")


def test_pipelined_requests_answered_in_order(robot):
    data = chat_bytes("one") + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + chat_bytes("two") + \
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw_exchange(robot.port, data)
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.index(b"echo: one") < out.index(b'{"status":"ok"}') < out.index(b"echo: two")


def test_expect_100_continue(robot):
    body = json.dumps({"token": TOKEN, "message": "cont"}).encode()
    with socket.create_connection(("127.0.0.1", robot.port), timeout=5) as s:
        s.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        resp = b""
        while b"echo: cont" not in resp:
            chunk = s.recv(65536)
            assert chunk
            resp += chunk
    assert resp.startswith(b"HTTP/1.1 200")


def test_http10_and_connection_close_end_the_connection(robot):
    out = raw_exchange(robot.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out
    out = raw_exchange(robot.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Connection: close" in out


def test_head_health_has_no_body(robot):
    out = raw_exchange(robot.port, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b""


def test_slow_request_and_idle_connection_time_out(make_robot):
    robot = make_robot(env={"ROBOT_REQUEST_TIMEOUT_SECONDS": "0.5", "ROBOT_KEEPALIVE_TIMEOUT_SECONDS": "0.5"})
    with socket.create_connection(("127.0.0.1", robot.port), timeout=10) as s:
        s.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        data = b""
        while True:  # the robot answers 408 and closes, within a few seconds (bounded by timeout=10)
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", robot.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        rest = s.recv(65536)  # then nothing until the idle timeout closes it
        assert rest == b""


def test_many_keepalive_requests_on_one_connection(robot):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", robot.port, timeout=10)
    try:
        for i in range(50):
            r = robot.chat(f"m{i}", conn=conn)
            assert r.status == 200 and r.json["reply"] == f"echo: m{i}"
    finally:
        conn.close()


def test_control_characters_in_keys_refused_at_start(make_robot):
    robot = make_robot(start=False, file_env={"API_KEY": "abc\x01def"})
    robot.start(wait=False)
    assert robot.proc.wait(15) == 2
    assert "API_KEY contains control" in robot.stderr()
    assert "abc" not in robot.stderr()


def test_pipelined_garbage_after_a_slow_chat_is_answered_in_order(robot, upstream):
    upstream.state.update(delay=0.3)
    out = raw_exchange(robot.port, chat_bytes("first") + b"NOT HTTP AT ALL\r\n\r\n")
    first = out.find(b"HTTP/1.1 200")
    second = out.find(b"HTTP/1.1 400")
    assert 0 <= first < second, out
    assert b"echo: first" in out


def test_half_closed_client_still_gets_its_answer(robot, upstream):
    upstream.state.update(delay=0.2)
    with socket.create_connection(("127.0.0.1", robot.port), timeout=5) as s:
        s.sendall(chat_bytes("half"))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"echo: half" in data
