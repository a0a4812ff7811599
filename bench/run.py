"""Benchmarks: wrk -> nginx -> robot -> zero-latency fake upstream, all on 127.0.0.1.

    python -m bench.run profile    [--duration 60 | --full]   # the guide's load profile
    python -m bench.run saturation [--duration 10] [--connections 8,16,32,64,96,128]
    python -m bench.run memory     [--requests 100000]
    python -m bench.run all        # profile (60 s) + saturation + memory

Common flags: --nginx-workers N (default 1), --nginx production|bench (default: render
the production template scripts/templates/nginx-robot*.conf with the DDoS limits lifted,
falling back to bench/nginx-bench.conf), --no-nginx (wrk straight at the robot).

* profile: the guide's 50 users x 1 request/s (wrk, 50 connections, 1 s pause after each
  response, a rotating pool of sessions so history is read and written), 60 s by default,
  10 minutes with --full. Prints p50/p95/p99/max latency, errors and the achieved rate.
* saturation: closed-loop wrk runs at rising connection counts; prints req/s and latency
  per step, the highest chat req/s sustained with p99 < 500 ms and with p99 < 100 ms.
* memory: robot RSS idle, after a 10,000-request warm-up and after 100,000 requests
  (every request a new session, so the session cache and the database keep growing).

The robot runs with history and request logging on (defaults), the rate limiter on but
set above the load (all load comes from one address). Figures are printed and written
to bench/results/<name>.json. Every process started here is stopped here, by PID.
Needs: wrk, nginx (Debian packages).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOKEN = "bench-token-0123456789abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _render_production(prefix: str, port: int, robot_port: int) -> str | None:
    """Render the hosts' nginx templates for loopback; None (with a note) if impossible."""
    tdir = os.path.join(REPO, "scripts", "templates")
    main_t = os.path.join(tdir, "nginx-robot.conf")
    server_t = os.path.join(tdir, "nginx-robot-server.conf")
    if not (os.path.exists(main_t) and os.path.exists(server_t)):
        return None
    values = {
        "R": prefix, "ROBOT_PORT": str(robot_port), "NGINX_PORT80": "server.conf",
        "ROBOT_DDOS_RPS": "1000000", "ROBOT_DDOS_BURST": "1000000",
        "ROBOT_DDOS_CONN_PER_IP": "60000", "NGINX_REAL_IP": "", "NGINX_AUTH_BASIC": "off",
        "ROBOT_HEALTH_PATH": "/health",
    }
    out = {}
    for name, path in (("robot.conf", main_t), ("server.conf", server_t)):
        tpl = string.Template(open(path).read())
        missing = [m for m in tpl.get_identifiers() if m not in values]
        if missing:
            print(f"note: production nginx template needs {missing}; using bench/nginx-bench.conf")
            return None
        out[name] = tpl.substitute(values)
    if "listen 80 default_server;" not in out["robot.conf"]:
        print("note: production template has no 'listen 80 default_server;'; using bench config")
        return None
    out["robot.conf"] = out["robot.conf"].replace(
        "listen 80 default_server;", f"listen 127.0.0.1:{port} default_server backlog=4096;")
    os.makedirs(os.path.join(prefix, "etc", "nginx", "robot"), exist_ok=True)
    with open(os.path.join(prefix, "etc", "nginx", "robot", "server.conf"), "w") as fh:
        fh.write(out["server.conf"])
    open(os.path.join(prefix, "etc", "nginx", "robot.htpasswd"), "w").close()
    with open(os.path.join(prefix, "robot.conf"), "w") as fh:
        fh.write(out["robot.conf"])
    return os.path.join(prefix, "robot.conf")


