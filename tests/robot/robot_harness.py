"""Start a real ``python -m robot`` process against a fake upstream, all on loopback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

from bench.run import free_port  # noqa: F401  (re-exported for the robot tests)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "test-token-0123456789abcdefABCDEF"
API_KEY = "sk-test-key-1"
API_SECRET = "test-secret-1"


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll predicate() until truthy (returned) or timeout (returns the last value)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


def request(port, method, path, body=None, headers=None, conn=None, timeout=15.0) -> Response:
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        if own:
            conn.close()


class RobotProcess:
    def __init__(self, tmp_path, upstream_url: str, env: dict | None = None, file_env: dict | None = None,
                 write_env_file: bool = True):
        self.dir = tmp_path
        self.port = free_port()
        self.env_file = tmp_path / "config" / ".env"
        self.data_dir = tmp_path / "data"
        self.models_dir = tmp_path / "models"
        self.log_file = tmp_path / "log" / "robot.log"
        for d in (self.env_file.parent, self.data_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)
        file_values = {"ROBOT_TOKEN": TOKEN, "API_KEY": API_KEY, "API_SECRET": API_SECRET}
        file_values.update(file_env or {})
        if write_env_file:
            self.write_env(file_values)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROBOT_ENV_FILE": str(self.env_file),
            "ROBOT_HOST": "127.0.0.1",
            "ROBOT_PORT": str(self.port),
            "ROBOT_UPSTREAM_URL": upstream_url,
            "ROBOT_MODEL": "test-model",
            "ROBOT_DATA_DIR": str(self.data_dir),
            "ROBOT_MODELS_DIR": str(self.models_dir),
            "ROBOT_LOG_FILE": str(self.log_file),
            "ROBOT_LOG_FLUSH_SECONDS": "0.05",
            "ROBOT_MODELS_POLL_SECONDS": "0.1",
            "ROBOT_UPSTREAM_BACKOFF": "0.01",
            "ROBOT_UPSTREAM_BACKOFF_MAX": "0.05",
            "ROBOT_RATE_LIMIT_RPS": "0",
        }
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.stderr_path = tmp_path / "robot.stderr"

    def write_env(self, values: dict) -> None:
        tmp = self.env_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.env_file)

    def start(self, wait: bool = True) -> "RobotProcess":
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "robot"], cwd=REPO, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr)
        if wait:
            ok = wait_for(self._healthy, timeout=15)
            if not ok:
                self.stop()
                raise RuntimeError(f"robot did not become healthy: {self.stderr()}")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"robot exited with {self.proc.returncode}: {self.stderr()}")
        try:
            return request(self.port, "GET", "/health", timeout=1).status == 200
        except OSError:
            return False

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()
        except OSError:
            return ""

    def chat(self, message="hello", token=TOKEN, session_id=None, headers=None, conn=None, **extra):
        body = {"message": message, **extra}
        if token is not None:
            body["token"] = token
        if session_id is not None:
            body["session_id"] = session_id
        return request(self.port, "POST", "/api/v1/chat", body, headers, conn=conn)

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def log_lines(self) -> list[dict]:
        try:
            text = self.log_file.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()
        return self.proc.returncode
