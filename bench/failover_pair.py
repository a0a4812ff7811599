"""A keepalived VIP pair in network namespaces, as the host tests and bench/failover.py drive it.

Two nodes (a = primary 10.77.0.11, b = backup 10.77.0.12) each get what an EC2 pair member has:
scripts/keepalived/install.sh run for real (into a temp root, ROBOT_SKIP_SYSTEM=1), a fake IMDSv2
on the node's loopback, a health endpoint on 127.0.0.1:18789 (a stdlib static file server:
stopped and started in ~0.1 s, which is what health failures need), and keepalived started from
the rendered config with its own pid files. moto (AwsEmulator) plays EC2, seeded as the Pulumi
program leaves it: the VIP a secondary IP of a's ENI, the EIP associated with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "host"))

from aws_emulator import AwsEmulator  # noqa: E402
from netns import Host, Lab, wait_for  # noqa: E402

VIP = "10.77.0.100"
ROBOT_PORT = 18789
IMDS_PORT = 8169
PYTHON = os.environ.get("ROBOT_PYTHON", os.path.join(REPO, "venv", "bin", "python"))
INSTALL = os.path.join(REPO, "scripts", "keepalived", "install.sh")
FAKE_IMDS = os.path.join(REPO, "tests", "host", "fake_imds.py")
# What keepalived (and so the failover program) inherits: no AWS credentials, they come from IMDS.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@dataclass
class Node:
    name: str
    role: str
    host: Host
    peer_ip: str
    root: str
    eni: str = ""
    mac: str = ""
    keepalived: subprocess.Popen | None = None
    health: subprocess.Popen | None = None
    extra: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> str:
        return os.path.join(self.root, "etc/keepalived/keepalived.conf")

    @property
    def log(self) -> str:
        return os.path.join(self.root, "var/log/robot/vip-failover.log")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.root, "run/robot-vip")

    def pidfile(self, kind: str) -> str:
        return os.path.join(self.root, f"run/keepalived-{kind}.pid")

    def state(self) -> str:
        try:
            with open(os.path.join(self.run_dir, "state")) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        try:
            with open(self.log) as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def done_after(self, since: float) -> float | None:
        """When the failover program last logged "failover done" at or after since (epoch s)."""
        for line in self.log_lines():
            if "failover done" in line:
                when = datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
                if when >= since:
                    return when
        return None

    def has_vip(self) -> bool:
        return VIP in self.host.addresses()


class Pair:
    def __init__(self, lab: Lab):
        self.lab = lab
        self.base = tempfile.mkdtemp(prefix="robot-vip-")
        self.aws = AwsEmulator(lab.add_host("aws", "10.77.0.254"))
        self.nodes = {
            "a": self._node("a", "primary", "10.77.0.11", "10.77.0.12"),
            "b": self._node("b", "backup", "10.77.0.12", "10.77.0.11"),
        }
        self.allocation = ""

    def _node(self, name: str, role: str, ip: str, peer: str) -> Node:
        root = os.path.join(self.base, name)
        os.makedirs(os.path.join(root, "www"))
        with open(os.path.join(root, "www", "health"), "w") as fh:
            fh.write('{"status":"ok"}\n')
        return Node(name, role, self.lab.add_host(name, ip), peer, root)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    # -- setup --------------------------------------------------------------------------------
    def seed_aws(self) -> None:
        """The EC2 state `pulumi up` creates: VIP on the primary's ENI, the EIP riding on it."""
        self.aws.start()
        ec2 = self.aws.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/24")["Subnet"]["SubnetId"]
        for node in self.nodes.values():
            eni = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=node.host.address)["NetworkInterface"]
            node.eni, node.mac = eni["NetworkInterfaceId"], eni["MacAddress"]
        self.allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        a = self.nodes["a"]
        ec2.assign_private_ip_addresses(NetworkInterfaceId=a.eni, PrivateIpAddresses=[VIP])
        ec2.associate_address(AllocationId=self.allocation, NetworkInterfaceId=a.eni, PrivateIpAddress=VIP)
        self.aws.reset_calls()

    def settings(self, node: Node) -> str:
        """The settings.env the Pulumi program writes for a pair member (the keys install.sh reads)."""
        path = os.path.join(node.root, "settings.env")
        with open(path, "w") as fh:
            fh.write(
                "ROBOT_TOPOLOGY=pair\nROBOT_PORT=18789\nROBOT_HEALTH_PATH=/health\nAWS_REGION=us-east-1\n"
                f"ROBOT_PAIR_ROLE={node.role}\nROBOT_SELF_IP={node.host.address}\nROBOT_PEER_IP={node.peer_ip}\n"
                f"ROBOT_VIP={VIP}\nROBOT_VRRP_ADVERT_INTERVAL=0.1\nROBOT_VRRP_ROUTER_ID=51\n"
                f"ROBOT_EIP_ALLOCATION_ID={self.allocation}\nROBOT_ENI_ID={node.eni}\n"
                f"ROBOT_PEER_ENI_ID={self.peer(node).eni}\nROBOT_ALLOWED_CIDRS='203.0.113.0/24 198.51.100.7/32'\n"
            )
        return path

    def peer(self, node: Node) -> Node:
        return next(n for n in self.nodes.values() if n is not node)

    def install(self, node: Node) -> subprocess.CompletedProcess:
        """scripts/keepalived/install.sh as bootstrap runs it, inside the node's namespace."""
        env = dict(ENV, ROBOT_ROOT=node.root, ROBOT_SKIP_SYSTEM="1", ROBOT_PYTHON=PYTHON,
                   ROBOT_IMDS_ENDPOINT=f"http://127.0.0.1:{IMDS_PORT}", AWS_ENDPOINT_URL=self.aws.endpoint)
        return node.host.run(["bash", INSTALL, "--settings", self.settings(node)], env=env)

    def start(self) -> None:
        """Everything up, in the order a booting pair has it; returns once one node is master."""
        self.seed_aws()
        for node in self.nodes.values():
            self.install(node)
            node.extra.append(node.host.popen(
                [PYTHON, FAKE_IMDS, "--port", str(IMDS_PORT), "--region", "us-east-1", "--instance-id", f"i-{node.name}",
                 "--mac", node.mac, "--eni", node.eni, "--local-ipv4", node.host.address]))
            self.start_health(node)
        for node in self.nodes.values():
            wait_for(lambda n=node: n.host.run(["curl", "-fsS", f"http://127.0.0.1:{IMDS_PORT}/latest/api/token",
                                                 "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"]),
                     timeout=10, what=f"fake IMDS on {node.name}")
            self.start_keepalived(node)
        self.wait_settled()

    # -- processes ------------------------------------------------------------------------------
    def start_health(self, node: Node) -> None:
        node.health = node.host.popen([PYTHON, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                       os.path.join(node.root, "www"), str(ROBOT_PORT)])
        wait_for(lambda: node.host.run(["curl", "-fsS", f"http://127.0.0.1:{ROBOT_PORT}/health"]), timeout=10,
                 what=f"health endpoint on {node.name}")

    def stop_health(self, node: Node) -> None:
        assert node.health is not None
        self.lab.stop(node.health, signal.SIGKILL)
        node.health = None

    def start_keepalived(self, node: Node) -> None:
        # A killed keepalived's children are reaped by PID 1 a little later; keepalived refuses to
        # start while a pid in its pid files still exists.
        for kind in ("main", "vrrp", "checker"):
            pid = _read_pid(node.pidfile(kind))
            if pid:
                wait_for(lambda p=pid: not os.path.exists(f"/proc/{p}"), timeout=20, what=f"old keepalived {pid} gone")
        node.keepalived = node.host.popen(
            ["keepalived", "-n", "-l", "-D", "-f", node.conf, "-p", node.pidfile("main"),
             "-r", node.pidfile("vrrp"), "-c", node.pidfile("checker")],
            env=ENV, stdout=open(os.path.join(node.root, "keepalived.out"), "a"), stderr=subprocess.STDOUT)

    def signal_keepalived(self, node: Node, sig: int) -> None:
        """Send sig to all of node's keepalived processes (-9: the VRRP child dies too, as in a crash)."""
        assert node.keepalived is not None
        os.killpg(node.keepalived.pid, sig)

    def reap_keepalived(self, node: Node) -> None:
        """Wait for a signalled keepalived to finish exiting (killing it if it hangs)."""
        assert node.keepalived is not None
        try:
            node.keepalived.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.lab.stop(node.keepalived, signal.SIGKILL)
        node.keepalived = None

    # -- observation ----------------------------------------------------------------------------
    def owners(self) -> set[str]:
        return {name for name, node in self.nodes.items() if node.has_vip()}

    def wait_settled(self, timeout: float = 45) -> Node:
        """Exactly one node has the VIP, reports MASTER and has finished with AWS; the other is BACKUP."""
        def settled() -> Node | None:
            owners = self.owners()
            if len(owners) != 1:
                return None
            master = self.nodes[owners.pop()]
            other = self.peer(master)
            if master.state() != "MASTER" or other.keepalived is None or other.state() != "BACKUP":
                return None
            last = [line for line in master.log_lines() if "failover done" in line or "nothing to do" in line]
            return master if last and _after_last_master(master) else None

        try:
            return wait_for(settled, timeout=timeout, interval=0.1, what="one master with AWS done, one backup")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; now: {self.summary()}") from None

    def summary(self) -> str:
        """Each node's VIP, keepalived state and last failover log line, for failure messages."""
        return "; ".join(
            f"{n.name}: vip={n.has_vip()} state={n.state() or '?'} keepalived={'up' if n.keepalived else 'down'} "
            f"last log={(n.log_lines() or ['-'])[-1]!r}" for n in self.nodes.values())