class Stack:
    """Fake upstream + robot (+ nginx), started and stopped together."""

    def __init__(self, nginx: str = "auto", nginx_workers: int = 1, robot_env: dict | None = None):
        self.nginx_mode = nginx
        self.nginx_workers = nginx_workers
        self.robot_env = robot_env or {}
        self.procs: list[subprocess.Popen] = []
        self.dir = tempfile.mkdtemp(prefix="robot-bench-")
        self.nginx_used = None

    def _spawn(self, args, env=None, log="proc.log") -> subprocess.Popen:
        out = open(os.path.join(self.dir, log), "ab")
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        self.procs.append(proc)
        return proc

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        py = sys.executable
        up_port = free_port()
        self.upstream = self._spawn([py, "-m", "bench.fake_upstream", "--mode", "fast",
                                     "--port", str(up_port)], log="upstream.log")
        wait_port(up_port, self.upstream)
        self.robot_port = free_port()
        env_file = os.path.join(self.dir, "robot.env")
        with open(env_file, "w") as fh:
            fh.write(f"ROBOT_TOKEN={TOKEN}\nAPI_KEY=sk-bench\nAPI_SECRET=bench-secret\n")
        os.chmod(env_file, 0o600)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROBOT_ENV_FILE": env_file, "ROBOT_HOST": "127.0.0.1", "ROBOT_PORT": str(self.robot_port),
            "ROBOT_UPSTREAM_URL": f"http://127.0.0.1:{up_port}/v1", "ROBOT_MODEL": "bench",
            "ROBOT_DATA_DIR": os.path.join(self.dir, "data"),
            "ROBOT_MODELS_DIR": os.path.join(self.dir, "models"),
            "ROBOT_LOG_FILE": os.path.join(self.dir, "log", "robot.log"),
            "ROBOT_RATE_LIMIT_RPS": "1000000", "ROBOT_RATE_LIMIT_BURST": "1000000",
        }
        env.update(self.robot_env)
        os.makedirs(env["ROBOT_MODELS_DIR"], exist_ok=True)
        with open(os.path.join(env["ROBOT_MODELS_DIR"], "system_prompt.txt"), "w") as fh:
            fh.write("You are the robot. Answer briefly.\n")
        self.robot = self._spawn([py, "-m", "robot"], env=env, log="robot.stderr")
        wait_port(self.robot_port, self.robot)
        self.port = self.robot_port
        if self.nginx_mode == "none":
            return
        if not shutil.which("nginx"):
            raise SystemExit("nginx is not installed (apt-get install nginx)")
        self.port = free_port()
        prefix = os.path.join(self.dir, "nginx")
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            os.makedirs(os.path.join(prefix, sub), exist_ok=True)
        include = None
        if self.nginx_mode in ("auto", "production"):
            include = _render_production(prefix, self.port, self.robot_port)
            if include is None and self.nginx_mode == "production":
                raise SystemExit("cannot render the production nginx template")
        if include:
            conf = (f"worker_processes {self.nginx_workers};\npid {prefix}/nginx.pid;\n"
                    f"error_log {prefix}/error.log warn;\ndaemon off;\n"
                    "events { worker_connections 4096; }\n"
                    f"http {{\n access_log off;\n keepalive_requests 1000000;\n"
                    f" client_body_temp_path {prefix}/tmp/body;\n proxy_temp_path {prefix}/tmp/proxy;\n"
                    f" fastcgi_temp_path {prefix}/tmp/fastcgi;\n uwsgi_temp_path {prefix}/tmp/uwsgi;\n"
                    f" scgi_temp_path {prefix}/tmp/scgi;\n include {include};\n}}\n")
            self.nginx_used = "production template (scripts/templates, DDoS limits lifted)"
        else:
            tpl = string.Template(open(os.path.join(HERE, "nginx-bench.conf")).read())
            conf = tpl.substitute(WORKERS=self.nginx_workers, PREFIX=prefix, ROBOT_PORT=self.robot_port,
                                  PORT=self.port)
            self.nginx_used = "bench/nginx-bench.conf"
        conf_path = os.path.join(prefix, "nginx.conf")
        with open(conf_path, "w") as fh:
            fh.write(conf)
        test = subprocess.run(["nginx", "-t", "-q", "-c", conf_path, "-p", prefix],
                              capture_output=True, text=True, timeout=30)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {test.stderr}")
        self.nginx = self._spawn(["nginx", "-c", conf_path, "-p", prefix], log="nginx.log")
        wait_port(self.port, self.nginx)

    def __exit__(self, *exc):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def wrk(self, connections: int, duration: float, delay_ms: int = 0, sessions: int = 1000,
            threads: int = 1, timeout_s: int = 5) -> dict:
        env = dict(os.environ, ROBOT_TOKEN=TOKEN, BENCH_SESSIONS=str(sessions), BENCH_DELAY_MS=str(delay_ms),
                   BENCH_USERS=str(-(-connections // threads)))
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(duration))}s",
               f"--timeout={timeout_s}s", "-s", os.path.join(HERE, "chat.lua"), f"http://127.0.0.1:{self.port}"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 120)
        for line in res.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                data = json.loads(line[len("BENCH_JSON "):])
                data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
                data["error_total"] = sum(data["errors"].values())
                return data
        raise RuntimeError(f"wrk printed no summary: {res.stdout}\n{res.stderr}")


def ms(us) -> str:
    return f"{us / 1000:.2f} ms"


def save(name: str, data: dict) -> None:
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"{name}.json"), "w") as fh:
        json.dump(data, fh, indent=2)


def run_profile(stack: Stack, duration: float) -> dict:
    print(f"== guide profile: 50 users x 1 req/s for {duration:.0f} s via {stack.nginx_used or 'direct'}")
    stack.wrk(10, 2, sessions=200)  # warm-up
    r = stack.wrk(50, duration, delay_ms=1000, sessions=50)
    lat = r["latency_us"]
    print(f"requests {r['requests']}  rate {r['rps']:.1f}/s  errors {r['error_total']} {r['errors']}")
    print(f"latency p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  max {ms(lat['max'])}")
    ok = r["error_total"] == 0 and lat["p99"] <= 10_000
    print(f"target (0 errors, p99 <= 10 ms): {'MET' if ok else 'NOT MET'}")
    save("profile", r)
    return r


