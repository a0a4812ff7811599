#!/usr/bin/env python3
"""Points the pair's VIP (a secondary private IP) and its Elastic IP at this node when it is master.

    robot-vip-failover --config /etc/keepalived/robot-vip.env watch FIFO   # keepalived's vrrp_notify_fifo_script
    robot-vip-failover --config /etc/keepalived/robot-vip.env reconcile    # the reconcile timer, or by hand

keepalived puts the VIP on the interface itself; on AWS the VPC only delivers it (and the EIP
riding on it) to the ENI that holds it, so the new master moves both with the EC2 API:
AssignPrivateIpAddresses(AllowReassignment) then AssociateAddress(AllowReassociation).

`watch` is started by keepalived (which passes the FIFO last and ends it when keepalived ends) and
stays up with a warm boto3 client: a fresh interpreter needs ~0.7 s to import boto3, more than the
whole failover budget. Every action, from the FIFO or the timer, is the same idempotent
`claim`: under a lock, only while this node is master (VIP on the interface AND a keepalived
running in this network namespace: a keepalived killed with -9 leaves the VIP behind), describe
first, then assign/associate only what is not already right, with bounded retries.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import os
import random
import select
import shlex
import subprocess
import sys
import time
import urllib.request
from typing import Any, Callable, Iterator

import boto3
import botocore.config
import botocore.exceptions

IMDS_DEFAULT = "http://169.254.169.254"
ATTEMPTS = 4  # per AWS call: 0.1 + 0.2 + 0.4 s of backoff at most between them
VERIFY_AFTER = 2.0  # s after a claim: re-check once both nodes have settled who is master
RETRYABLE = {"RequestLimitExceeded", "Throttling", "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"}


def read_config(path: str) -> dict[str, str]:
    """KEY=VALUE lines (values may be shell-quoted), as install.sh renders them."""
    values = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, raw = line.partition("=")
                values[key] = " ".join(shlex.split(raw))
    return values


class Log:
    """One line per step, to the log file and stderr (journal for the timer), with ms timestamps."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fh = open(path, "a", encoding="utf-8", buffering=1)

    def __call__(self, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        line = f"{stamp} robot-vip-failover[{os.getpid()}] {message}"
        self.fh.write(line + "\n")
        print(line, file=sys.stderr, flush=True)


def imds_identity(endpoint: str) -> tuple[str, str]:
    """(region, primary ENI id) from IMDSv2: token first, then the metadata it guards."""
    def request(method: str, path: str, headers: dict[str, str]) -> str:
        req = urllib.request.Request(endpoint + path, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.read().decode()

    for attempt in range(3):
        try:
            token = request("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
            auth = {"X-aws-ec2-metadata-token": token}
            region = request("GET", "/latest/meta-data/placement/region", auth)
            mac = request("GET", "/latest/meta-data/mac", auth)
            eni = request("GET", f"/latest/meta-data/network/interfaces/macs/{mac}/interface-id", auth)
            return region.strip(), eni.strip()
        except OSError:
            if attempt == 2:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


class Failover:
    def __init__(self, config: dict[str, str], log: Log):
        self.log = log
        self.vip = config["ROBOT_VIP"]
        self.dev = config["ROBOT_VIP_INTERFACE"]
        self.allocation = config["ROBOT_EIP_ALLOCATION_ID"]
        self.run_dir = config["ROBOT_VIP_RUN_DIR"]
        os.makedirs(self.run_dir, exist_ok=True)
        imds = config.get("ROBOT_IMDS_ENDPOINT") or IMDS_DEFAULT
        # boto3 reads the instance role's credentials from the same (possibly fake) IMDS.
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds + "/"
        region, self.eni = imds_identity(imds)
        self.log(f"identity from IMDS: ENI {self.eni} in {region}; VIP {self.vip} on {self.dev}, EIP {self.allocation}")
        self.ec2 = boto3.session.Session().client(
            "ec2",
            region_name=region,
            endpoint_url=config.get("AWS_ENDPOINT_URL") or None,
            config=botocore.config.Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
        )
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)

    # -- is this node master? ------------------------------------------------------------
    def vip_in_os(self) -> bool:
        out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", self.dev], capture_output=True, text=True, check=True).stdout
        return any(a.get("local") == self.vip for link in json.loads(out or "[]") for a in link.get("addr_info", []))

    @staticmethod
    def keepalived_running() -> bool:
        """A keepalived process in this network namespace (also right when tests run two nodes on one kernel)."""
        mine = os.stat("/proc/thread-self/ns/net").st_ino
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/comm") as fh:
                    if fh.read().strip() != "keepalived":
                        continue
                if os.stat(f"/proc/{pid}/ns/net").st_ino == mine:
                    return True
            except OSError:  # the process ended while we looked
                continue
        return False

    def is_master(self) -> bool:
        return self.vip_in_os() and self.keepalived_running()

    # -- AWS --------------------------------------------------------------------------------
    def describe(self) -> tuple[bool, bool]:
        """(VIP is on our ENI, EIP is associated with our ENI and VIP), both looked up at once."""
        eni = self.pool.submit(self.call, "describe-network-interfaces", self.ec2.describe_network_interfaces, NetworkInterfaceIds=[self.eni])
        eip = self.pool.submit(self.call, "describe-addresses", self.ec2.describe_addresses, AllocationIds=[self.allocation])
        ips = {p["PrivateIpAddress"] for p in eni.result()["NetworkInterfaces"][0]["PrivateIpAddresses"]}
        address = eip.result()["Addresses"][0]
        associated = address.get("NetworkInterfaceId") == self.eni and address.get("PrivateIpAddress") == self.vip
        return self.vip in ips, associated

    def call(self, what: str, fn: Callable[..., Any], **params: Any) -> Any:
        """One EC2 call with bounded retries and backoff on throttling / transient failures."""
        for attempt in range(1, ATTEMPTS + 1):
            started = time.monotonic()
            try:
                result = fn(**params)
                if not what.startswith("describe"):
                    self.log(f"{what}: ok in {(time.monotonic() - started) * 1000:.0f} ms")
                return result
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE or attempt == ATTEMPTS:
                    self.log(f"{what}: failed ({code}), attempt {attempt}/{ATTEMPTS}: giving up")
                    raise
                reason = code
            except botocore.exceptions.BotoCoreError as exc:  # connection / timeout
                if attempt == ATTEMPTS:
                    self.log(f"{what}: failed ({type(exc).__name__}), attempt {attempt}/{ATTEMPTS}: giving up")
                    raise
                reason = type(exc).__name__
            delay = 0.1 * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
            self.log(f"{what}: {reason}, attempt {attempt}/{ATTEMPTS}: retrying in {delay * 1000:.0f} ms")
            time.sleep(delay)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialises the watcher and the reconcile timer on this node."""
        with open(os.path.join(self.run_dir, "lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def claim(self, reason: str) -> str:
        """Make AWS route the VIP and EIP here if (and only while) we are master. Returns what it did."""
        started = time.monotonic()
        with self.locked():
            if not self.is_master():
                self.log(f"{reason}: not master (VIP not on {self.dev} or keepalived not running): backing off")
                return "backed-off"
            has_vip, has_eip = self.describe()
            if has_vip and has_eip:
                self.log(f"{reason}: AWS already routes VIP {self.vip} and EIP to {self.eni}: nothing to do")
                return "unchanged"
            if not has_vip:
                if not self.is_master():
                    self.log(f"{reason}: no longer master before assigning the VIP: backing off")
                    return "backed-off"
                self.call("assign-private-ip-addresses", self.ec2.assign_private_ip_addresses,
                          NetworkInterfaceId=self.eni, PrivateIpAddresses=[self.vip], AllowReassignment=True)
            if not has_eip:
                if not self.is_master():
                    self.log(f"{reason}: no longer master before associating the EIP: backing off")
                    return "backed-off"
                self.call("associate-address", self.ec2.associate_address, AllocationId=self.allocation,
                          NetworkInterfaceId=self.eni, PrivateIpAddress=self.vip, AllowReassociation=True)
            self.log(f"{reason}: failover done: VIP {self.vip} and EIP on {self.eni} in {(time.monotonic() - started) * 1000:.0f} ms")
            return "moved"

    def write_state(self, state: str) -> None:
        """The last state keepalived reported, for operators and tests (cat /run/robot-vip/state)."""
        path = os.path.join(self.run_dir, "state")
        with open(path + ".tmp", "w") as fh:
            fh.write(state + "\n")
        os.replace(path + ".tmp", path)


def watch(failover: Failover, fifo: str) -> None:
    """Act on keepalived's events in order; the latest pending state wins. Ends when keepalived does."""
    log = failover.log
    # Warm up: credentials, endpoint and connection pool, so the first failover pays none of it.
    try:
        failover.describe()
    except Exception as exc:  # noqa: BLE001 - still watch: the first event retries for real
        log(f"warm-up describe failed: {exc!r}")
    log(f"watching {fifo}")
    fd = os.open(fifo, os.O_RDONLY)
    buffered, state, verify_at = b"", "", None
    while True:
        timeout = None if verify_at is None else max(0.0, verify_at - time.monotonic())
        if select.select([fd], [], [], timeout)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:  # every writer gone: keepalived has stopped
                log("keepalived closed the FIFO: exiting")
                return
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            events = [line.decode().split() for line in lines]
            events = [e for e in events if len(e) >= 3 and e[0] == "INSTANCE"]
            if not events:
                continue
            state = events[-1][2]
            log(f"keepalived: {' '.join(events[-1])}")
            failover.write_state(state)
            if state != "MASTER":
                verify_at = None
                continue
            reason = "MASTER"
        elif state == "MASTER":
            reason = "verify"
        else:
            verify_at = None
            continue
        try:
            outcome = failover.claim(reason)
        except Exception as exc:  # noqa: BLE001 - a failed claim must not end the watcher; the timer repairs
            log(f"{reason}: failover failed: {exc!r}")
            outcome = "failed"
        verify_at = time.monotonic() + VERIFY_AFTER if reason == "MASTER" or outcome == "failed" else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reconcile")
    sub.add_parser("watch").add_argument("fifo")
    args = parser.parse_args(argv)
    config = read_config(args.config)
    log = Log(config["ROBOT_VIP_LOG"])
    failover = Failover(config, log)
    if args.command == "watch":
        watch(failover, args.fifo)
        return 0
    try:
        failover.claim("reconcile")
    except Exception as exc:  # noqa: BLE001 - one log line, and systemd records the failed run
        log(f"reconcile: failed: {exc!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
