"""The benchmark tooling works: JMeter loads and runs the guide's plan; wrk + nginx + robot.

Tools missing -> skip locally, but fail under CI (CI=true), where tests/apt-packages.txt
installs them.
"""

import os
import shutil

import pytest

from bench import jmeter_check
from bench.run import Stack


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"required tools missing under CI: {missing}")
        pytest.skip(f"tools missing: {missing}")


def test_jmeter_loads_and_runs_the_guide_profile_plan():
    need("jmeter")
    summary = jmeter_check.check(seconds=5, users=4)
    assert summary["samples"]["chat"] >= 1
    assert summary["samples"]["health"] >= 1


def test_wrk_through_rendered_nginx_to_robot_has_no_errors():
    need("wrk", "nginx")
    with Stack(nginx="auto") as stack:
        assert stack.nginx_used
        result = stack.wrk(connections=4, duration=1)
        guide = stack.wrk(connections=2, duration=1, delay_ms=200, sessions=2)
        robot_log = os.path.join(stack.dir, "log", "robot.log")
        assert result["requests"] > 0 and guide["requests"] > 0
        assert result["error_total"] == 0 and guide["error_total"] == 0, (result, guide)
    assert not os.path.exists(robot_log)  # the stack cleaned up after itself