def run_saturation(stack: Stack, duration: float, steps: list[int]) -> dict:
    print(f"== saturation via {stack.nginx_used or 'direct'}: {duration:.0f} s per step, closed loop")
    stack.wrk(32, 3)  # warm-up
    rows = []
    print(f"{'conns':>6} {'req/s':>9} {'p50':>10} {'p99':>10} {'max':>10} {'errors':>7}")
    for c in steps:
        r = stack.wrk(c, duration)
        lat = r["latency_us"]
        rows.append({"connections": c, "rps": r["rps"], "p50_us": lat["p50"], "p99_us": lat["p99"],
                     "max_us": lat["max"], "errors": r["error_total"]})
        print(f"{c:>6} {r['rps']:>9.0f} {ms(lat['p50']):>10} {ms(lat['p99']):>10} {ms(lat['max']):>10} "
              f"{r['error_total']:>7}")
    best500 = max((x for x in rows if x["p99_us"] < 500_000 and x["errors"] == 0), key=lambda x: x["rps"], default=None)
    best100 = max((x for x in rows if x["p99_us"] < 100_000 and x["errors"] == 0), key=lambda x: x["rps"], default=None)
    for label, best in (("p99 < 500 ms", best500), ("p99 < 100 ms", best100)):
        if best:
            print(f"highest chat req/s with {label}: {best['rps']:.0f} (p99 {ms(best['p99_us'])}, "
                  f"{best['connections']} connections)")
        else:
            print(f"highest chat req/s with {label}: none of the steps")
    met = best100 is not None and best100["rps"] >= 2500
    print(f"target (>= 2,500 req/s at p99 < 100 ms): {'MET' if met else 'NOT MET'}")
    out = {"steps": rows, "best_p99_500ms": best500, "best_p99_100ms": best100}
    save("saturation", out)
    return out


def run_memory(stack: Stack, total: int) -> dict:
    print(f"== memory: robot RSS over {total} requests (a new session each)")
    time.sleep(1.0)
    idle = rss_kib(stack.robot.pid)
    done = 0
    marks = {}
    warm = min(10_000, total)
    for _ in range(1000):  # bounded: each chunk is a few seconds
        if done >= total:
            break
        r = stack.wrk(32, 3, sessions=0)
        done += r["requests"]
        if "warm" not in marks and done >= warm:
            marks["warm"] = (done, rss_kib(stack.robot.pid))
    time.sleep(1.0)
    final = rss_kib(stack.robot.pid)
    warm_n, warm_rss = marks.get("warm", (done, final))
    growth = (final - warm_rss) / warm_rss * 100
    print(f"idle RSS {idle / 1024:.1f} MiB; after {warm_n} requests {warm_rss / 1024:.1f} MiB; "
          f"after {done} requests {final / 1024:.1f} MiB ({growth:+.1f}% since warm-up)")
    ok = idle < 80 * 1024 and abs(growth) <= 10
    print(f"target (idle < 80 MiB, flat within 10%): {'MET' if ok else 'NOT MET'}")
    out = {"idle_kib": idle, "warm_requests": warm_n, "warm_kib": warm_rss, "requests": done,
           "final_kib": final, "growth_pct": growth}
    save("memory", out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("profile", "saturation", "memory", "all"))
    p.add_argument("--duration", type=float, default=None, help="seconds (profile: 60, saturation step: 10)")
    p.add_argument("--full", action="store_true", help="profile for the guide's full 10 minutes")
    p.add_argument("--connections", default="8,16,32,48,64,96,128")
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--nginx", choices=("auto", "production", "bench"), default="auto")
    p.add_argument("--no-nginx", action="store_true")
    p.add_argument("--nginx-workers", type=int, default=1)
    args = p.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    mode = "none" if args.no_nginx else args.nginx
    # each run on a fresh stack: a new robot process and an empty database
    if args.what in ("profile", "all"):
        with Stack(nginx=mode, nginx_workers=args.nginx_workers) as stack:
            run_profile(stack, 600 if args.full else (args.duration or 60))
    if args.what in ("saturation", "all"):
        with Stack(nginx=mode, nginx_workers=args.nginx_workers) as stack:
            step = args.duration if (args.duration and args.what == "saturation") else 10
            run_saturation(stack, step, [int(c) for c in args.connections.split(",")])
    if args.what in ("memory", "all"):
        with Stack(nginx=mode, nginx_workers=args.nginx_workers) as stack:
            run_memory(stack, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