def _after_last_master(node: Node) -> bool:
    """The failover program finished after keepalived's last MASTER event, its delayed verify too.

    The verify claim runs VERIFY_AFTER seconds after the takeover; until it has, the node may
    still call AWS (on moto it always re-associates), which a test must not mistake for a
    call caused by its next event.
    """
    lines = node.log_lines()
    last_master = max((i for i, line in enumerate(lines) if "keepalived: INSTANCE" in line and "MASTER" in line), default=-1)
    after = lines[last_master + 1:]
    finished = [line for line in after if "failover done" in line or "nothing to do" in line]
    return any(" verify: " in line for line in finished)


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


class AddressMonitor:
    """Every VIP add/delete on both nodes as the kernel reports it (ip -ts monitor), timestamped.

    Continuous, unlike polling: an overlap of any length between the two nodes shows up.
    """

    def __init__(self, pair: Pair):
        self.pair = pair
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, bool]] = []  # (time.time(), node, added)
        for node in pair.nodes.values():
            proc = node.host.popen(["ip", "-ts", "-o", "monitor", "address", "dev", "eth0"], stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, args=(node.name, proc), daemon=True).start()
        time.sleep(0.3)  # let both monitors subscribe before anything happens
        self.initial = {name: node.has_vip() for name, node in pair.nodes.items()}

    def _read(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if f" inet {VIP}/" not in line:
                continue
            stamp, _, rest = line.partition("] ")
            when = datetime.fromisoformat(stamp.lstrip("[")).timestamp()
            with self.lock:
                self.events.append((when, name, not rest.startswith("Deleted")))

    def added_after(self, name: str, since: float) -> float | None:
        with self.lock:
            return next((t for t, n, added in sorted(self.events) if n == name and added and t >= since), None)

    def overlaps(self) -> list[tuple[float, float]]:
        """Intervals during which both nodes had the VIP at once."""
        owner = dict(self.initial)
        result, start = [], None
        with self.lock:
            events = sorted(self.events)
        for when, name, added in events:
            owner[name] = added
            if all(owner.values()) and start is None:
                start = when
            elif not all(owner.values()) and start is not None:
                result.append((start, when))
                start = None
        if start is not None:
            result.append((start, float("inf")))
        return result
