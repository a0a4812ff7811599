"""A robot node brought up for real: bootstrap's rendering and secret fetching (Secrets Manager
served by moto), then the robot and nginx from the rendered files in one namespace, checked from
a client namespace: health, chat, token, basic auth, the per-client connection limit, and a
second bootstrap run that changes no file."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import tempfile
import urllib.error
import urllib.request

import pytest
from aws_emulator import CREDENTIALS, AwsEmulator
from netns import Lab, require_root, wait_for
from node import Node

NODE_IP, CLIENT_IP, AWS_IP = "10.77.0.11", "10.77.0.21", "10.77.0.254"
CONN_LIMIT = 5
SECRET = {
    "API_KEY": "ak-test-0123456789",
    "API_SECRET": "as-test-abcdefghij",
    "ROBOT_TOKEN": "T" * 16 + "0123456789abcdef",
    "BASIC_AUTH_USER": "operator",
    "BASIC_AUTH_PASSWORD": "pw-test-Zz9",
}


def node_client_and_aws(lab: Lab) -> tuple:
    """The node and client namespaces, and the emulated Secrets Manager holding SECRET (its ARN)."""
    node_host = lab.add_host("node", NODE_IP)
    client = lab.add_host("client", CLIENT_IP)
    aws = AwsEmulator(lab.add_host("aws", AWS_IP))
    aws.start()
    arn = aws.client("secretsmanager").create_secret(Name="robot/api-keys", SecretString=json.dumps(SECRET))["ARN"]
    return node_host, client, aws, arn


@pytest.fixture
def node_dir():
    """A temp dir the robot (running as nobody) can reach, unlike pytest's 0700 tmp_path."""
    path = tempfile.mkdtemp(prefix="robot-node-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def request(url: str, body: dict | None = None, auth: tuple[str, str] | None = None, method: str | None = None):
    """(status, parsed JSON or text) for one HTTP request; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def hold_connections(count: int, forwarded_for: str = "") -> list[socket.socket]:
    """Open `count` connections that each keep a request in progress: headers sent, body not.
    nginx counts them against limit_conn while it waits for the body."""
    held = []
    xff = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    for _ in range(count):
        sock = socket.create_connection((NODE_IP, 80), timeout=5)
        sock.sendall(f"POST /health HTTP/1.1\r\nHost: robot\r\n{xff}Content-Length: 100\r\n\r\n".encode())
        held.append(sock)
    return held


def status_of_new_connection(forwarded_for: str = "") -> int:
    xff = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    with socket.create_connection((NODE_IP, 80), timeout=5) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: robot\r\n{xff}Connection: close\r\n\r\n".encode())
        return int(sock.recv(64).split()[1])


@pytest.mark.parametrize("basic_auth", [False, True], ids=["token-only", "basic-auth"])
def test_node_serves_through_nginx_and_second_bootstrap_changes_nothing(node_dir, basic_auth):
    require_root()
    with Lab() as lab:
        node_host, client, aws, arn = node_client_and_aws(lab)
        node = Node(
            node_dir,
            settings={"ROBOT_SECRET_ID": arn, "ROBOT_BASIC_AUTH": str(basic_auth).lower(),
                      "ROBOT_DDOS_CONN_PER_IP": str(CONN_LIMIT)},
            env={**CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint},
        )

        first = node.bootstrap("--skip", "selfcheck", host=node_host)
        output = first.stdout + first.stderr
        assert not [v for v in SECRET.values() if v in output], "a secret value reached bootstrap's output"
        assert ("secretsmanager", "GetSecretValue") in [c[:2] for c in aws.calls()]
        env_file = node.path("/opt/robot/config/.env")
        st = env_file.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, _uid("nobody"))
        env_lines = set(node.as_unit_user(["cat", str(env_file)]).stdout.splitlines())
        assert {f"{k}={SECRET[k]}" for k in ("API_KEY", "API_SECRET", "ROBOT_TOKEN")} <= env_lines
        log_dir = node.path("/var/log/robot")
        assert node.as_unit_user(["touch", str(log_dir / "probe.log")]).returncode == 0, "the robot cannot write its logs"
        htpasswd = node.path("/etc/nginx/robot.htpasswd")
        assert htpasswd.exists() == basic_auth
        if basic_auth:
            assert htpasswd.read_text().startswith("operator:$6$")
            assert SECRET["BASIC_AUTH_PASSWORD"] not in htpasswd.read_text()

        node.start(node_host)
        before = node.snapshot()
        second = node.bootstrap(host=node_host)  # the full bootstrap, self-check included
        assert node.snapshot() == before, "the second bootstrap run changed files"
        step_lines = [line for line in second.stdout.splitlines() if ": " in line and "done in" not in line]
        assert len(step_lines) == 10, second.stdout
        for word in ("updated", "written", "wrote", "installed", "set up", "restarted", "started"):
            assert f" {word} " not in second.stdout.replace(":", " "), second.stdout
        assert "answers {\"status\":\"ok\"}" in second.stdout

        base = f"http://{NODE_IP}"
        auth = (SECRET["BASIC_AUTH_USER"], SECRET["BASIC_AUTH_PASSWORD"]) if basic_auth else None
        assert client.call(request, f"{base}/health") == (200, {"status": "ok"})
        status, reply = client.call(request, f"{base}/api/v1/chat", {"token": SECRET["ROBOT_TOKEN"], "message": "hello there"}, auth)
        assert status == 200, reply
        assert "hello there" in reply["reply"] and reply["session_id"]
        status, _ = client.call(request, f"{base}/api/v1/chat", {"token": "wrong-token", "message": "hi"}, auth)
        assert status == 403
        if basic_auth:
            status, _ = client.call(request, f"{base}/api/v1/chat", {"token": SECRET["ROBOT_TOKEN"], "message": "hi"})
            assert status == 401
            status, _ = client.call(request, f"{base}/api/v1/chat", {"token": SECRET["ROBOT_TOKEN"], "message": "hi"},
                                    ("operator", "not-the-password"))
            assert status == 401
        # The robot listens on loopback only: nginx is the one way in.
        with pytest.raises(ConnectionRefusedError):
            client.call(socket.create_connection, (NODE_IP, int(node.settings["ROBOT_PORT"])), 5)

        held = client.call(hold_connections, CONN_LIMIT)
        try:
            wait_for(lambda: client.call(status_of_new_connection) == 429, timeout=10,
                     what=f"a connection beyond the limit of {CONN_LIMIT} to be refused with 429")
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: client.call(status_of_new_connection) == 200, timeout=10, what="the limit to free up")


def test_limits_key_on_the_client_behind_the_load_balancer_and_selfcheck_names_the_cause(node_dir):
    """Balanced topology: the client namespace plays the ALB (a trusted proxy), so the limit
    counts the address in X-Forwarded-For; then, with the robot stopped, the self-check fails
    pointing at the robot."""
    require_root()
    with Lab() as lab:
        node_host, alb, aws, arn = node_client_and_aws(lab)  # the client namespace plays the ALB
        node = Node(node_dir, settings={"ROBOT_SECRET_ID": arn, "ROBOT_TOPOLOGY": "balanced",
                                        "ROBOT_TRUSTED_PROXIES": f"{CLIENT_IP}/32", "ROBOT_DDOS_CONN_PER_IP": str(CONN_LIMIT)},
                    env={**CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint})
        node.bootstrap("--skip", "selfcheck", host=node_host)
        procs = node.start(node_host)

        held = alb.call(hold_connections, CONN_LIMIT, "198.51.100.1")
        try:
            wait_for(lambda: alb.call(status_of_new_connection, "198.51.100.1") == 429, timeout=10,
                     what="the busy client behind the ALB to be limited")
            # Another client through the same ALB is not affected.
            assert alb.call(status_of_new_connection, "198.51.100.2") == 200
        finally:
            for sock in held:
                sock.close()

        lab.stop(procs["robot"])
        node.extra_env["ROBOT_SELFCHECK_TIMEOUT"] = "2"
        result = node.bootstrap("--only", "selfcheck", host=node_host, check=False)
        assert result.returncode != 0
        assert "HTTP 502" in result.stderr and "systemctl status robot" in result.stderr


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def test_pair_bootstrap_runs_the_keepalived_installer_and_reruns_cleanly(node_dir):
    """Pair topology: step 75 hands over to scripts/keepalived/install.sh; a second run of the
    whole bootstrap changes no file, keepalived's included."""
    require_root()
    with Lab() as lab:
        host = lab.add_host("node", NODE_IP)
        pair = {"ROBOT_TOPOLOGY": "pair", "ROBOT_PAIR_ROLE": "primary", "ROBOT_SELF_IP": NODE_IP,
                "ROBOT_PEER_IP": "10.77.0.12", "ROBOT_VIP": "10.77.0.100", "ROBOT_VRRP_ADVERT_INTERVAL": "0.1",
                "ROBOT_VRRP_ROUTER_ID": "51", "ROBOT_EIP_ALLOCATION_ID": "eipalloc-0test", "ROBOT_ENI_ID": "eni-0a",
                "ROBOT_PEER_ENI_ID": "eni-0b"}
        node = Node(node_dir, settings=pair, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
        first = node.bootstrap("--skip", "secrets", "--skip", "selfcheck", host=host)
        assert "75-keepalived: keepalived configured" in first.stdout
        assert "vrrp - 10.77.0.12" in node.path("/etc/robot/firewall.rules").read_text().splitlines()
        assert node.path("/etc/keepalived/keepalived.conf").exists()
        before = node.snapshot()
        node.bootstrap("--skip", "secrets", "--skip", "selfcheck", host=host)
        assert node.snapshot() == before, "the second pair bootstrap changed files"
