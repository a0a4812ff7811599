"""The GPU step's decisions, run for real against stand-in commands (there is no GPU here).

PATH holds only stubs that record their calls plus a few harmless real tools, so anything the
step would run that is not stubbed fails the test instead of touching this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from node import SCRIPTS

REAL_TOOLS = ("dirname", "basename", "grep", "sed", "cat", "uname", "touch", "rm")
# Each stub logs "name args"; nvidia-smi works once a driver "is installed" (state file).
STUBS = {
    "nvidia-smi": """[ -e "$STATE/driver" ] || exit 9
case "$*" in
  *persistence_mode*) if [ -e "$STATE/pm" ]; then echo Enabled; else echo Disabled; fi ;;
  "-pm 1") touch "$STATE/pm" ;;
esac""",
    "apt-get": 'case "$*" in *install*) touch "$STATE/driver.pending" ;; esac',
    "dnf": 'case "$*" in *"module install"*) touch "$STATE/driver.pending" ;; esac',
    "modprobe": '[ -e "$STATE/driver.pending" ] && [ -z "$NEEDS_REBOOT" ] && touch "$STATE/driver"; exit 0',
    "dpkg-query": "exit 1",
    "rpm": "exit 1",
    "docker": 'case "$*" in info*) if [ -e "$STATE/ctk" ]; then echo \'{"nvidia":{}}\'; else echo "{}"; fi ;; esac',
    "nvidia-ctk": 'touch "$STATE/ctk"',
    "systemctl": "",
    "curl": "",
    "gpg": "",
}


class Stubs:
    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.state = root / "state"
        self.log = root / "calls.log"
        self.bin.mkdir()
        self.state.mkdir()
        for tool in REAL_TOOLS:
            (self.bin / tool).symlink_to(shutil.which(tool))
        for name, body in STUBS.items():
            stub = self.bin / name
            stub.write_text(f'#!/bin/bash\necho "{name} $*" >>"{self.log}"\n{body}\n')
            stub.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def stubs(tmp_path):
    return Stubs(tmp_path)


def run_gpu_step(stubs: Stubs, tmp_path: Path, os_id: str = "ubuntu", **settings: str) -> subprocess.CompletedProcess:
    values = {"ROBOT_GPU": "true", "ROBOT_GPU_DRIVER": "nvidia-driver-550-server", "ROBOT_IMAGE": "", **settings}
    (tmp_path / "settings.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    version = "2023" if os_id == "amzn" else "24.04"
    (tmp_path / "os-release").write_text(f"ID={os_id}\nVERSION_ID={version}\n")
    env = {"PATH": str(stubs.bin), "STATE": str(stubs.state), "ROBOT_SETTINGS": str(tmp_path / "settings.env"),
           "ROBOT_OS_RELEASE": str(tmp_path / "os-release"), "ROBOT_ROOT": str(tmp_path / "root"),
           "NEEDS_REBOOT": os.environ.get("NEEDS_REBOOT", "")}
    return subprocess.run(["/bin/bash", str(SCRIPTS / "steps/20-gpu.sh")], env=env, capture_output=True, text=True, timeout=30)


def test_gpu_off_does_nothing(stubs, tmp_path):
    result = run_gpu_step(stubs, tmp_path, ROBOT_GPU="false")
    assert result.returncode == 0, result.stderr
    assert stubs.calls() == []
    assert "GPU disabled" in result.stdout


def test_working_driver_is_left_alone(stubs, tmp_path):
    (stubs.state / "driver").touch()
    (stubs.state / "pm").touch()
    result = run_gpu_step(stubs, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in stubs.calls()] == ["nvidia-smi", "nvidia-smi"]
    assert "nothing to change" in result.stdout


def test_ubuntu_installs_the_configured_driver_then_is_idempotent(stubs, tmp_path):
    result = run_gpu_step(stubs, tmp_path)
    assert result.returncode == 0, result.stderr
    calls = stubs.calls()
    assert "apt-get install -y -q nvidia-driver-550-server" in calls
    assert "nvidia-smi -pm 1" in calls
    stubs.log.unlink()
    again = run_gpu_step(stubs, tmp_path)
    assert again.returncode == 0 and not any(c.startswith(("apt-get", "nvidia-smi -pm")) for c in stubs.calls())


def test_al2023_uses_nvidia_repo_and_dkms_module(stubs, tmp_path):
    result = run_gpu_step(stubs, tmp_path, os_id="amzn")
    assert result.returncode == 0, result.stderr
    calls = stubs.calls()
    repo = next(c for c in calls if "--add-repo" in c)
    assert repo.endswith(f"/amzn2023/{os.uname().machine}/cuda-amzn2023.repo")
    assert "dnf module install -y -q nvidia-driver:latest-dkms" in calls
    assert not any(c.startswith("apt-get") for c in calls)


def test_container_robot_gets_the_docker_gpu_runtime(stubs, tmp_path):
    (stubs.state / "driver").touch()
    (stubs.state / "pm").touch()
    result = run_gpu_step(stubs, tmp_path, ROBOT_IMAGE="registry.example.com/robot:1.2")
    assert result.returncode == 0, result.stderr
    assert "nvidia-ctk runtime configure --runtime=docker" in stubs.calls()
    assert "systemctl restart docker" in stubs.calls()


def test_driver_that_needs_a_reboot_fails_with_that_advice(stubs, tmp_path, monkeypatch):
    monkeypatch.setenv("NEEDS_REBOOT", "1")
    result = run_gpu_step(stubs, tmp_path)
    assert result.returncode != 0
    assert "reboot the instance" in result.stderr
