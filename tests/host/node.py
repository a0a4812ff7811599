"""A robot node for host tests: scripts/bootstrap.sh rendered into a temp root, then the robot,
the fake upstream and nginx started from the rendered files inside a lab namespace.

    node = Node(tmp_path, settings={...})
    node.bootstrap("--skip", "selfcheck", host=lab_host)   # the real bootstrap, test overrides only
    node.start(lab_host)                                    # upstream, robot (as the unit says), nginx

Test overrides (scripts/README.md): ROBOT_ROOT=<temp root>, ROBOT_SKIP_SYSTEM=1 (no packages,
useradd, systemctl, firewall), ROBOT_USER/GROUP=nobody:nogroup, ROBOT_PYTHON=this venv's python.
Rendering and secret fetching run exactly as on a host.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from netns import Host, wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
PYTHON = sys.executable
USER, GROUP = "nobody", "nogroup"
UPSTREAM_PORT = 18790

BASE_SETTINGS = {
    "ROBOT_TOPOLOGY": "single",
    "ROBOT_PORT": "18789",
    "ROBOT_HEALTH_PATH": "/health",
    "ROBOT_UPSTREAM_URL": f"http://127.0.0.1:{UPSTREAM_PORT}/v1",
    "ROBOT_MODEL": "fake-model",
    "ROBOT_IMAGE": "",
    "ROBOT_BASIC_AUTH": "false",
    "ROBOT_SECRET_ID": "robot/api-keys",
    "AWS_REGION": "us-east-1",
    "ROBOT_ALLOWED_CIDRS": "10.77.0.0/24 198.51.100.7/32",
    "ROBOT_SSH_CIDRS": "10.77.0.0/24",
    "ROBOT_DDOS_RPS": "1000",
    "ROBOT_DDOS_CONN_PER_IP": "500",
    "ROBOT_DDOS_WINDOW": "60",
    "ROBOT_TRUSTED_PROXIES": "",
    "ROBOT_GPU": "false",
    "ROBOT_GPU_DRIVER": "nvidia-driver-550-server",
}

# Files a running node writes by itself (not bootstrap's): excluded from "no file changed".
RUNTIME_PREFIXES = ("var/log/robot/", "opt/robot/data/", "opt/robot/models/")


class Node:
    def __init__(self, tmp: Path, settings: dict[str, str] | None = None, env: dict[str, str] | None = None):
        self.tmp = Path(tmp)
        self.tmp.chmod(0o755)  # the unit's user must reach its files
        self.root = self.tmp / "root"
        self.run_dir = self.tmp / "run"  # nginx's pid, temp and log files: not bootstrap's
        self.run_dir.mkdir(exist_ok=True)
        self.settings_file = self.tmp / "settings.env"
        self.settings = dict(BASE_SETTINGS, **(settings or {}))
        self.write_settings()
        self.extra_env = env or {}

    def write_settings(self) -> None:
        self.settings_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.settings.items()))

    def env(self) -> dict[str, str]:
        env = dict(
            os.environ,
            ROBOT_ROOT=str(self.root),
            ROBOT_SKIP_SYSTEM="1",
            ROBOT_USER=USER,
            ROBOT_GROUP=GROUP,
            ROBOT_PYTHON=PYTHON,
            ROBOT_SECRET_BACKOFF="0.1",
            # Never the real metadata service or a developer's AWS profile.
            ROBOT_IMDS_ENDPOINT="http://127.0.0.1:1",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        env.update(self.extra_env)
        return env

    def bootstrap(self, *args: str, host: Host | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["bash", str(SCRIPTS / "bootstrap.sh"), "--source", str(REPO), "--settings", str(self.settings_file), *args]
        if host is not None:
            result = host.run(argv, check=False, env=self.env(), timeout=120)
        else:
            result = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"bootstrap failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def path(self, host_path: str) -> Path:
        """Where a host path (/opt/robot/...) lives in this node's root."""
        return self.root / host_path.lstrip("/")

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """Every bootstrap-managed file and directory: content hash, mode, owner, mtime."""
        result = {}
        for path in sorted(self.root.rglob("*")):
            rel = str(path.relative_to(self.root))
            if rel.startswith(RUNTIME_PREFIXES) or "__pycache__" in rel:
                continue
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            result[rel] = (digest, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
        return result

    def provide_venv_python(self) -> None:
        """On a host step 30 creates this venv; tests (ROBOT_SKIP_SYSTEM) stand in this python."""
        python = self.path("/opt/robot/app/venv/bin/python")
        python.parent.mkdir(parents=True, exist_ok=True)
        python.write_text(f'#!/bin/sh\nexec {PYTHON} "$@"\n')
        python.chmod(0o755)

    def unit(self) -> dict[str, Any]:
        """The rendered systemd unit's [Service] settings that start the robot."""
        env: dict[str, str] = {}
        service: dict[str, str] = {}
        for line in self.path("/etc/systemd/system/robot.service").read_text().splitlines():
            key, sep, value = line.partition("=")
            if not sep or line.startswith("#"):
                continue
            if key == "Environment":
                name, _, val = shlex.split(value)[0].partition("=")
                env[name] = val
            else:
                service[key] = value
        return {"env": env, **service}

    def main_nginx_conf(self) -> Path:
        """A main nginx.conf that includes the rendered conf.d, as the distro's does."""
        run = self.run_dir
        conf = run / "nginx.conf"
        temp = "\n".join(f"    {kind}_temp_path {run}/{kind}_temp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf.write_text(
            f"user www-data;\nworker_processes 1;\npid {run}/nginx.pid;\nerror_log {run}/error.log;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {run}/access.log;\n{temp}\n"
            f"    include {self.root}/etc/nginx/conf.d/*.conf;\n}}\n"
        )
        return conf

    def nginx_argv(self, *extra: str) -> list[str]:
        return ["nginx", "-c", str(self.main_nginx_conf()), "-p", f"{self.run_dir}/", "-e", f"{self.run_dir}/error.log", *extra]

    def start(self, host: Host) -> dict[str, subprocess.Popen]:
        """Fake upstream, the robot as the rendered unit runs it, and nginx; waits until they answer."""
        log = open(self.run_dir / "services.log", "ab")
        procs = {}
        procs["upstream"] = host.popen([PYTHON, "-m", "bench.fake_upstream", "--port", str(UPSTREAM_PORT)], cwd=str(REPO), stdout=log, stderr=log)
        self.provide_venv_python()
        unit = self.unit()
        # Started as root: the test interpreter may live where the unit's user cannot reach
        # (e.g. under /root); what that user needs is checked by as_unit_user() instead.
        robot = shlex.split(unit["ExecStart"])
        procs["robot"] = host.popen(robot, cwd=unit["WorkingDirectory"], env=dict(os.environ, **unit["env"]), stdout=log, stderr=log)
        procs["nginx"] = host.popen(self.nginx_argv("-g", "daemon off;"), stdout=log, stderr=log)
        port = self.settings["ROBOT_PORT"]
        wait_for(lambda: host.call(_get, f"http://127.0.0.1:{UPSTREAM_PORT}/_stats"), timeout=30, what="fake upstream")
        wait_for(lambda: host.call(_get, f"http://127.0.0.1:{port}/health"), timeout=30, what=f"robot ({self.services_log()})")
        wait_for(lambda: host.call(_get, "http://127.0.0.1/health"), timeout=30, what="nginx")
        return procs

    def as_unit_user(self, argv: list[str]) -> subprocess.CompletedProcess:
        """Run argv with the rendered unit's User/Group, as systemd would start the robot."""
        unit = self.unit()
        return subprocess.run(["setpriv", f"--reuid={unit['User']}", f"--regid={unit['Group']}", "--clear-groups", *argv],
                              capture_output=True, text=True, timeout=30)

    def services_log(self) -> str:
        path = self.run_dir / "services.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()
