import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# `import robot` / `import bench` from the repo root, and the harness next to this file.
for path in (REPO, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench.fake_upstream import FakeUpstream  # noqa: E402
from robot_harness import RobotProcess  # noqa: E402


@pytest.fixture
def upstream():
    fake = FakeUpstream()
    fake.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture
def make_robot(tmp_path, upstream):
    """make_robot(env=..., file_env=...) -> started RobotProcess; all stopped at teardown."""
    started = []

    def factory(env=None, file_env=None, start=True, subdir=None, **kw):
        base = tmp_path / (subdir or f"r{len(started)}")
        base.mkdir(exist_ok=True)
        robot = RobotProcess(base, kw.pop("upstream_url", upstream.url), env=env, file_env=file_env, **kw)
        started.append(robot)
        if start:
            robot.start()
        return robot

    yield factory
    for robot in started:
        robot.stop()


@pytest.fixture
def robot(make_robot):
    return make_robot()
