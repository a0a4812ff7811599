"""The robot runs as an unprivileged user that may write only its data dir and log dir."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from robot_harness import REPO, TOKEN, free_port, request, wait_for


def _python_for_nobody(base):
    """An interpreter + PYTHONPATH the user nobody can use.

    The checkout and the venv may sit under directories nobody cannot enter (/root, a 0700
    temp dir), so the robot package and its compiled dependencies are copied under base
    (0755) first.
    """
    import httptools

    src, site = os.path.join(base, "src"), os.path.join(base, "site")
    shutil.copytree(os.path.join(REPO, "robot"), os.path.join(src, "robot"), ignore=shutil.ignore_patterns("__pycache__"))
    for package in (httptools, *_optional("uvloop", "orjson")):
        directory = os.path.dirname(package.__file__)
        shutil.copytree(directory, os.path.join(site, os.path.basename(directory)), ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(base):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    nobody = pwd.getpwnam("nobody")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([src, site])}
    for py in (sys.executable, "/usr/bin/python3"):
        try:
            res = subprocess.run([py, "-c", "import robot.app, httptools"], env=env, cwd="/",
                                 user=nobody.pw_uid, group=nobody.pw_gid, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if res.returncode == 0:
            return py, env
    return None, None


def _optional(*names):
    modules = []
    for name in names:
        try:
            modules.append(__import__(name))
        except ImportError:
            pass
    return modules


@pytest.fixture
def unprivileged_dirs():
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the user nobody")
    base = tempfile.mkdtemp(prefix="robot-nobody-")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_runs_as_nobody_with_only_data_and_log_writable(unprivileged_dirs, upstream):
    base = unprivileged_dirs
    py, env = _python_for_nobody(os.path.join(base, "python"))
    if py is None:
        reason = "no interpreter the user nobody can run finds the robot's dependencies"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    nobody = pwd.getpwnam("nobody")
    dirs = {name: os.path.join(base, name) for name in ("config", "data", "models", "log")}
    for path in dirs.values():
        os.mkdir(path, 0o755)
    for name in ("data", "log"):
        os.chown(dirs[name], nobody.pw_uid, nobody.pw_gid)
        os.chmod(dirs[name], 0o750)
    env_file = os.path.join(dirs["config"], ".env")
    with open(env_file, "w") as fh:
        fh.write(f"ROBOT_TOKEN={TOKEN}\nAPI_KEY=k\n")
    os.chown(env_file, nobody.pw_uid, nobody.pw_gid)
    os.chmod(env_file, 0o600)
    with open(os.path.join(dirs["models"], "system_prompt.txt"), "w") as fh:
        fh.write("persona")
    port = free_port()
    env = dict(env, ROBOT_ENV_FILE=env_file, ROBOT_HOST="127.0.0.1", ROBOT_PORT=str(port),
               ROBOT_UPSTREAM_URL=upstream.url, ROBOT_DATA_DIR=dirs["data"],
               ROBOT_MODELS_DIR=dirs["models"], ROBOT_LOG_FILE=os.path.join(dirs["log"], "robot.log"),
               ROBOT_LOG_FLUSH_SECONDS="0.05")
    before = set(glob.glob(os.path.join(base, "**"), recursive=True))
    stderr = open(os.path.join(base, "stderr"), "wb")
    proc = subprocess.Popen([py, "-m", "robot"], env=env, cwd="/", user=nobody.pw_uid, group=nobody.pw_gid,
                            stdout=stderr, stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        def healthy():
            assert proc.poll() is None, open(os.path.join(base, "stderr")).read()
            try:
                return request(port, "GET", "/health", timeout=1).status == 200
            except OSError:
                return False

        assert wait_for(healthy, timeout=15)
        r = request(port, "POST", "/api/v1/chat", {"token": TOKEN, "message": "hi"})
        assert r.status == 200, r
        assert upstream.requests[-1]["json"]["messages"][0] == {"role": "system", "content": "persona"}
        assert wait_for(lambda: os.path.exists(os.path.join(dirs["log"], "robot.log")) and
                        b"/api/v1/chat" in open(os.path.join(dirs["log"], "robot.log"), "rb").read())
        with open(f"/proc/{proc.pid}/status") as fh:
            uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
        assert set(map(int, uids)) == {nobody.pw_uid}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            stderr.close()
    created = set(glob.glob(os.path.join(base, "**"), recursive=True)) - before
    outside = [p for p in created if not p.startswith((dirs["data"], dirs["log"])) and
               not p.endswith("stderr")]
    assert outside == []
    assert os.path.exists(os.path.join(dirs["data"], "robot.db"))
