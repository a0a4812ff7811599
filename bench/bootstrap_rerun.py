"""Time the idempotent second run of scripts/bootstrap.sh on a configured node.

    sudo ./venv/bin/python -m bench.bootstrap_rerun [--runs 10]

What is measured: the real bootstrap.sh, every step, against a node built in a temp root
inside lab namespaces (tests/host): Secrets Manager served by moto, the robot, nginx and the
fake upstream running, so the secret fetch and the final self-check through nginx are real.
What is not: package-manager queries (dpkg-query/rpm, a few ms per package), systemctl
is-active/is-enabled checks and `id -u` (ROBOT_SKIP_SYSTEM=1 skips them, as it skips the
installs, which a second run does not perform anyway). This machine's /etc, /opt and /var are
never touched. Prints the first run, then min / median / max of the re-runs, and the mean per step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "host"))

from aws_emulator import CREDENTIALS, AwsEmulator  # noqa: E402
from netns import Lab  # noqa: E402
from node import Node  # noqa: E402

SECRET = {"API_KEY": "ak-bench", "API_SECRET": "as-bench", "ROBOT_TOKEN": "B" * 32}
STEP_LINE = re.compile(r"^\[robot-bootstrap\] (\d\d-[a-z]+):")


def timed_bootstrap(node: Node, host, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = node.bootstrap(*args, host=host)
    return time.perf_counter() - start, result.stdout


def per_step(node: Node, host, steps: list[str], runs: int) -> dict[str, float]:
    return {step: statistics.mean(timed_bootstrap(node, host, "--only", step)[0] for _ in range(runs)) for step in steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="robot-bench-")
    try:
        with Lab(prefix="rbb") as lab:
            host = lab.add_host("node", "10.77.0.11")
            aws = AwsEmulator(lab.add_host("aws", "10.77.0.254"))
            aws.start()
            arn = aws.client("secretsmanager").create_secret(Name="robot/bench", SecretString=json.dumps(SECRET))["ARN"]
            node = Node(workdir, settings={"ROBOT_SECRET_ID": arn}, env={**CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint})
            first, _ = timed_bootstrap(node, host, "--skip", "selfcheck")
            node.start(host)
            reruns = []
            for _ in range(args.runs):
                seconds, stdout = timed_bootstrap(node, host)
                reruns.append(seconds)
            steps = [m.group(1) for m in map(STEP_LINE.match, stdout.splitlines()) if m]
            step_means = per_step(node, host, steps, max(1, args.runs // 2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"first run (render + fetch, no packages): {first:.2f} s")
    print(f"second run x{len(reruns)}: min {min(reruns):.2f} s, median {statistics.median(reruns):.2f} s, "
          f"max {max(reruns):.2f} s (limit 5 s)")
    print("per step, alone (bootstrap.sh --only STEP, includes bootstrap.sh's own start-up):")
    for step, seconds in step_means.items():
        print(f"  {step:14s} {seconds * 1000:6.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
