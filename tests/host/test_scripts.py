"""The host scripts and what they render, checked by the real tools: shellcheck, nginx -t,
systemd-analyze verify, logrotate; plus the firewall rule set and the GPU step's decisions."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from netns import require_root
from node import REPO, SCRIPTS, Node

LOGROTATE_RULES = ["daily", "missingok", "rotate 7", "compress", "delaycompress", "notifempty", "create 640 root adm"]
RENDER_STEPS = ("--only", "base", "--only", "service", "--only", "nginx", "--only", "firewall", "--only", "logrotate")


@pytest.fixture
def node_dir():
    path = tempfile.mkdtemp(prefix="robot-node-")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def rendered(node_dir: Path, tls: bool = False, env: dict[str, str] | None = None, **settings: str) -> Node:
    """A node root with every file bootstrap renders (no secrets needed for these steps)."""
    node = Node(node_dir, settings=settings, env={"ROBOT_USER": "daemon", "ROBOT_GROUP": "daemon", **(env or {})})
    if tls:
        tls_dir = node.path("/etc/robot/tls")
        tls_dir.mkdir(parents=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=robot.test",
                        "-keyout", str(tls_dir / "privkey.pem"), "-out", str(tls_dir / "fullchain.pem")],
                       check=True, capture_output=True)
    node.bootstrap(*RENDER_STEPS)
    return node


def test_shellcheck_every_script():
    # scripts/keepalived/ is its owner's to check (tests/host/test_keepalived*).
    scripts = sorted(p for p in SCRIPTS.rglob("*.sh") if "keepalived" not in p.parts)
    assert len(scripts) >= 12
    result = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", [
    {},
    {"ROBOT_BASIC_AUTH": "true", "ROBOT_TOPOLOGY": "balanced", "ROBOT_TRUSTED_PROXIES": "10.0.0.0/16 10.1.0.0/16"},
    {"tls": True},
], ids=["plain", "basic-auth-behind-alb", "tls"])
def test_nginx_accepts_the_rendered_site(node_dir, variant):
    require_root()
    node = rendered(node_dir, **variant)
    result = subprocess.run(node.nginx_argv("-t"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    server = node.path("/etc/nginx/robot/server.conf").read_text()
    assert "limit_conn robot_conn 500;" in server and "limit_req zone=robot_req burst=1000 nodelay;" in server
    assert "limit_conn_status 429;" in server and "limit_req_status 429;" in server
    assert "rate=1000r/s" in node.path("/etc/nginx/conf.d/robot.conf").read_text()
    assert (('auth_basic "robot";' in server) == (variant.get("ROBOT_BASIC_AUTH") == "true"))
    proxies = variant.get("ROBOT_TRUSTED_PROXIES", "").split()
    assert [line for line in server.splitlines() if line.startswith("set_real_ip_from")] == [f"set_real_ip_from {c};" for c in proxies]
    assert ("real_ip_header X-Forwarded-For;" in server) == bool(proxies)
    assert node.path("/etc/nginx/conf.d/robot-tls.conf").exists() == bool(variant.get("tls"))


@pytest.mark.parametrize("image", ["", "registry.example.com/robot:1.2"], ids=["venv", "container"])
def test_systemd_accepts_the_rendered_unit(node_dir, image):
    require_root()
    env = {}
    if image:
        # What the docker package provides on a host, stood in: a docker binary and its unit.
        stub_bin = node_dir / "bin"
        stub_bin.mkdir()
        (stub_bin / "docker").write_text("#!/bin/sh\n")
        (stub_bin / "docker").chmod(0o755)
        env["PATH"] = f"{stub_bin}:{os.environ['PATH']}"
    node = rendered(node_dir, env=env, ROBOT_IMAGE=image)
    unit = node.path("/etc/systemd/system/robot.service")
    if image:
        node.path("/etc/systemd/system/docker.service").write_text(f"[Service]\nExecStart={node_dir}/bin/docker\n")
    else:
        node.provide_venv_python()
    argv = ["systemd-analyze", "verify", str(unit)]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    text = unit.read_text()
    assert "Restart=on-failure" in text
    if image:
        assert f"ExecStart={node_dir}/bin/docker run" in text and f" {image}\n" in text and "--publish 127.0.0.1:18789:18789" in text
        assert f"--env-file {node.root}/opt/robot/config/.env" in text
    else:
        for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                        f"ReadWritePaths={node.root}/opt/robot/data {node.root}/opt/robot/models {node.root}/var/log/robot"):
            assert setting in text.splitlines()


def test_logrotate_rotates_the_robot_logs_with_the_guides_rules(node_dir):
    require_root()
    node = rendered(node_dir)
    conf = node.path("/etc/logrotate.d/robot")
    lines = [line.strip() for line in conf.read_text().splitlines()]
    assert lines[lines.index(f"{node.root}/var/log/robot/*.log {{") + 1:][:len(LOGROTATE_RULES)] == LOGROTATE_RULES
    log = node.path("/var/log/robot/robot.log")
    log.write_text('{"event": "started"}\n')
    shutil.chown(log, "daemon", "daemon")
    state = node_dir / "logrotate.state"
    debug = subprocess.run(["logrotate", "-d", "-f", "-s", str(state), str(conf)], capture_output=True, text=True)
    assert debug.returncode == 0 and "error" not in debug.stderr.lower(), debug.stderr
    assert "rotating pattern" in debug.stderr
    subprocess.run(["logrotate", "-f", "-s", str(state), str(conf)], check=True, capture_output=True)
    assert node.path("/var/log/robot/robot.log.1").read_text() == '{"event": "started"}\n'
    assert log.stat().st_size == 0 and log.owner() == "daemon", "the robot must keep writing its own file"


@pytest.mark.parametrize("settings, tls, expected", [
    ({}, False, ["tcp 22 10.77.0.0/24", "tcp 80 10.77.0.0/24", "tcp 80 198.51.100.7/32"]),
    ({}, True, ["tcp 22 10.77.0.0/24", "tcp 443 10.77.0.0/24", "tcp 443 198.51.100.7/32",
                "tcp 80 10.77.0.0/24", "tcp 80 198.51.100.7/32"]),
    ({"ROBOT_TOPOLOGY": "balanced", "ROBOT_TRUSTED_PROXIES": "10.0.0.0/16"}, False,
     ["tcp 22 10.77.0.0/24", "tcp 80 10.0.0.0/16"]),
    ({"ROBOT_TOPOLOGY": "pair", "ROBOT_PEER_IP": "10.0.1.11", "ROBOT_EXPOSE_PORT": "true"}, False,
     ["tcp 18789 10.77.0.0/24", "tcp 18789 198.51.100.7/32", "tcp 22 10.77.0.0/24",
      "tcp 80 10.77.0.0/24", "tcp 80 198.51.100.7/32", "vrrp - 10.0.1.11"]),
], ids=["single", "single-tls", "balanced", "pair-exposed"])
def test_firewall_opens_only_the_configured_ports(node_dir, settings, tls, expected):
    require_root()
    node = rendered(node_dir, tls=tls, **settings)
    assert node.path("/etc/robot/firewall.rules").read_text().splitlines() == expected


def test_firewall_refuses_to_lock_out_ssh(node_dir):
    require_root()
    node = Node(node_dir, settings={"ROBOT_SSH_CIDRS": ""}, env={"ROBOT_USER": "daemon", "ROBOT_GROUP": "daemon"})
    result = node.bootstrap("--only", "firewall", check=False)
    assert result.returncode != 0 and "ROBOT_SSH_CIDRS is empty" in result.stderr


@pytest.mark.parametrize(
    "os_release,python,packages",
    [
        ('ID=ubuntu\nVERSION_ID="24.04"\n', "python3", ""),
        ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', "python3.11", "python3.11 python3.11-venv"),
        ('ID=debian\nVERSION_ID="12"\n', "python3", ""),
        ('ID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\n', "python3.11", "python3.11"),
    ],
)
def test_app_python_is_at_least_3_11_on_every_supported_os(tmp_path, os_release, python, packages):
    """The robot needs Python >= 3.11: older system pythons get the distribution's python3.11."""
    (tmp_path / "os-release").write_text(os_release)
    script = f'. "{SCRIPTS}/lib/common.sh"; detect_os; echo "$APP_PYTHON|${{APP_PYTHON_PACKAGES[*]:-}}"'
    env = dict(os.environ, ROBOT_OS_RELEASE=str(tmp_path / "os-release"), ROBOT_ROOT=str(tmp_path / "root"))
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{python}|{packages}"
