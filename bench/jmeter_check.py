"""Check that JMeter loads and runs bench/guide-profile.jmx, for a few seconds, on loopback.

    python -m bench.jmeter_check [--seconds 6] [--users 5]

Starts the fake upstream and a robot on 127.0.0.1 (no nginx), runs the plan non-GUI with
short overrides (-Jduration, -Jusers, -Jrampup=0), and checks the results file: at least
one chat sample and one health sample, every sample 200 and successful (the plan's
assertions), and JMeter's "Created the tree successfully". Exit 0 when all hold.

Debian 12's jmeter 2.13 cannot load any plan as shipped (its XStream 1.4.20 forbids
JMeter's classes); when that error appears the check compiles
bench/jmeter-xstream-fix/NoTypePermission.java (needs javac) and retries with it first on
the classpath. See that file.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PLAN = os.path.join(HERE, "guide-profile.jmx")
FIX_SRC = os.path.join(HERE, "jmeter-xstream-fix", "NoTypePermission.java")
XSTREAM_JAR = "/usr/share/java/xstream.jar"


def build_xstream_fix(workdir: str) -> str:
    javac = shutil.which("javac")
    if not javac:
        raise RuntimeError("jmeter needs the XStream fix but javac is missing (apt-get install default-jdk-headless)")
    src_dir = os.path.join(workdir, "src", "com", "thoughtworks", "xstream", "security")
    os.makedirs(src_dir)
    shutil.copy(FIX_SRC, src_dir)
    out = os.path.join(workdir, "classes")
    os.makedirs(out)
    subprocess.run([javac, "-nowarn", "-cp", XSTREAM_JAR, "-d", out,
                    os.path.join(src_dir, "NoTypePermission.java")],
                   check=True, capture_output=True, timeout=120)
    jar = os.path.join(workdir, "xstream-fix.jar")
    rel = "com/thoughtworks/xstream/security/NoTypePermission.class"
    with zipfile.ZipFile(jar, "w") as z:
        z.write(os.path.join(out, rel), rel)
    return jar


def run_jmeter(port: int, token: str, seconds: int, users: int, workdir: str, classpath: str | None):
    jtl = os.path.join(workdir, "results.jtl")
    if os.path.exists(jtl):
        os.remove(jtl)
    props = os.path.join(workdir, "token.properties")  # keeps the token out of argv
    with open(props, "w") as fh:
        fh.write(f"token={token}\n")
    os.chmod(props, 0o600)
    env = dict(os.environ)
    if classpath:
        env["JAVA_CLASSPATH"] = classpath
    cmd = ["jmeter", "-n", "-t", PLAN, "-q", props, "-Jhost=127.0.0.1", f"-Jport={port}",
           "-Jprotocol=http", f"-Jduration={seconds}", f"-Jusers={users}", "-Jrampup=0",
           "-Jjmeterengine.nongui.port=0", "-Jjmeter.save.saveservice.output_format=csv",
           "-Jjmeter.save.saveservice.print_field_names=true", "-l", jtl, "-j", os.path.join(workdir, "jmeter.log")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 180,
                         cwd=workdir, stdin=subprocess.DEVNULL)
    return res, jtl


def check(seconds: int = 6, users: int = 5) -> dict:
    """Run the check; returns a summary dict; raises RuntimeError on any failure."""
    sys.path.insert(0, os.path.dirname(HERE))
    from bench.run import TOKEN, Stack

    if not shutil.which("jmeter"):
        raise RuntimeError("jmeter is not installed (apt-get install jmeter jmeter-http)")
    workdir = tempfile.mkdtemp(prefix="robot-jmeter-")
    try:
        with Stack(nginx="none") as stack:
            res, jtl = run_jmeter(stack.port, TOKEN, seconds, users, workdir, None)
            output = res.stdout + res.stderr
            patched = False
            if "ForbiddenClassException" in output:
                fix = build_xstream_fix(os.path.join(workdir, "fix"))
                res, jtl = run_jmeter(stack.port, TOKEN, seconds, users, workdir, fix)
                output = res.stdout + res.stderr
                patched = True
        if "Created the tree successfully" not in output:
            raise RuntimeError(f"jmeter did not load the plan:\n{output[-3000:]}")
        if not os.path.exists(jtl):
            raise RuntimeError(f"jmeter wrote no results:\n{output[-3000:]}")
        with open(jtl, newline="") as fh:
            rows = list(csv.DictReader(fh))
        counts: dict[str, int] = {}
        bad = []
        for row in rows:
            counts[row["label"]] = counts.get(row["label"], 0) + 1
            if row["responseCode"] != "200" or row["success"] != "true":
                bad.append(row)
        if bad:
            raise RuntimeError(f"{len(bad)} failed samples, e.g. {bad[0]}")
        if counts.get("chat", 0) < 1 or counts.get("health", 0) < 1:
            raise RuntimeError(f"expected chat and health samples, got {counts}")
        return {"samples": counts, "xstream_fix": patched}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.jmeter_check", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--users", type=int, default=5)
    args = p.parse_args(argv)
    try:
        summary = check(args.seconds, args.users)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"FAIL: {exc}")
        return 1
    print(f"OK: jmeter loaded and ran {os.path.relpath(PLAN)}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
